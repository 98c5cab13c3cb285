//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// netState is everything of a namespace that a hook could change.
func netState(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "addr", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "neigh", "show"},
		{"bridge", "fdb", "show"},
	} {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
		require.NoError(t, err, "%v: %s", argv, out)
		b.WriteString("$ " + strings.Join(argv, " ") + "\n")
		b.Write(out)
	}
	return b.String()
}

// TestDryRunChangesNothing runs `flexhook dry-run` for the vxlan and
// wireguard presets inside a fresh network namespace: the trace shows the
// commands with the right computed values, and links, addresses, routes,
// neighbours, the fdb and the working directory are exactly as before.
func TestDryRunChangesNothing(t *testing.T) {
	bin := requireLab(t, "bridge")
	tests := []struct {
		preset string
		args   []string
		want   []string
	}{
		{"vxlan",
			[]string{"--backend-data", "82:87:fe:a4:a9:55", "--peer", "10.50.2.0/24,192.0.2.2,b2:d1:fc:40:8d:2f"},
			[]string{
				"+ ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink",
				"+ arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan",
				"+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2",
			}},
		{"wireguard",
			[]string{"--backend-data", "cHVibGljIGtleSBvZiBub2RlIDEgZm9yIGR1bW15ISE=", "--peer", "10.50.2.0/24,192.0.2.2,bm9kZSAyIHB1YmxpYyBrZXkgZm9yIGEgdGVzdCEhISE="},
			[]string{
				"+ ip link add flannel-wg type wireguard",
				"+ ip addr add 10.50.1.0/32 dev flannel-wg",
				"+ wg set flannel-wg peer bm9kZSAyIHB1YmxpYyBrZXkgZm9yIGEgdGVzdCEhISE= endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24",
			}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, t, netlab.Nodes(1), netlab.Flexhook(bin))
	require.NoError(t, err)
	ns := lab.Netns(1)
	for _, tt := range tests {
		t.Run(tt.preset, func(t *testing.T) {
			before := netState(t, ctx, ns)
			cwd := t.TempDir()
			args := append([]string{"netns", "exec", ns, bin, "dry-run", "--preset", tt.preset,
				"--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1"}, tt.args...)
			cmd := exec.CommandContext(ctx, "ip", args...)
			cmd.Dir = cwd
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			lines := strings.Split(string(out), "\n")
			for _, w := range tt.want {
				assert.Contains(t, lines, w)
			}
			assert.Equal(t, before, netState(t, ctx, ns), "dry-run changed the namespace")
			ents, err := os.ReadDir(cwd)
			require.NoError(t, err)
			assert.Empty(t, ents, "dry-run wrote into its working directory")
		})
	}
}
