package runner

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

func leaseMap(ss ...string) map[netip.Prefix]leases.Lease {
	m := map[netip.Prefix]leases.Lease{}
	for _, s := range ss {
		l := lease(s)
		m[l.Subnet] = l
	}
	return m
}

// render prints a diff as "add 10.50.2.0/24 192.0.2.2 a; ..." in subnet order.
func render(d map[netip.Prefix][]op) string {
	var out []string
	for _, s := range sortedSubnets(d) {
		for _, o := range d[s] {
			verb := map[bool]string{true: "add", false: "rm"}[o.kind.String() == "SubnetAddCommand"]
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", verb, o.lease.Subnet, o.lease.Attrs.PublicIP, o.lease.Attrs.BackendData)))
		}
	}
	return strings.Join(out, "; ")
}

func TestDiff(t *testing.T) {
	const a, a2, b = "10.50.2.0/24 192.0.2.2 x", "10.50.2.0/24 192.0.2.9 x", "10.50.3.0/24 192.0.2.3 y"
	for _, tc := range []struct {
		name             string
		desired, applied []string
		want             string
	}{
		{"nothing", nil, nil, ""},
		{"new", []string{a}, nil, "add 10.50.2.0/24 192.0.2.2 x"},
		{"gone", nil, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x"},
		{"same", []string{a, b}, []string{a, b}, ""},
		{"ip changed", []string{a2}, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x; add 10.50.2.0/24 192.0.2.9 x"},
		{"data changed", []string{"10.50.2.0/24 192.0.2.2 z"}, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x; add 10.50.2.0/24 192.0.2.2 z"},
		{"mixed", []string{b}, []string{a}, "rm 10.50.2.0/24 192.0.2.2 x; add 10.50.3.0/24 192.0.2.3 y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, render(diff(leaseMap(tc.desired...), leaseMap(tc.applied...))))
		})
	}
}

func TestDiffIgnoresExpiration(t *testing.T) {
	d := leaseMap("10.50.2.0/24 192.0.2.2 x")
	s := netip.MustParsePrefix("10.50.2.0/24")
	l := d[s]
	l.Expiration = l.Expiration.Add(1)
	assert.Empty(t, diff(map[netip.Prefix]leases.Lease{s: l}, d))
}

func TestDiffIPv6Changed(t *testing.T) {
	old := leaseMap("10.50.2.0/24 192.0.2.2 x")
	s := netip.MustParsePrefix("10.50.2.0/24")
	l := old[s]
	l.IPv6Subnet = netip.MustParsePrefix("fd00:0:0:2::/64")
	l.Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::2")
	assert.Len(t, diff(map[netip.Prefix]leases.Lease{s: l}, old)[s], 2)
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
		cfg  *hooks.Config
		own  leases.Lease
		mtu  int
		want string
	}{
		{v4, own, 1500, "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"},
		{dual, own6, 1450, "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"},
	} {
		assert.Equal(t, tc.want, string(subnetEnv(tc.cfg, tc.own, tc.mtu)))
	}
}

func TestJournalRoundTrip(t *testing.T) {
	m := leaseMap("10.50.2.0/24 192.0.2.2 x", "10.50.3.0/24 192.0.2.3")
	l := m[netip.MustParsePrefix("10.50.3.0/24")]
	l.IPv6Subnet = netip.MustParsePrefix("fd00:0:0:3::/64")
	l.Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::3")
	m[l.Subnet] = l
	data, err := encodeJournal(m)
	assert.NoError(t, err)
	got, err := decodeJournal(data)
	assert.NoError(t, err)
	assert.Equal(t, m, got)

	_, err = decodeJournal([]byte(`{"Version":9,"Applied":[]}`))
	assert.ErrorContains(t, err, "unsupported version 9")
}

// The journal's log: its leases join applied.json's for subnets it does
// not hold, a torn last line is a crash while appending, a rewrite of the
// journal empties it.
func TestJournalLog(t *testing.T) {
	dir := t.TempDir()
	base := leaseMap("10.50.2.0/24 192.0.2.2 old")
	require.NoError(t, saveJournal(dir, base))
	require.NoError(t, appendJournalLog(dir, mapValues(leaseMap("10.50.2.0/24 192.0.2.2 new", "10.50.3.0/24 192.0.2.3 x"))))
	require.NoError(t, appendJournalLog(dir, mapValues(leaseMap("10.50.4.0/24 192.0.2.4 y"))))
	f, err := os.OpenFile(filepath.Join(dir, JournalLogFile), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"Subnet":"10.50.5.0/24","Publ`) // torn
	require.NoError(t, err)
	require.NoError(t, f.Close())

	got, err := loadJournal(dir)
	require.NoError(t, err)
	assert.Equal(t, leaseMap("10.50.2.0/24 192.0.2.2 old", "10.50.3.0/24 192.0.2.3 x", "10.50.4.0/24 192.0.2.4 y"), got,
		"applied.json's lease wins for its subnet: its data is what a Remove needs")
	fi, err := os.Stat(filepath.Join(dir, JournalLogFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, saveJournal(dir, got))
	fi, err = os.Stat(filepath.Join(dir, JournalLogFile))
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the rewrite holds the log's leases; the log is emptied")
	again, err := loadJournal(dir)
	require.NoError(t, err)
	assert.Equal(t, got, again)

	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalLogFile), []byte("not json\n{}\n"), 0o600))
	_, err = loadJournal(dir)
	assert.ErrorContains(t, err, "line 1")
}

func mapValues(m map[netip.Prefix]leases.Lease) []leases.Lease {
	out := make([]leases.Lease, 0, len(m))
	for _, l := range sortedSubnets(m) {
		out = append(out, m[l])
	}
	return out
}
