//go:build integration

package shell_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

const wgInnerEnv = "FLEXHOOK_SHELL_WG_INNER"

// TestWireguardGoUserspace creates a wireguard link with the real
// wireguard-go, through the middleware, in a throwaway network and mount
// namespace (tmpfs on /run, so /run/wireguard sockets stay private), and
// deletes it.
func TestWireguardGoUserspace(t *testing.T) {
	if os.Getenv(wgInnerEnv) == "1" {
		wireguardInner(t)
		return
	}
	runInner(t, "TestWireguardGoUserspace", wgInnerEnv, "wireguard-go", "wg", "ip")
}

func wireguardInner(t *testing.T) {
	require.NoError(t, syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), "tmpfs on /run")
	tests := []struct {
		name string
		mode shell.WireguardMode
	}{
		{"auto", shell.WireguardAuto},     // userspace only if the kernel lacks wireguard
		{"always", shell.WireguardAlways}, // userspace even if the kernel has it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, shell.Wireguard(tt.mode), shell.Timeout(30*time.Second))
			t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "flexhook-wg").Run() })
			run := func(kind hooks.Kind, src string) string {
				res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, kind, src)})
				require.NoError(t, err, "stderr: %s", res.Stderr)
				return res.Stdout
			}
			out := run(hooks.PostStartup, `ip link add flexhook-wg type wireguard && ip -o link show flexhook-wg`)
			assert.Contains(t, out, "flexhook-wg")
			// The device answers after its hook ended: a wireguard-go daemon
			// was not killed with its process group.
			port := strings.TrimSpace(run(hooks.SubnetAdd, `wg set flexhook-wg listen-port 51999 && wg show flexhook-wg listen-port`))
			assert.Equal(t, "51999", port)
			sock := filepath.Join("/run/wireguard", "flexhook-wg.sock")
			if tt.mode == shell.WireguardAlways {
				assert.FileExists(t, sock, "wireguard-go serves its UAPI socket")
			}
			run(hooks.Shutdown, `ip link del flexhook-wg`)
			require.Eventually(t, func() bool {
				_, err := os.Stat(sock)
				return os.IsNotExist(err)
			}, 10*time.Second, 20*time.Millisecond, "wireguard-go did not exit after its link was deleted")
			assert.Error(t, exec.Command("ip", "link", "show", "flexhook-wg").Run())
		})
	}
}
