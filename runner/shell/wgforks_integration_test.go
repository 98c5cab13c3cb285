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
	Refused  int // "fast path refused"
	PeersSet int // peers on the device after the Adds (wg show dump)
	PeersEnd int // after the Removes
}

// TestWireguardPresetForks runs each wireguard preset's PreStartup and
// PostStartup, then SubnetAdd for N peers and SubnetRemove for each,
// through the Shell with its trace and debug log, against wireguard-go
// in a fresh namespace: once as before (no fast path: one wg process per
// peer and hook) and once with the fast path, where every peer's wg set
// is done through wgctrl and none starts wg. While the peers' hooks run
// in the fast run, /usr/bin/wg is /usr/bin/false (a bind mount in the
// inner mount namespace): a wg process would fail its hook.
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
			t.Logf("%s, %d peers: Add+Remove ran %d wg commands; forks of wg: %d without the fast path, %d with it",
				preset, n, fast.WgCmds, real.WgCmds-real.Wgctrl, fast.WgCmds-fast.Wgctrl)
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
	sh, err := shell.New(shell.Dir(t.TempDir()), shell.FastPath(fast), shell.Wireguard(shell.WireguardAuto),
		shell.Logger(logger), shell.Trace(shell.NewSlogTracer(logger)), shell.Timeout(time.Minute))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sh.Close()) })
	t.Cleanup(func() { deleteWireguardGo(t) })

	own := []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.255.0/24", "PUBLIC_IP=192.0.2.1"}
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
	pub := strings.TrimSpace(run(hooks.PreStartup, own[:1], ""))
	require.Len(t, pub, 44, "PreStartup prints the public key")
	run(hooks.PostStartup, own, "")

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
	// The peers' hooks: with the fast path, a wg process would be false.
	tripwire := func(f func()) {
		if fast {
			require.NoError(t, syscall.Mount("/usr/bin/false", "/usr/bin/wg", "", syscall.MS_BIND, ""), "bind /usr/bin/false on wg")
			defer func() { require.NoError(t, syscall.Unmount("/usr/bin/wg", 0)) }()
			require.Error(t, exec.Command("wg", "--version").Run(), "the tripwire is in place")
		}
		f()
	}
	mark := len(log.String())
	var res wgForks
	res.Peers = n
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
	res.Refused = strings.Count(out, `msg="fast path refused`)
	data, err = json.Marshal(res)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(wgForksOut), data, 0o600))
}

// wgPeers counts flannel-wg's peers as the real wg shows them.
func wgPeers(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("wg", "show", wgDev, "peers").Output()
	require.NoError(t, err)
	return len(strings.Fields(string(out)))
}
