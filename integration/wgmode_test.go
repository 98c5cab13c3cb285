//go:build integration

package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// kernelWireguard reports whether this kernel makes wireguard devices,
// probed in node i's namespace of lab, so nothing touches the host's.
func kernelWireguard(t *testing.T, ctx context.Context, lab *netlab.Lab, i int) bool {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ip", "-n", lab.Netns(i), "link", "add", "wgprobe", "type", "wireguard").CombinedOutput()
	if err != nil {
		t.Logf("kernel without wireguard: %s", strings.TrimSpace(string(out)))
		return false
	}
	out, err = exec.CommandContext(ctx, "ip", "-n", lab.Netns(i), "link", "del", "wgprobe").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Log("kernel with wireguard")
	return true
}

// TestWireguardUserspaceModes runs the wireguard preset as-is under each
// --wireguard-userspace mode. "always" runs wireguard-go on every kernel,
// and `wg set` configures it. "never" is the kernel path: where the
// kernel has the wireguard module the device is the kernel's (no
// wireguard-go); where it has not (this machine), PostStartup fails the
// way upstream flannel's would and flexhook exits 1 leaving nothing. So
// the test passes, and tests what the kernel offers, with and without
// the module.
func TestWireguardUserspaceModes(t *testing.T) {
	bin := requireLab(t, "wg", "wireguard-go")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, t, netlab.Nodes(2), netlab.Flexhook(bin))
	require.NoError(t, err)
	kernel := kernelWireguard(t, ctx, lab, 1)

	t.Run("never", func(t *testing.T) {
		if kernel {
			require.NoError(t, lab.StartNode(ctx, 1, "--preset", "wireguard", "--wireguard-userspace", "never"))
			ps, err := lab.Processes(ctx, 1)
			require.NoError(t, err)
			for _, p := range ps {
				require.NotEqual(t, "wireguard-go", p.Comm, "the kernel's device, not wireguard-go")
			}
			out, err := lab.Exec(ctx, 1, "wg", "show", "flannel-wg", "listen-port")
			require.NoError(t, err)
			require.Equal(t, "51820", strings.TrimSpace(string(out)))
			require.NoError(t, lab.LeaveNode(ctx, 1))
			requireShutdownRan(t, ctx, lab, presetNamed(t, "wireguard"), 1)
			return
		}
		// flexhook may die before or just after writing subnet.env, so
		// StartNode may or may not see the lease: the exit code decides.
		_ = lab.StartNode(ctx, 1, "--preset", "wireguard", "--wireguard-userspace", "never")
		code, err := lab.ExitCode(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, 1, code, "a failed PostStartupCommand is a runtime failure")
		require.Contains(t, lab.Logs(1), "Unknown device type")
		ok, err := lab.HasLink(ctx, 1, "flannel-wg")
		require.NoError(t, err)
		require.False(t, ok)
		ps, err := lab.Processes(ctx, 1)
		require.NoError(t, err)
		require.Empty(t, ps)
	})
	t.Run("always", func(t *testing.T) {
		require.NoError(t, lab.StartNode(ctx, 2, "--preset", "wireguard", "--wireguard-userspace", "always"))
		requireProcess(t, ctx, lab, 2, "wireguard-go")
		out, err := lab.Exec(ctx, 2, "wg", "show", "flannel-wg", "listen-port")
		require.NoError(t, err)
		require.Equal(t, "51820", strings.TrimSpace(string(out)))
		require.NoError(t, lab.LeaveNode(ctx, 2))
		requireShutdownRan(t, ctx, lab, presetNamed(t, "wireguard"), 2)
	})
}

func presetNamed(t *testing.T, name string) preset {
	t.Helper()
	for _, p := range presets {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("no preset %q", name)
	return preset{}
}
