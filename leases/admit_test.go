package leases_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// admitPolicy is a node 10.50.1.0/24 at 192.0.2.1 in 10.50.0.0/16, /24s.
func admitPolicy(shape *leases.Shape) leases.Policy {
	return leases.Policy{
		Range:    leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16"), SubnetLen: 24},
		Own:      leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24")},
		PublicIP: netip.MustParseAddr("192.0.2.1"),
		Shape:    shape,
	}
}

// decoded is what a store hands over for key and value.
func decoded(key, value string) leases.Lease { return leases.Decode(key, []byte(value)) }

// val is a lease value with PublicIP ip and BackendData data.
func val(ip, data string) string {
	b, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "extension", BackendData: data})
	if err != nil {
		panic(err)
	}
	return string(b)
}

const goodMAC = "82:87:fe:a4:a9:55"

func TestPolicyCheck(t *testing.T) {
	v6 := func(ip6 string) string {
		return `{"PublicIP":"192.0.2.9","PublicIPv6":"` + ip6 + `","BackendType":"extension"}`
	}
	tests := []struct {
		key, value string
		want       leases.Reason
	}{
		{"10.50.2.0-24", val("192.0.2.2", goodMAC), ""},
		{"10.50.0.0-24", val("192.0.2.2", ""), ""}, // the Network's first subnet is inside it
		// keys
		{"10.50.3.0-024", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"010.50.3.0-24", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"10.50.3.1-24", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"10.50.3.0-24 ", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"10.50.3.0-24\n", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"$(touch x)", val("192.0.2.2", ""), leases.ReasonBadKey},
		{"fd00::-64", val("192.0.2.2", ""), leases.ReasonBadKey},
		// values
		{"10.50.3.0-24", `{"PublicIP":`, leases.ReasonBadValue},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.300","BackendType":"extension"}`, leases.ReasonBadValue},
		{"10.50.3.0-24", `{"PublicIP":"1.2.3.4%eth0","BackendType":"extension"}`, leases.ReasonBadValue},
		{"10.50.3.0-24", strings.Repeat("[", 100000), leases.ReasonBadValue},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.2","BackendType":"vxlan"}`, leases.ReasonBackendType},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.2"}`, leases.ReasonBackendType},
		// subnets
		{"0.0.0.0-0", val("192.0.2.2", ""), leases.ReasonOutsideNetwork}, // the default-route hijack
		{"10.50.3.0-23", val("192.0.2.2", ""), leases.ReasonBadKey},      // host bits
		{"10.50.0.0-16", val("192.0.2.2", ""), leases.ReasonOutsideNetwork},
		{"10.51.3.0-24", val("192.0.2.2", ""), leases.ReasonOutsideNetwork},
		{"10.50.3.0-25", val("192.0.2.2", ""), leases.ReasonOutsideNetwork},
		{"10.50.2.0-23", val("192.0.2.2", ""), leases.ReasonOutsideNetwork},
		{"10.50.2.0-32", val("192.0.2.2", ""), leases.ReasonOutsideNetwork},
		{"10.50.3.0-24&fd00::-64", val("192.0.2.2", ""), leases.ReasonIPv6Subnet},
		// public IPs
		{"10.50.3.0-24", `{"PublicIP":"","BackendType":"extension"}`, leases.ReasonPublicIP},
		{"10.50.3.0-24", val("0.0.0.0", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("0.1.2.3", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("127.0.0.1", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("169.254.1.1", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("224.0.0.1", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("255.255.255.255", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", val("240.0.0.1", ""), leases.ReasonPublicIP},
		{"10.50.3.0-24", `{"PublicIP":"::ffff:192.0.2.2","BackendType":"extension"}`, leases.ReasonPublicIP},
		{"10.50.3.0-24", `{"PublicIP":"2001:db8::1","BackendType":"extension"}`, leases.ReasonPublicIP},
		{"10.50.3.0-24", v6("2001:db8::9"), ""},
		{"10.50.3.0-24", v6("fd00::9"), ""},
		{"10.50.3.0-24", v6("fe80::1%a b"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("fe80::1"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("::1"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("::"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("ff02::1"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("::ffff:192.0.2.1"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", v6("2001:db8::9%eth0"), leases.ReasonPublicIPv6},
		{"10.50.3.0-24", val("192.0.2.1", ""), leases.ReasonOwnPublicIP},
		// BackendData
		{"10.50.3.0-24", val("192.0.2.2", "a b"), ""}, // no shape: spaces are data
		{"10.50.3.0-24", val("192.0.2.2", "a\nb"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\rb"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\x00b"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\tb"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\x1b[2Jb"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\u0085b"), leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", "a\u2028b"), leases.ReasonBackendData},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.2","BackendType":"extension","BackendData":"a` + "\xff" + `b"}`, leases.ReasonBackendData},
		{"10.50.3.0-24", val("192.0.2.2", strings.Repeat("x", leases.MaxBackendData)), ""},
		{"10.50.3.0-24", val("192.0.2.2", strings.Repeat("x", leases.MaxBackendData+1)), leases.ReasonBackendData},
		// own subnet
		{"10.50.1.0-24&fd00::-64", val("192.0.2.2", ""), leases.ReasonIPv6Subnet},
	}
	p := admitPolicy(nil)
	for _, tt := range tests {
		t.Run(tt.key+" "+tt.value[:min(len(tt.value), 60)], func(t *testing.T) {
			got, detail := p.Check(decoded(tt.key, tt.value))
			assert.Equal(t, tt.want, got, detail)
			if tt.want != "" {
				assert.NotEmpty(t, detail)
			}
		})
	}
}

func TestPolicyCheckOwnSubnetAndDualStack(t *testing.T) {
	p := admitPolicy(nil)
	p.Range.IPv6Network = netip.MustParsePrefix("fd50::/56")
	p.Range.IPv6SubnetLen = 64
	p.Own.IPv6Subnet = netip.MustParsePrefix("fd50:0:0:1::/64")
	p.PublicIPv6 = netip.MustParseAddr("2001:db8::1")
	v := func(ip6 string) string {
		return `{"PublicIP":"192.0.2.2","PublicIPv6":"` + ip6 + `","BackendType":"extension"}`
	}
	tests := []struct {
		key, value string
		want       leases.Reason
	}{
		{"10.50.2.0-24&fd50:0:0:2::-64", v("2001:db8::2"), ""},
		{"10.50.2.0-24", v("2001:db8::2"), leases.ReasonIPv6Subnet},
		{"10.50.2.0-24&fd51:0:0:2::-64", v("2001:db8::2"), leases.ReasonIPv6Subnet},
		{"10.50.2.0-24&fd50:0:0:2::-65", v("2001:db8::2"), leases.ReasonIPv6Subnet},
		{"10.50.2.0-24&fd50:0:0:2::-64", v("2001:db8::1"), leases.ReasonOwnPublicIP},
		{"10.50.2.0-24&fd50:0:0:1::-64", v("2001:db8::2"), leases.ReasonOverlapsOwn},
		{"10.50.1.0-24&fd50:0:0:3::-64", v("2001:db8::2"), leases.ReasonOverlapsOwn},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, detail := p.Check(decoded(tt.key, tt.value))
			assert.Equal(t, tt.want, got, detail)
		})
	}
}

func TestShapes(t *testing.T) {
	tests := []struct {
		shape *leases.Shape
		data  string
		ok    bool
	}{
		{leases.ShapeMAC, goodMAC, true},
		{leases.ShapeMAC, "82:87:FE:A4:A9:55", true},
		{leases.ShapeMAC, "00:00:00:00:00:00", false},
		{leases.ShapeMAC, "ff:ff:ff:ff:ff:ff", false},
		{leases.ShapeMAC, "01:00:5e:00:00:01", false},
		{leases.ShapeMAC, goodMAC + " dev eth0", false},
		{leases.ShapeMAC, "-s " + goodMAC, false},
		{leases.ShapeMAC, "82-87-fe-a4-a9-55", false},
		{leases.ShapeMAC, "82:87:fe:a4:a9:55:01:02", false},
		{leases.ShapeMAC, "", false},
		{leases.ShapeWireguardKey, "sJvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Ug=", true},
		{leases.ShapeWireguardKey, "sJvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Uh=", false}, // non-canonical padding bits
		{leases.ShapeWireguardKey, "sJvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Ug= allowed-ips 0.0.0.0/0", false},
		{leases.ShapeWireguardKey, "sJvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Ug", false},
		{leases.ShapeWireguardKey, "-JvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Ug=", false},
		{leases.ShapeEmpty, "", true},
		{leases.ShapeEmpty, "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.shape.Name+" "+tt.data, func(t *testing.T) {
			err := tt.shape.Check(tt.data)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
		})
	}
	s, err := leases.PatternShape(`[a-z]+`)
	require.NoError(t, err)
	require.NoError(t, s.Check("abc"))
	require.Error(t, s.Check("abc def"), "the pattern matches the whole data")
	require.Error(t, s.Check("abc\n"))
	_, err = leases.PatternShape(`(`)
	require.ErrorContains(t, err, "pattern")
}

func TestPolicyShape(t *testing.T) {
	p := admitPolicy(leases.ShapeMAC)
	r, _ := p.Check(decoded("10.50.2.0-24", val("192.0.2.2", goodMAC)))
	assert.Empty(t, r)
	r, _ = p.Check(decoded("10.50.2.0-24", val("192.0.2.2", goodMAC+" dev lo")))
	assert.Equal(t, leases.ReasonDataShape, r)
	r, _ = p.Check(decoded("10.50.2.0-24", val("192.0.2.2", "a\nb")))
	assert.Equal(t, leases.ReasonBackendData, r, "the generic data rules come first")
}

// keys lists an admission's admitted keys and its refusals as "KEY reason".
func keys(a leases.Admission) (adm, ref []string) {
	for _, l := range a.Admitted {
		adm = append(adm, l.Key)
	}
	for _, r := range a.Refused {
		ref = append(ref, r.Lease.Key+" "+string(r.Reason))
	}
	return adm, ref
}

func TestAdmitOverlapsAndOwn(t *testing.T) {
	p := admitPolicy(nil)
	p.Range.IPv6Network = netip.MustParsePrefix("fd50::/56")
	p.Range.IPv6SubnetLen = 64
	p.Own.IPv6Subnet = netip.MustParsePrefix("fd50:0:0:1::/64")
	v := func(ip string) string {
		return `{"PublicIP":"` + ip + `","PublicIPv6":null,"BackendType":"extension"}`
	}
	snap := []leases.Lease{
		decoded("10.50.1.0-24&fd50:0:0:1::-64", v("192.0.2.1")), // own: neither admitted nor refused
		decoded("10.50.2.0-24&fd50:0:0:2::-64", v("192.0.2.2")),
		decoded("10.50.2.0-24&fd50:0:0:9::-64", v("192.0.2.3")), // same IPv4 subnet, later key
		decoded("10.50.3.0-24&fd50:0:0:2::-64", v("192.0.2.4")), // IPv6 subnet taken
		decoded("10.50.4.0-24&fd50:0:0:4::-64", v("192.0.2.5")),
	}
	adm, ref := keys(p.Admit(snap, nil))
	assert.Equal(t, []string{"10.50.2.0-24&fd50:0:0:2::-64", "10.50.4.0-24&fd50:0:0:4::-64"}, adm)
	assert.Equal(t, []string{"10.50.2.0-24&fd50:0:0:9::-64 overlaps_lease", "10.50.3.0-24&fd50:0:0:2::-64 overlaps_lease"}, ref)

	// A lease admitted before keeps its place against a lower key.
	inc := map[netip.Prefix]leases.Lease{}
	for _, l := range snap {
		if l.Key == "10.50.3.0-24&fd50:0:0:2::-64" {
			inc[l.Subnet] = l
		}
	}
	adm, ref = keys(p.Admit(snap, inc))
	assert.Equal(t, []string{"10.50.2.0-24&fd50:0:0:9::-64", "10.50.3.0-24&fd50:0:0:2::-64", "10.50.4.0-24&fd50:0:0:4::-64"}, adm)
	assert.Equal(t, []string{"10.50.2.0-24&fd50:0:0:2::-64 overlaps_lease"}, ref)

	// Deterministic: the same input in another order gives the same result.
	rev := []leases.Lease{snap[4], snap[3], snap[2], snap[1], snap[0]}
	a1, r1 := keys(p.Admit(snap, nil))
	a2, r2 := keys(p.Admit(rev, nil))
	assert.Equal(t, a1, a2)
	assert.Equal(t, r1, r2)
}

// Where the shape says BackendData names a node, a second lease with a
// peer's MAC or key (any case) is refused, whichever order the store
// lists them in; the lease admitted before keeps it; this node's own is
// nobody else's; shapes that name no node let equal data through.
func TestAdmitDuplicateIdentity(t *testing.T) {
	const key = "mCXTsTRyjQKX3fD1K5RZ3VKBhbQt1n0cDSKSyfXhLHk="
	p := admitPolicy(leases.ShapeMAC)
	victim := decoded("10.50.2.0-24", val("192.0.2.2", "b2:d1:fc:40:8d:2f"))
	hijack := decoded("10.50.9.0-24", val("192.0.2.66", "B2:D1:FC:40:8D:2F"))
	other := decoded("10.50.4.0-24", val("192.0.2.4", goodMAC))
	for _, snap := range [][]leases.Lease{{victim, hijack, other}, {other, hijack, victim}} {
		adm, ref := keys(p.Admit(snap, nil))
		assert.Equal(t, []string{"10.50.2.0-24", "10.50.4.0-24"}, adm)
		assert.Equal(t, []string{"10.50.9.0-24 duplicate_backend_data"}, ref)
	}
	// The lease admitted first keeps the identity, though its subnet
	// sorts later.
	adm, ref := keys(p.Admit([]leases.Lease{victim, hijack}, map[netip.Prefix]leases.Lease{hijack.Subnet: hijack}))
	assert.Equal(t, []string{"10.50.9.0-24"}, adm)
	assert.Equal(t, []string{"10.50.2.0-24 duplicate_backend_data"}, ref)
	a := p.Admit([]leases.Lease{victim, hijack}, nil)
	require.Len(t, a.Refused, 1)
	assert.Contains(t, a.Refused[0].Detail, "already the admitted lease 10.50.2.0-24's")

	// This node's own data.
	p.Own.Attrs.BackendData = goodMAC
	adm, ref = keys(p.Admit([]leases.Lease{victim, other}, nil))
	assert.Equal(t, []string{"10.50.2.0-24"}, adm)
	assert.Equal(t, []string{"10.50.4.0-24 duplicate_backend_data"}, ref)

	// WireGuard keys likewise.
	w := admitPolicy(leases.ShapeWireguardKey)
	adm, ref = keys(w.Admit([]leases.Lease{decoded("10.50.2.0-24", val("192.0.2.2", key)), decoded("10.50.3.0-24", val("192.0.2.3", key))}, nil))
	assert.Equal(t, []string{"10.50.2.0-24"}, adm)
	assert.Equal(t, []string{"10.50.3.0-24 duplicate_backend_data"}, ref)

	// No shape, or one that names no node: equal data is no conflict.
	for _, shape := range []*leases.Shape{nil, leases.ShapeEmpty} {
		d := ""
		if shape == nil {
			d = "same"
		}
		adm, _ = keys(admitPolicy(shape).Admit([]leases.Lease{decoded("10.50.2.0-24", val("192.0.2.2", d)), decoded("10.50.3.0-24", val("192.0.2.3", d))}, nil))
		assert.Len(t, adm, 2)
	}
}

// The node's own addresses: a lease may not take a subnet overlapping the
// node's underlay network (host-gw would replace its connected route),
// nor carry one of its addresses as PublicIP.
func TestAdmitNodeAddrs(t *testing.T) {
	p := admitPolicy(nil)
	p.NodeAddrs = []netip.Prefix{
		netip.MustParsePrefix("10.50.200.1/24"), // an underlay inside Network
		netip.MustParsePrefix("192.0.2.1/24"),
		netip.MustParsePrefix("198.51.100.7/24"), // a second interface
		netip.MustParsePrefix("10.50.1.1/24"),    // the CNI bridge: the own subnet
		netip.MustParsePrefix("10.0.0.5/8"),      // wider than Network: chosen to hold it
	}
	for _, r := range []struct {
		key, ip string
		want    leases.Reason
	}{
		{"10.50.200.0-24", "192.0.2.7", leases.ReasonOverlapsNode},
		{"10.50.201.0-24", "192.0.2.7", ""},
		{"10.50.3.0-24", "198.51.100.7", leases.ReasonOwnPublicIP},
		{"10.50.3.0-24", "198.51.100.8", ""},
	} {
		got, detail := p.Check(decoded(r.key, val(r.ip, "")))
		assert.Equal(t, r.want, got, "%s %s: %s", r.key, r.ip, detail)
	}
	got, detail := p.Check(decoded("10.50.200.0-24", val("192.0.2.7", "")))
	assert.Equal(t, leases.ReasonOverlapsNode, got)
	assert.Equal(t, "overlaps 10.50.200.0/24, the network of this node's address 10.50.200.1", detail)
}

func TestAdmitDuplicateKeysDoNotFlap(t *testing.T) {
	p := admitPolicy(nil)
	snap := []leases.Lease{decoded("10.50.3.0-024", val("192.0.2.9", "evil")), decoded("10.50.3.0-24", val("192.0.2.3", "good"))}
	for range 3 {
		a := p.Admit(snap, nil)
		require.Len(t, a.Admitted, 1)
		assert.Equal(t, "good", a.Admitted[0].Attrs.BackendData)
		require.Len(t, a.Refused, 1)
		assert.Equal(t, leases.ReasonBadKey, a.Refused[0].Reason)
		snap[0], snap[1] = snap[1], snap[0]
	}
}

func TestDisplayKey(t *testing.T) {
	assert.Equal(t, "10.50.3.0-24", leases.DisplayKey(leases.Lease{Key: "10.50.3.0-24"}))
	assert.Equal(t, `"a b\n"`, leases.DisplayKey(leases.Lease{Key: "a b\n"}))
	assert.Equal(t, `"\x1b[2J"`, leases.DisplayKey(leases.Lease{Key: "\x1b[2J"}))
	long := leases.DisplayKey(leases.Lease{Key: strings.Repeat("k", 1<<20)})
	assert.Less(t, len(long), 120)
	assert.Contains(t, long, "1048576 bytes")
}

// BenchmarkAdmit10000 admits a snapshot of 10 000 valid leases (a 10/8
// network of /24s), as the engine does on every store update.
func BenchmarkAdmit10000(b *testing.B) {
	p := leases.Policy{Range: leases.Range{Network: netip.MustParsePrefix("10.0.0.0/8"), SubnetLen: 24},
		PublicIP: netip.MustParseAddr("192.0.2.1"), Shape: leases.ShapeMAC}
	snap := make([]leases.Lease, 10000)
	for i := range snap {
		key := fmt.Sprintf("10.%d.%d.0-24", i>>8, i&0xff)
		snap[i] = decoded(key, val(fmt.Sprintf("192.0.%d.%d", 10+i>>8, 1+i&0x7f), fmt.Sprintf("82:87:fe:a4:%02x:%02x", i>>8, i&0xff)))
	}
	b.ResetTimer()
	for b.Loop() {
		if a := p.Admit(snap, nil); len(a.Admitted) != len(snap) {
			b.Fatalf("admitted %d of %d: %v", len(a.Admitted), len(snap), a.Refused[0])
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"82:87:fe:a4:a9:55": "82:87:fe:a4:a9:55", "a\x1b[2Jb": "a?[2Jb", "x\ny\tz\x7f": "x?y?z?", "é ok": "é ok",
	} {
		if got := leases.Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
