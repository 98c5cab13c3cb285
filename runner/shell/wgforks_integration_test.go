//go:build integration

package shell_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner/shell"
)

const (
	wgForksInnerEnv = "FLEXHOOK_SHELL_WGFORKS_INNER"
	wgForksPreset   = "FLEXHOOK_SHELL_WGFORKS_PRESET"
	wgForksOut      = "FLEXHOOK_SHELL_WGFORKS_OUT"
	// wgForksPeersEnv overrides the number of peers (default 200).
	wgForksPeersEnv = "FLEXHOOK_WG_PEERS"
)

// wgForks is what one inner run counted, from the shell's own trace and
// debug log.
type wgForks struct {
	Peers    int
	WgCmds   int // `+ wg ...` trace lines of the peers' Add and Remove hooks
	Wgctrl   int // "done through wgctrl"
	Refused  int // "fast path refused" for a wg command
	PeersSet int // peers on the device after the Adds (wg show dump)
	PeersEnd int // after the Removes
	// The start (PreStartup and PostStartup), counted alike.
	StartWgCmds  int
	StartShows   int // `+ wg show` lines: queries the fast path leaves to wg
	StartInProc  int // "done in process" (wg genkey, wg pubkey)
	StartWgctrl  int
	StartRefused int
}

// forks is how many wg processes the run started: its wg commands less
// those done in the daemon.
func (f wgForks) forks() int { return f.WgCmds - f.Wgctrl }

func (f wgForks) startForks() int { return f.StartWgCmds - f.StartInProc - f.StartWgctrl }

// TestWireguardPresetForks runs each wireguard preset's PreStartup and
// PostStartup, then SubnetAdd for N peers and SubnetRemove for each,
// through the Shell with its trace and debug log, against wireguard-go
// in a fresh namespace: once as before (no fast path: one wg process per
// wg command) and once with the fast path, where PreStartup's wg genkey
// and wg pubkey run in the daemon, every wg set is done through wgctrl,
// and only wireguard-prod's `wg show` queries in PostStartup start wg
// (one on a new device: its private key differs, so the port is not
// asked). While PreStartup and the peers' hooks run in the fast run, and
// PostStartup where it has no wg show, /usr/bin/wg is /usr/bin/false (a
// bind mount in the inner mount namespace): a wg process would fail its
// hook.
func TestWireguardPresetForks(t *testing.T) {
	n := 200
	if s := os.Getenv(wgForksPeersEnv); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err, wgForksPeersEnv)
	}
	t.Setenv(wgForksPeersEnv, strconv.Itoa(n))
	for _, preset := range []string{"wireguard", "wireguard-prod"} {
		t.Run(preset, func(t *testing.T) {
			runs := map[string]wgForks{}
			for _, mode := range []string{"real", "fast"} {
				out := filepath.Join(t.TempDir(), mode+".json")
				t.Setenv(fastModeEnv, mode)
				t.Setenv(wgForksPreset, preset)
				t.Setenv(wgForksOut, out)
				runInner(t, "TestWireguardPresetForksInner", wgForksInnerEnv, "wireguard-go", "wg", "ip")
				data, err := os.ReadFile(out)
				require.NoError(t, err)
				var f wgForks
				require.NoError(t, json.Unmarshal(data, &f))
				runs[mode] = f
			}
			real, fast := runs["real"], runs["fast"]
			for mode, f := range runs {
				assert.Equal(t, n, f.PeersSet, "%s: peers on the device after the Adds", mode)
				assert.Zero(t, f.PeersEnd, "%s: peers left after the Removes", mode)
				assert.Equal(t, 2*n, f.WgCmds, "%s: one wg set per Add and per Remove", mode)
			}
			assert.Zero(t, real.Wgctrl, "without the fast path every wg set forks wg")
			assert.Equal(t, 2*n, fast.Wgctrl, "every peer's wg set done through wgctrl")
			assert.Zero(t, fast.Refused, "no wg set left to the real wg")
			assert.Zero(t, real.StartInProc+real.StartWgctrl, "without the fast path the start forks every wg command")
			assert.Equal(t, real.StartWgCmds, fast.StartWgCmds, "the start runs the same wg commands")
			assert.Equal(t, 2, fast.StartInProc, "PreStartup's wg genkey and wg pubkey in the daemon")
			assert.Zero(t, fast.StartRefused, "no wg set of the start left to the real wg")
			assert.Equal(t, fast.StartShows, fast.startForks(), "the start forks wg only for wg show")
			if preset == "wireguard" {
				assert.Zero(t, fast.startForks(), "the wireguard preset's start forks no wg")
			}
			t.Logf("%s, %d peers: the start ran %d wg commands, Add+Remove %d; forks of wg at start: %d without the fast path, %d with it (wg show: %d); for the peers: %d without, %d with",
				preset, n, fast.StartWgCmds, fast.WgCmds, real.startForks(), fast.startForks(), fast.StartShows,
				real.forks(), fast.forks())
		})
	}
}

// TestWireguardPresetForksInner is one run of TestWireguardPresetForks.
func TestWireguardPresetForksInner(t *testing.T) {
	if os.Getenv(wgForksInnerEnv) != "1" {
		t.Skip("runs only inside TestWireguardPresetForks")
	}
	n, err := strconv.Atoi(os.Getenv(wgForksPeersEnv))
	require.NoError(t, err)
	fast := os.Getenv(fastModeEnv) == "fast"
	require.NoError(t, syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), "tmpfs on /run")
	require.NoError(t, exec.Command("ip", "link", "set", "lo", "up").Run())
	data, err := presets.Get(os.Getenv(wgForksPreset))
	require.NoError(t, err)
	cfg, err := hooks.Parse(data)
	require.NoError(t, err)

	var log testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	sh, err := shell.New(shell.Dir(dir), shell.FastPath(fast), shell.Wireguard(shell.WireguardAuto),
		shell.Logger(logger), shell.Trace(shell.NewSlogTracer(logger)), shell.Timeout(time.Minute))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sh.Close()) })
	t.Cleanup(func() { deleteWireguardGo(t) })

	own := []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.255.0/24", "PUBLIC_IP=192.0.2.1"}
	// With the fast path, a wg process started in f would be false.
	tripwire := func(f func()) {
		if fast {
			require.NoError(t, syscall.Mount("/usr/bin/false", "/usr/bin/wg", "", syscall.MS_BIND, ""), "bind /usr/bin/false on wg")
			defer func() { require.NoError(t, syscall.Unmount("/usr/bin/wg", 0)) }()
			require.Error(t, exec.Command("wg", "--version").Run(), "the tripwire is in place")
		}
		f()
	}
	run := func(kind hooks.Kind, env []string, stdin string) string {
		t.Helper()
		subnet := ""
		for _, e := range env {
			if s, ok := strings.CutPrefix(e, "SUBNET="); ok {
				subnet = s
			}
		}
		res, err := sh.Run(t.Context(), shell.Request{Hook: cfg.Backend.Hook(kind), Env: env, Stdin: stdin, Subnet: subnet})
		require.NoError(t, err, "%s: %s", kind, res.Stderr)
		return res.Stdout
	}
	var pub string
	tripwire(func() { pub = run(hooks.PreStartup, own[:1], "") })
	// Its public key, as the real wg computes it from the key file.
	key, err := os.Open(filepath.Join(dir, "privatekey"))
	require.NoError(t, err)
	wgPub := exec.Command("wg", "pubkey")
	wgPub.Stdin = key
	want, err := wgPub.Output()
	key.Close()
	require.NoError(t, err)
	require.Len(t, string(want), 45)
	require.Equal(t, string(want), pub, "PreStartup prints the key file's public key")
	post := cfg.Backend.Hook(hooks.PostStartup)
	if strings.Contains(post.Source, "wg show") {
		run(hooks.PostStartup, own, "") // its wg show queries are the real wg's
	} else {
		tripwire(func() { run(hooks.PostStartup, own, "") })
	}
	start := log.String()
	res := wgForks{Peers: n,
		StartWgCmds:  strings.Count(start, `msg="+ wg `),
		StartShows:   strings.Count(start, `msg="+ wg show `),
		StartInProc:  strings.Count(start, `msg="done in process"`),
		StartWgctrl:  strings.Count(start, `msg="done through wgctrl"`),
		StartRefused: wgRefused(start),
	}

	keys := make([]string, n)
	for i := range keys {
		k, err := wgtypes.GeneratePrivateKey()
		require.NoError(t, err)
		keys[i] = k.PublicKey().String()
	}
	peerEnv := func(i int) []string {
		return []string{"NETWORK=10.50.0.0/16", fmt.Sprintf("SUBNET=10.50.%d.%d/28", i/16, i%16*16),
			fmt.Sprintf("PUBLIC_IP=192.0.%d.%d", 2+i/250, 1+i%250)}
	}
	mark := len(start)
	tripwire(func() {
		for i, k := range keys {
			run(hooks.SubnetAdd, peerEnv(i), k+"\n")
		}
	})
	res.PeersSet = wgPeers(t)
	tripwire(func() {
		for i, k := range keys {
			run(hooks.SubnetRemove, peerEnv(i), k+"\n")
		}
	})
	res.PeersEnd = wgPeers(t)
	out := log.String()[mark:]
	res.WgCmds = strings.Count(out, `msg="+ wg `)
	res.Wgctrl = strings.Count(out, `msg="done through wgctrl"`)
	res.Refused = wgRefused(out)
	data, err = json.Marshal(res)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(wgForksOut), data, 0o600))
}

// wgRefused counts the log's lines that say the fast path left a wg
// command to the real wg (ip's are not counted: the wireguard preset's
// `ip link del flannel-wg 2>/dev/null` finds no link at start).
func wgRefused(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="fast path refused`) && strings.Contains(line, " command=wg ") {
			n++
		}
	}
	return n
}

// wgPeers counts flannel-wg's peers as the real wg shows them.
func wgPeers(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("wg", "show", wgDev, "peers").Output()
	require.NoError(t, err)
	return len(strings.Fields(string(out)))
}
