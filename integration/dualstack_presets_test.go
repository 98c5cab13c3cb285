//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	presetfiles "github.com/flexhook/flexhook/presets"
)

// dualStackPreset writes preset name with the dual-stack switch on, as an
// operator turns it on (EnableIPv6 and an IPv6Network in net-conf.json;
// the hooks are the preset's own), and returns its path.
func dualStackPreset(t *testing.T, name string) string {
	t.Helper()
	raw, err := presetfiles.Get(name)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(raw, &cfg))
	cfg["EnableIPv6"] = true
	cfg["IPv6Network"] = "fd50::/56"
	out, err := json.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), name+".json")
	require.NoError(t, os.WriteFile(path, out, 0o600))
	return path
}

// TestDualStackPresets runs each -prod preset dual-stack on three nodes
// with IPv6 underlay addresses: every pod address reaches every other in
// both families, and once a node leaves, the others hold no route to
// either of its subnets. The same hooks run single-stack everywhere else
// (IPV6SUBNET is empty there and the IPv6 steps are skipped).
func TestDualStackPresets(t *testing.T) {
	bin := requireLab(t, "ping", "wg", "wireguard-go", "bridge", "arp")
	for _, name := range []string{"vxlan-prod", "host-gw-prod", "wireguard-prod"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			lab := newLab(t, ctx, bin, 3, netlab.IPv6())
			cfg := dualStackPreset(t, name)
			for i := 1; i <= 3; i++ {
				require.NoError(t, lab.StartNode(ctx, i, "--config", cfg))
				require.True(t, lab.PodAddr6(i).Is6(), "node %d got no IPv6 subnet", i)
			}
			for i := 1; i <= 3; i++ {
				for j := 1; j <= 3; j++ {
					if i == j {
						continue
					}
					for _, to := range []netip.Addr{lab.PodAddr(j), lab.PodAddr6(j)} {
						eventually(t, ctx, fmt.Sprintf("%s: node %d reaches %s", name, i, to), func() error {
							return lab.Ping(ctx, i, to)
						})
					}
				}
			}
			gone4, gone6 := lab.Subnet(3), netip.PrefixFrom(lab.PodAddr6(3), 64).Masked()
			require.NoError(t, lab.LeaveNode(ctx, 3))
			for i := 1; i <= 2; i++ {
				eventually(t, ctx, fmt.Sprintf("%s: node %d forgets node 3", name, i), func() error {
					for _, fam := range []string{"-4", "-6"} {
						out, err := lab.Exec(ctx, i, "ip", fam, "route", "show", "table", "all")
						if err != nil {
							return err
						}
						for _, p := range []netip.Prefix{gone4, gone6} {
							if slices.Contains(strings.Fields(string(out)), p.String()) {
								return fmt.Errorf("still routes %s:\n%s", p, out)
							}
						}
					}
					return nil
				})
			}
			for i := 1; i <= 2; i++ {
				require.NoError(t, lab.LeaveNode(ctx, i))
			}
		})
	}
}
