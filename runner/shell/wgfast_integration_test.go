//go:build integration

package shell_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

const (
	wgFastInnerEnv = "FLEXHOOK_SHELL_WGFAST_INNER"
	wgDev          = "flannel-wg"
	// Peers' public keys and the device's private key: fixed, so both
	// runs see the same.
	wgPeerA   = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	wgPeerB   = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	wgPrivKey = "4O1Vhzg4tAMYw/JD+THcNcXivOeZ8Rv0drqzpjXgnF4="
)

// wgParitySteps run in order against a wireguard-go device flannel-wg
// (listen port 51000, no key, no peers) in a fresh network and mount
// namespace, once with the real wg and once with the fast path. fast
// marks the steps wgctrl must do itself; every other step must end as
// wg does by running it. The shell's directory holds privatekey (a key),
// emptykey (empty: wg's zero key) and badkey (not a key).
var wgParitySteps = []struct {
	cmd  string
	fast bool
}{
	{"wg set flannel-wg peer " + wgPeerA + " endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24", true},
	{"wg set flannel-wg peer " + wgPeerA + " endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24", true}, // idempotent
	{"wg set flannel-wg peer " + wgPeerA + " allowed-ips 10.50.3.0/24", true},                          // replaced, not added
	{"wg set flannel-wg peer " + wgPeerB + " endpoint 192.0.2.3:51820 allowed-ips 10.50.2.0/24,fd00:0:0:2::/64", true},
	{"wg set flannel-wg peer " + wgPeerB + " allowed-ips 10.50.3.0/24,fd00:0:0:2::/64", true}, // taken from A
	{"wg set flannel-wg peer " + wgPeerA + " endpoint 192.0.2.9:51821", true},                 // endpoint only
	{"wg set flannel-wg peer " + wgPeerA + " remove", true},
	{"wg set flannel-wg peer " + wgPeerA + " remove", true}, // not there: no error
	{"wg set flannel-wg peer " + wgPeerB + " endpoint [fd00::2]:51820", true},
	{"wg set flannel-wg peer " + wgPeerB + " allowed-ips ''", true}, // cleared
	{"wg set flannel-wg peer " + wgPeerA + " allowed-ips 10.50.4.0/24 peer " + wgPeerB +
		" allowed-ips 10.50.5.0/24 endpoint 192.0.2.5:51820", true}, // two peers
	{"wg set flannel-wg peer " + wgPeerA + " allowed-ips 10.50.6.0/24 allowed-ips 10.50.7.0/24", true}, // both lists
	{"wg set flannel-wg listen-port 51820 private-key privatekey", true},
	{"wg set flannel-wg listen-port 51821", true},
	{"wg set flannel-wg private-key emptykey", true}, // the key removed
	{"wg set flannel-wg peer " + wgPeerA + " remove peer " + wgPeerB + " remove", true},
	{"wg set flannel-wg peer Zm9v endpoint 192.0.2.2:51820", false},                      // a bad key
	{"wg set nosuchwg peer " + wgPeerA + " allowed-ips 10.50.2.0/24", false},             // no such device
	{"wg set lo peer " + wgPeerA + " allowed-ips 10.50.2.0/24", false},                   // no wireguard device
	{"wg set flannel-wg private-key nosuchfile", false},                                  // fopen fails
	{"wg set flannel-wg private-key badkey", false},                                      // not a key
	{"wg set flannel-wg peer " + wgPeerA + " allowed-ips 10.50.2.5/24", false},           // wg warns: host bits
	{"wg set flannel-wg peer " + wgPeerA + " endpoint localhost:51820", false},           // a hostname
	{"wg set flannel-wg peer " + wgPeerA + " persistent-keepalive 25", false},            // not the fast path's
	{"wg set flannel-wg peer " + wgPeerA + " endpoint 192.0.2.2:51820 bogus", false},     // wg's argument error
	{"wg set flannel-wg peer " + wgPeerA + " allowed-ips 10.50.8.0/24,bogus/8", false},   // wg's parse error
	{"wg set flannel-wg peer " + wgPeerA + " endpoint 192.0.2.2:51820 remove", false},    // remove with values
	{"wg set flannel-wg listen-port 51820 private-key privatekey peer " + wgPeerB, true}, // device and peer
}

// TestWgFastPathParity runs wgParitySteps with the real wg and with the
// fast path: every step must end alike (exit status, stdout, stderr,
// `wg show dump`, the links, the UAPI sockets), and the fast ones must
// be done through wgctrl.
func TestWgFastPathParity(t *testing.T) {
	runs := parityRunsOf(t, "TestWgFastPathParityInner", wgFastInnerEnv, len(wgParitySteps), "wireguard-go", "wg", "ip")
	fast := 0
	for i, want := range runs["real"] {
		got := runs["fast"][i]
		assertSameStep(t, want, got)
		assert.Equal(t, wgParitySteps[i].fast, got.Fast, "%s: done through wgctrl", want.Cmd)
		assert.False(t, want.Fast, "%s: the real run has no fast path", want.Cmd)
		if got.Fast {
			fast++
		}
	}
	// The steps do what they say (the real wg's state, as a check of the
	// steps themselves).
	at := func(i int) string { return runs["real"][i].State }
	assert.Contains(t, at(0), "\t(none)\t192.0.2.2:51820\t10.50.2.0/24\t0\t0\t0\toff\n")
	assert.Contains(t, at(2), "\t192.0.2.2:51820\t10.50.3.0/24\t")
	assert.NotContains(t, at(2), "10.50.2.0/24")
	assert.Contains(t, at(3), "\t192.0.2.3:51820\t10.50.2.0/24,fd00:0:0:2::/64\t")
	assert.NotContains(t, at(6), wgPeerA)
	assert.Zero(t, runs["real"][7].Status, "removing a peer that is not there")
	assert.Contains(t, at(8), "\t[fd00::2]:51820\t")
	assert.Contains(t, at(9), "\t[fd00::2]:51820\t(none)\t")
	assert.Contains(t, at(12), wgPrivKey+"\t")
	assert.Contains(t, at(12), "\t51820\toff\n")
	assert.NotZero(t, runs["real"][16].Status, "a bad key")
	assert.NotZero(t, runs["real"][17].Status, "no such device")
	t.Logf("%d steps, %d done through wgctrl", len(wgParitySteps), fast)
}

// TestWgFastPathParityInner runs wgParitySteps in its own namespaces,
// real or fast, and writes what each did.
func TestWgFastPathParityInner(t *testing.T) {
	if os.Getenv(wgFastInnerEnv) != "1" {
		t.Skip("runs only inside TestWgFastPathParity")
	}
	startWireguardGo(t)
	require.NoError(t, exec.Command("wg", "set", wgDev, "listen-port", "51000").Run())
	shDir := t.TempDir()
	for name, data := range map[string]string{"privatekey": wgPrivKey + "\n", "emptykey": "", "badkey": "not a key\n"} {
		require.NoError(t, os.WriteFile(filepath.Join(shDir, name), []byte(data), 0o600))
	}
	var logs bytes.Buffer
	sh, err := shell.New(shell.Dir(shDir), shell.ReplaceExisting(false),
		shell.FastPath(os.Getenv(fastModeEnv) == "fast"),
		shell.Logger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sh.Close()) })
	var steps []parityStep
	for _, p := range wgParitySteps {
		logs.Reset()
		res, err := sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.SubnetAdd, p.cmd), Subnet: "10.50.2.0/24"})
		st := parityStep{Cmd: p.cmd, Stdout: res.Stdout, Stderr: res.Stderr, State: wgState(t),
			Fast: strings.Contains(logs.String(), `msg="done through wgctrl"`)}
		var he *shell.HookError
		if err != nil {
			require.ErrorAs(t, err, &he, p.cmd)
			st.Status = he.Status
		}
		steps = append(steps, st)
	}
	data, err := json.MarshalIndent(steps, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(fastOutEnv), data, 0o600))
}

// startWireguardGo gives the namespace its own /run (wireguard-go's UAPI
// sockets live in /run/wireguard, which network namespaces do not
// separate), brings lo up and starts wireguard-go's flannel-wg, deleted
// at the end.
func startWireguardGo(t *testing.T) {
	t.Helper()
	require.NoError(t, syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), "tmpfs on /run")
	for _, c := range [][]string{{"ip", "link", "set", "lo", "up"}, {"wireguard-go", wgDev}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		require.NoError(t, err, "%v: %s", c, out)
	}
	t.Cleanup(func() { deleteWireguardGo(t) })
}

// deleteWireguardGo deletes flannel-wg and waits for its wireguard-go to
// exit (it does when its link goes), so no daemon outlives the test.
func deleteWireguardGo(t testing.TB) {
	t.Helper()
	_ = exec.Command("ip", "link", "del", wgDev).Run()
	sock := filepath.Join("/run/wireguard", wgDev+".sock")
	require.Eventually(t, func() bool {
		_, err := os.Stat(sock)
		return os.IsNotExist(err)
	}, 10*time.Second, 20*time.Millisecond, "wireguard-go did not exit after its link was deleted")
}

// wgState is flannel-wg's `wg show dump` (peers sorted: wireguard-go
// lists them in map order), the namespace's links and the UAPI sockets.
func wgState(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("wg", "show", wgDev, "dump").Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	slices.Sort(lines[1:])
	links, err := exec.Command("ip", "-d", "-j", "link", "show").Output()
	require.NoError(t, err)
	var objs []json.RawMessage
	require.NoError(t, json.Unmarshal(links, &objs))
	ls := make([]string, len(objs))
	for i, o := range objs {
		ls[i] = string(o)
	}
	slices.Sort(ls)
	socks, err := os.ReadDir("/run/wireguard")
	require.NoError(t, err)
	var names []string
	for _, s := range socks {
		names = append(names, s.Name())
	}
	return fmt.Sprintf("wg show %s dump\n%s\n\nip -d -j link show\n%s\n\n/run/wireguard: %v\n",
		wgDev, strings.Join(lines, "\n")+"\n", strings.Join(ls, "\n"), names)
}
