//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// dualStackConfig routes both families, host-gw style: IPV6SUBNET via
// PUBLIC_IPV6 next to SUBNET via PUBLIC_IP. The kube dual-stack lab
// (integration/kube) runs it too.
const dualStackConfig = "testdata/dual-stack.json"

// TestDualStack runs a dual-stack custom recipe on three nodes with the
// file store: each node gets an IPv4 and an IPv6 subnet, the hooks see
// IPV6SUBNET and PUBLIC_IPV6, and every pod address reaches every other in
// both families.
func TestDualStack(t *testing.T) {
	bin := requireLab(t, "ping")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 3, netlab.IPv6())
	cfg, err := filepath.Abs(dualStackConfig)
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		require.NoError(t, lab.StartNode(ctx, i, "--config", cfg, "--trace"))
		require.True(t, lab.PodAddr6(i).IsValid(), "node %d got no IPv6 subnet", i)
		require.True(t, lab.PodAddr6(i).Is6())
	}
	for i := 1; i <= 3; i++ {
		for j := 1; j <= 3; j++ {
			if i == j {
				continue
			}
			for _, to := range []netip.Addr{lab.PodAddr(j), lab.PodAddr6(j)} {
				eventually(t, ctx, fmt.Sprintf("node %d reaches %s", i, to), func() error {
					return lab.Ping(ctx, i, to)
				})
			}
		}
	}
}
