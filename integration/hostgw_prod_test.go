//go:build integration

package integration

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// host-gw-prod routes only to peers on the node's own L2 segment: a peer
// whose PublicIP the node reaches through a router gets no route (a
// host-gw route via it could not work), and the failure says why in
// status.json; peers on the segment are routed as by host-gw.
func TestHostGwProdRefusesOffLinkPeers(t *testing.T) {
	bin := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	// Node 1 reaches 198.51.100.0/24 through node 2, a router.
	out, err := lab.Exec(ctx, 1, "ip", "route", "add", "198.51.100.0/24", "via", lab.Underlay(2).String())
	require.NoError(t, err, "%s", out)
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StartNode(ctx, i, "--preset", "host-gw-prod"))
	}
	requireMesh(t, ctx, lab, "on one segment", []int{1, 2})

	// The peer's subnet is one neither node holds: theirs are picked at
	// random from the Network, and a lease written over node 1's own made
	// it shut down instead (a flake once in ~250 runs).
	var peer netip.Prefix
	for _, s := range []string{"10.50.250.0/24", "10.50.251.0/24", "10.50.252.0/24"} {
		if p := netip.MustParsePrefix(s); p != lab.Subnet(1) && p != lab.Subnet(2) {
			peer = p
			break
		}
	}
	writeLease(t, lab, peer.String(), "198.51.100.7", "")
	failingAs(t, ctx, lab, 1, peer.String(), nil)
	require.Contains(t, lab.Logs(1), "198.51.100.7 is not on this node's L2 segment (reached through a router)")
	out, err = lab.Exec(ctx, 1, "ip", "route", "show", peer.String())
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(string(out)), "no route to a peer behind a router")
	requireMesh(t, ctx, lab, "beside the refused peer", []int{1, 2})

	require.NoError(t, os.Remove(filepath.Join(lab.StoreDir(), "subnets", leases.SubnetKey(peer, netip.Prefix{}))))
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.LeaveNode(ctx, i))
	}
}
