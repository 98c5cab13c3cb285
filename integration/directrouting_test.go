//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	presetfiles "github.com/flexhook/flexhook/presets"
)

// directRoutingConfig writes vxlan-prod with "DirectRouting": true, as an
// operator turns it on, and returns its path.
func directRoutingConfig(t *testing.T) string {
	t.Helper()
	raw, err := presetfiles.Get("vxlan-prod")
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(raw, &cfg))
	be := cfg["Backend"].(map[string]any)
	require.Contains(t, be, "DirectRouting", "vxlan-prod shows the key")
	be["DirectRouting"] = true
	out, err := json.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(path, out, 0o600))
	return path
}

// TestVxlanDirectRouting runs vxlan-prod with DirectRouting on three
// nodes: 1 and 2 share an L2 segment, 3 is on another behind a router.
// Between 1 and 2 the route is direct (via the peer's PublicIP on eth0,
// as host-gw); to and from 3 it goes by vxlan. Pings and TCP pass between
// all pods, and check 9's pods at FLANNEL_MTU (1450: the vxlan path is
// the narrowest) move 4 MB each way with ICMP filtered. Turned off (the
// preset as shipped), every peer goes by vxlan.
func TestVxlanDirectRouting(t *testing.T) {
	bin := requireLab(t, "ping", "nft")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name   string
		args   []string
		direct bool
	}{
		{"on", []string{"--config", directRoutingConfig(t)}, true},
		{"off", []string{"--preset", "vxlan-prod"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := newLab(t, ctx, bin, 3, netlab.Routed(3))
			for i := 1; i <= 3; i++ {
				require.NoError(t, lab.StartNode(ctx, i, tc.args...))
			}
			requireMesh(t, ctx, lab, "direct routing "+tc.name, []int{1, 2, 3})
			for i := 1; i <= 3; i++ {
				for j := 1; j <= 3; j++ {
					if i == j {
						continue
					}
					want := netlab.Route{Dst: lab.Subnet(j).String(), Gateway: lab.Subnet(j).Addr().String(), Dev: "flannel-vxlan"}
					if tc.direct && i != 3 && j != 3 {
						want = netlab.Route{Dst: lab.Subnet(j).String(), Gateway: lab.Underlay(j).String(), Dev: "eth0"}
					}
					r, ok, err := routeTo(ctx, lab, i, lab.Subnet(j))
					require.NoError(t, err)
					require.True(t, ok, "node %d has a route to node %d's subnet", i, j)
					require.Equal(t, want, r, "node %d -> node %d", i, j)
				}
			}
			for i := 1; i <= 3; i++ {
				mtu, err := lab.SubnetMTU(i)
				require.NoError(t, err)
				require.Equal(t, 1450, mtu, "node %d: FLANNEL_MTU is the vxlan path's", i)
				_, err = lab.AddPod(ctx, i, mtu)
				require.NoError(t, err)
			}
			for i := 1; i <= 3; i++ {
				for j := 1; j <= 3; j++ {
					if i != j {
						require.NoError(t, lab.PodPingDF(ctx, i, j, 1450), fmt.Sprintf("pod %d -> pod %d", i, j))
						require.NoError(t, lab.PodTransfer(ctx, i, j, 4<<20))
					}
				}
			}
			require.NoError(t, lab.Close())
		})
	}
}
