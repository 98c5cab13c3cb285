package runner_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// A dual-stack config gives every hook IPV6SUBNET and PUBLIC_IPV6, the
// lease key carries both subnets, and subnet.env has the IPv6 lines.
func TestDualStack(t *testing.T) {
	data, err := json.Marshal(map[string]any{
		"Network": "10.50.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:50::/56",
		"Backend": map[string]string{
			"Type":               "extension",
			"PostStartupCommand": `echo "post $SUBNET $IPV6SUBNET $PUBLIC_IPV6" >> events`,
			"SubnetAddCommand":   `echo "add $SUBNET $IPV6SUBNET $PUBLIC_IP $PUBLIC_IPV6" >> events`,
		},
	})
	require.NoError(t, err)
	cfg, err := hooks.Parse(data)
	require.NoError(t, err)

	storeDir := t.TempDir()
	store := newStore(t, storeDir)
	p, err := store.Acquire(t.Context(), cfg.Range, leases.Attrs{
		PublicIP: netip.MustParseAddr("192.0.2.2"), PublicIPv6: netip.MustParseAddr("2001:db8::2"),
		BackendType: leases.BackendType,
	})
	require.NoError(t, err)
	require.True(t, p.IPv6Subnet.IsValid(), "peer lease has no IPv6 subnet")

	envFile := filepath.Join(t.TempDir(), "subnet.env")
	n := start(t, cfg, store, t.TempDir(), runner.PublicIPv6(netip.MustParseAddr("2001:db8::1")), runner.SubnetFile(envFile))
	own := n.lease()
	require.True(t, own.IPv6Subnet.IsValid())
	assert.True(t, netip.MustParsePrefix("fd00:50::/56").Contains(own.IPv6Subnet.Addr()))
	assert.NotEqual(t, p.IPv6Subnet, own.IPv6Subnet)

	n.waitEvent(fmt.Sprintf("post %s %s 2001:db8::1", own.Subnet, own.IPv6Subnet))
	n.waitEvent(fmt.Sprintf("add %s %s 192.0.2.2 2001:db8::2", p.Subnet, p.IPv6Subnet))

	_, err = os.Stat(filepath.Join(storeDir, "subnets", leases.SubnetKey(own.Subnet, own.IPv6Subnet)))
	require.NoError(t, err, "lease key must carry both subnets")
	env, err := os.ReadFile(envFile)
	require.NoError(t, err)
	assert.Contains(t, string(env), "FLANNEL_IPV6_NETWORK=fd00:50::/56\n")
	assert.Contains(t, string(env), fmt.Sprintf("FLANNEL_IPV6_SUBNET=%s/64\n", own.IPv6Subnet.Addr().Next()))
}
