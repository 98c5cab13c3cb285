package runner

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
)

// lease builds a remote lease from "10.50.2.0/24 192.0.2.2 data".
func lease(s string) leases.Lease {
	f := strings.Fields(s)
	l := leases.Lease{
		Subnet: netip.MustParsePrefix(f[0]),
		Attrs:  leases.Attrs{PublicIP: netip.MustParseAddr(f[1]), BackendType: leases.BackendType},
	}
	if len(f) > 2 {
		l.Attrs.BackendData = f[2]
	}
	return l
}

// ver is lease(s)'s version.
func ver(s string) *journalLease {
	v := journalEntry(lease(s))
	return &v
}

func leaseMap(ss ...string) map[netip.Prefix]*journalLease {
	m := map[netip.Prefix]*journalLease{}
	for _, s := range ss {
		v := ver(s)
		m[v.Subnet] = v
	}
	return m
}

// render prints ops as "add 10.50.2.0/24 192.0.2.2 a; ...".
func render(ops ...[]op) string {
	var out []string
	for _, list := range ops {
		for _, o := range list {
			verb := map[bool]string{true: "add", false: "rm"}[o.kind.String() == "SubnetAddCommand"]
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", verb, o.v.Subnet, o.v.PublicIP, o.v.BackendData)))
		}
	}
	return strings.Join(out, "; ")
}

func leaseSetOf(ss ...string) leaseSet {
	var ls leaseSet
	for _, s := range ss {
		ls = append(ls, ver(s))
	}
	ls.sort()
	return ls
}

func versions(ss ...string) map[netip.Prefix][]*journalLease {
	m := map[netip.Prefix][]*journalLease{}
	for _, s := range ss {
		v := ver(s)
		m[v.Subnet] = append(m[v.Subnet], v)
	}
	return m
}

func TestReconcile(t *testing.T) {
	const a, a2, b = "10.50.2.0/24 192.0.2.2 x", "10.50.2.0/24 192.0.2.9 x", "10.50.3.0/24 192.0.2.3 y"
	for _, tc := range []struct {
		name                      string
		desired, journal, applied []string
		want                      string
	}{
		{"nothing", nil, nil, nil, ""},
		{"new", []string{a}, nil, nil, "add 10.50.2.0/24 192.0.2.2 x"},
		{"gone", nil, []string{a}, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x"},
		{"same", []string{a, b}, []string{a, b}, []string{a, b}, ""},
		{"at a start, everything is added again", []string{a, b}, []string{a, b}, nil,
			"add 10.50.2.0/24 192.0.2.2 x; add 10.50.3.0/24 192.0.2.3 y"},
		{"ip changed", []string{a2}, []string{a}, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x; add 10.50.2.0/24 192.0.2.9 x"},
		{"data changed", []string{"10.50.2.0/24 192.0.2.2 z"}, []string{a}, []string{a},
			"rm 10.50.2.0/24 192.0.2.2 x; add 10.50.2.0/24 192.0.2.2 z"},
		{"every version removed", nil, []string{a, a2}, nil, "rm 10.50.2.0/24 192.0.2.2 x; rm 10.50.2.0/24 192.0.2.9 x"},
		{"old versions removed, the desired one kept", []string{a2}, []string{a, a2}, []string{a2}, "rm 10.50.2.0/24 192.0.2.2 x"},
		{"removes before adds across subnets", []string{"10.50.3.0/24 192.0.2.9 key"}, []string{"10.50.9.0/24 192.0.2.9 key"}, nil,
			"rm 10.50.9.0/24 192.0.2.9 key; add 10.50.3.0/24 192.0.2.9 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rm, add := reconcile(leaseSetOf(tc.desired...), versions(tc.journal...), leaseMap(tc.applied...), nil)
			assert.Equal(t, tc.want, render(rm, add))
		})
	}
}

func TestReconcileResyncAndExpiration(t *testing.T) {
	d := leaseMap("10.50.2.0/24 192.0.2.2 x")
	s := netip.MustParsePrefix("10.50.2.0/24")
	l := lease("10.50.2.0/24 192.0.2.2 x")
	l.Expiration = time.Unix(1_800_000_000, 0)
	l.Key = "10.50.2.0-24"
	v := journalEntry(l)
	rm, add := reconcile(leaseSet{&v}, versions("10.50.2.0/24 192.0.2.2 x"), d, nil)
	assert.Empty(t, render(rm, add), "the expiration is not what hooks see")
	rm, add = reconcile(leaseSet{d[s]}, versions("10.50.2.0/24 192.0.2.2 x"), d, map[netip.Prefix]bool{s: true})
	assert.Equal(t, "add 10.50.2.0/24 192.0.2.2 x", render(rm, add))
}

func TestReconcileIPv6Changed(t *testing.T) {
	old := leaseMap("10.50.2.0/24 192.0.2.2 x")
	s := netip.MustParsePrefix("10.50.2.0/24")
	l := *old[s]
	l.IPv6Subnet = netip.MustParsePrefix("fd00:0:0:2::/64")
	l.PublicIPv6 = netip.MustParseAddr("2001:db8::2")
	rm, add := reconcile(leaseSet{&l}, map[netip.Prefix][]*journalLease{s: {old[s]}}, old, nil)
	assert.Len(t, rm, 1)
	assert.Len(t, add, 1)
}

func TestHeldBack(t *testing.T) {
	add := op{hooks.SubnetAdd, ver("10.50.3.0/24 192.0.2.9 key")}
	assert.True(t, heldBack(add, []op{{hooks.SubnetRemove, ver("10.50.3.0/24 192.0.2.7 other")}}), "its own subnet's old version")
	assert.False(t, heldBack(add, []op{{hooks.SubnetRemove, ver("10.50.9.0/24 192.0.2.9 key")}}), "another subnet's")
}

func TestSameNode(t *testing.T) {
	l := ver("10.50.3.0/24 192.0.2.9 key")
	for _, tc := range []struct {
		other string
		want  bool
	}{
		{"10.50.9.0/24 192.0.2.9 other", true}, // the same node elsewhere
		{"10.50.9.0/24 192.0.2.7 key", true},   // the same key elsewhere
		{"10.50.9.0/24 192.0.2.7 other", false},
		{"10.50.3.0/24 192.0.2.9 key", false}, // the same subnet: per-subnet order handles it
	} {
		assert.Equal(t, tc.want, sameNode(l, ver(tc.other)), tc.other)
	}
	assert.False(t, sameNode(ver("10.50.3.0/24 192.0.2.9"), ver("10.50.4.0/24 192.0.2.8")), "empty data is no identity")
}

func TestFirstHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.50.3.0/24", "10.50.3.1/24"},
		{"fd00:0:0:3::/64", "fd00:0:0:3::1/64"},
	} {
		assert.Equal(t, tc.want, firstHost(netip.MustParsePrefix(tc.in)).String())
	}
}

func TestSubnetEnv(t *testing.T) {
	v4 := &hooks.Config{Range: leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16")}}
	dual := &hooks.Config{EnableIPv6: true, Range: leases.Range{Network: v4.Network, IPv6Network: netip.MustParsePrefix("fd00::/56")}}
	own := leases.Lease{Subnet: netip.MustParsePrefix("10.50.3.0/24")}
	own6 := own
	own6.IPv6Subnet = netip.MustParsePrefix("fd00:0:0:3::/64")
	for _, tc := range []struct {
		cfg    *hooks.Config
		own    leases.Lease
		mtu    int
		ipMasq bool
		want   string
	}{
		{v4, own, 1500, false, "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"},
		{v4, own, 1500, true, "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n"},
		{dual, own6, 1450, false, "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"},
	} {
		assert.Equal(t, tc.want, string(subnetEnv(tc.cfg, tc.own, tc.mtu, tc.ipMasq)))
	}
}

func TestLeaseSet(t *testing.T) {
	ls := leaseSetOf("10.50.9.0/24 192.0.2.9", "10.50.2.0/24 192.0.2.2", "10.50.30.0/24 192.0.2.30")
	var got []string
	for _, v := range ls {
		got = append(got, v.Subnet.String())
	}
	assert.Equal(t, []string{"10.50.2.0/24", "10.50.9.0/24", "10.50.30.0/24"}, got)
	v, ok := ls.get(netip.MustParsePrefix("10.50.9.0/24"))
	assert.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("192.0.2.9"), v.PublicIP)
	_, ok = ls.get(netip.MustParsePrefix("10.50.3.0/24"))
	assert.False(t, ok)
	_, ok = leaseSet(nil).get(netip.MustParsePrefix("10.50.3.0/24"))
	assert.False(t, ok)
}
