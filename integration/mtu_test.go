//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/runner"
)

// customVxlanConfig is a vxlan backend of its own: another device name,
// VNI and MTU (1400) than the preset's.
const customVxlanConfig = "testdata/custom-vxlan.json"

// TestFlannelMTU: subnet.env's FLANNEL_MTU is the MTU of the path pod
// traffic takes, for every preset and for a custom backend, found in the
// kernel without being told (1450 vxlan, 1420 wireguard, the underlay's
// for host-gw, 1400 for the custom device), and an override wins. Each
// node's pod then reaches every other pod with a Don't-Fragment packet of
// exactly FLANNEL_MTU bytes, and, where FLANNEL_MTU is the path's, not
// with one byte more: the flannel CNI plugin gives pods this MTU, so
// their packets never meet a smaller hop (where ICMP "fragmentation
// needed" is filtered, that hop black-holes TCP).
func TestFlannelMTU(t *testing.T) {
	withMTU := filepath.Join(t.TempDir(), "custom-vxlan-mtu.json")
	raw, err := os.ReadFile(customVxlanConfig)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(withMTU,
		[]byte(strings.Replace(string(raw), `"Type": "extension",`, `"Type": "extension", "MTU": 1350,`, 1)), 0o600))
	for _, c := range []struct {
		name   string
		args   []string
		tools  []string
		want   func(ctx context.Context, lab *netlab.Lab, i int) (int, error)
		source string // status.json's MTUSource starts with it
		exact  bool   // FLANNEL_MTU is the path's: one byte more must fail
	}{
		{"vxlan", []string{"--preset", "vxlan"}, []string{"bridge", "arp"}, devMTU("flannel-vxlan"), "path: dev flannel-vxlan", true},
		{"wireguard", []string{"--preset", "wireguard"}, []string{"wg", "wireguard-go"}, devMTU("flannel-wg"), "path: dev flannel-wg", true},
		{"host-gw", []string{"--preset", "host-gw"}, nil, devMTU("eth0"), "path: dev eth0", true},
		{"vxlan-prod", []string{"--preset", "vxlan-prod"}, []string{"bridge", "arp"}, fixedMTU(1450), "path: dev flannel-vxlan", true},
		{"wireguard-prod", []string{"--preset", "wireguard-prod"}, []string{"wg", "wireguard-go"}, fixedMTU(1420), "path: dev flannel-wg", true},
		{"host-gw-prod", []string{"--preset", "host-gw-prod"}, []string{"grep"}, fixedMTU(1500), "path: dev eth0", true},
		{"custom vxlan", []string{"--config", customVxlanConfig}, []string{"bridge"}, devMTU("vx-custom"), "path: dev vx-custom", true},
		{"custom vxlan --mtu", []string{"--config", customVxlanConfig, "--mtu", "1300"}, []string{"bridge"}, fixedMTU(1300), "--mtu", false},
		{"custom vxlan Backend.MTU", []string{"--config", withMTU}, []string{"bridge"}, fixedMTU(1350), "Backend.MTU", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := requireLab(t, c.tools...)
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			lab, err := netlab.New(ctx, t, netlab.Nodes(2), netlab.Flexhook(bin))
			require.NoError(t, err)
			for i := 1; i <= 2; i++ {
				require.NoError(t, lab.StartNode(ctx, i, c.args...))
			}
			requireMesh(t, ctx, lab, "after start", []int{1, 2})
			for i := 1; i <= 2; i++ {
				want, err := c.want(ctx, lab, i)
				require.NoError(t, err)
				require.Less(t, want, 1500+1, "the lab's underlay is 1500")
				eventually(t, ctx, fmt.Sprintf("node %d: FLANNEL_MTU %d from %s", i, want, c.source), func() error {
					got, err := lab.SubnetMTU(i)
					if err != nil {
						return err
					}
					st, err := runner.ReadStatus(lab.StateDir(i))
					if err != nil {
						return err
					}
					if got != want || st.MTU != want || !strings.HasPrefix(st.MTUSource, c.source) {
						return fmt.Errorf("subnet.env %d, status %d (%s)", got, st.MTU, st.MTUSource)
					}
					return nil
				})
				j := 3 - i
				require.NoError(t, lab.PingDF(ctx, i, lab.PodAddr(j), want), "node %d: a pod packet of FLANNEL_MTU bytes", i)
				if c.exact {
					require.Error(t, lab.PingDF(ctx, i, lab.PodAddr(j), want+1), "node %d: FLANNEL_MTU %d is below the path's MTU", i, want)
				}
			}
		})
	}
}

// devMTU reads a device's MTU in node i.
func devMTU(dev string) func(ctx context.Context, lab *netlab.Lab, i int) (int, error) {
	return func(ctx context.Context, lab *netlab.Lab, i int) (int, error) {
		out, err := lab.Exec(ctx, i, "cat", "/sys/class/net/"+dev+"/mtu")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	}
}

func fixedMTU(n int) func(context.Context, *netlab.Lab, int) (int, error) {
	return func(context.Context, *netlab.Lab, int) (int, error) { return n, nil }
}
