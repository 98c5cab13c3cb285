//go:build integration

package pathmtu_test

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/pathmtu"
	"github.com/flexhook/flexhook/internal/testutil"
)

const innerEnv = "FLEXHOOK_PATHMTU_INNER"

// TestProbeKernel reads a real kernel: it runs itself again in a fresh
// network namespace (unshare), where it builds what the vxlan recipe and
// a host-gw peer leave behind, step by step, and probes after each step.
func TestProbeKernel(t *testing.T) {
	if os.Getenv(innerEnv) == "1" {
		probeInner(t)
		return
	}
	testutil.RunInner(t, "TestProbeKernel", innerEnv, []string{"--net"}, "ip")
}

func probeInner(t *testing.T) {
	ip := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	q := pathmtu.Query{
		Networks: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/16")},
		Own:      []netip.Prefix{netip.MustParsePrefix("10.50.1.0/24")},
	}
	probe := func() string {
		t.Helper()
		p, ok, err := pathmtu.Probe(q)
		require.NoError(t, err)
		if !ok {
			return ""
		}
		return p.String()
	}
	ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
	ip("link", "set", "eth0", "up")
	ip("link", "add", "cni0", "type", "bridge")
	ip("link", "set", "cni0", "mtu", "1400")
	ip("addr", "add", "10.50.1.1/24", "dev", "cni0")
	assert.Equal(t, "", probe(), "the pod bridge and the underlay are not the path")

	ip("link", "add", "vx9", "type", "vxlan", "id", "9", "dstport", "8472", "nolearning")
	ip("link", "set", "mtu", "1450", "dev", "vx9")
	ip("addr", "add", "10.50.1.0/32", "dev", "vx9")
	ip("link", "set", "vx9", "up")
	assert.Equal(t, "1450 (dev vx9, address 10.50.1.0/32)", probe())

	ip("route", "add", "10.50.2.0/24", "via", "192.0.2.2")
	ip("route", "add", "10.50.3.0/24", "nexthop", "via", "10.50.3.0", "dev", "vx9", "onlink")
	assert.Equal(t, "1450 (dev vx9, route 10.50.3.0/24)", probe())

	ip("route", "add", "10.50.4.0/24", "via", "192.0.2.4", "mtu", "1300", "table", "100")
	assert.Equal(t, "1300 (dev eth0, route 10.50.4.0/24)", probe(), "every table, the route's mtu")
}
