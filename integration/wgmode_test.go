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

// TestWireguardUserspaceModes runs the wireguard preset as-is on a kernel
// without the wireguard module (the lab's): with --wireguard-userspace=never
// PostStartup fails the way upstream flannel's would and flexhook exits 1
// leaving nothing; with always (and auto, in TestPresets) wireguard-go
// provides flannel-wg and `wg set` configures it.
func TestWireguardUserspaceModes(t *testing.T) {
	bin := requireLab(t, "wg", "wireguard-go")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, t, netlab.Nodes(2), netlab.Flexhook(bin))
	require.NoError(t, err)
	// Probe inside the lab, so nothing touches the host's namespace.
	if out, err := exec.CommandContext(ctx, "ip", "-n", lab.Netns(1), "link", "add", "wgprobe", "type", "wireguard").CombinedOutput(); err == nil {
		t.Skip("this kernel has the wireguard module; the fallback is not exercised here")
	} else {
		t.Logf("kernel without wireguard: %s", strings.TrimSpace(string(out)))
	}

	t.Run("never", func(t *testing.T) {
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
