package ipmath_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/internal/ipmath"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.50.3.0", "255.255.255.255", "::", "fd00::1:2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		a := netip.MustParseAddr(s)
		assert.Equal(t, a, ipmath.FromAddr(a).Addr(a.BitLen()), s)
	}
}

func TestArithmetic(t *testing.T) {
	max := ipmath.U128{Hi: ^uint64(0), Lo: ^uint64(0)}
	for _, r := range []struct {
		name      string
		got, want ipmath.U128
	}{
		{"carry", ipmath.U128{0, ^uint64(0)}.Add(ipmath.U128{0, 1}), ipmath.U128{1, 0}},
		{"wrap", max.Add(ipmath.U128{0, 1}), ipmath.U128{}},
		{"borrow", ipmath.U128{1, 0}.Sub(ipmath.U128{0, 1}), ipmath.U128{0, ^uint64(0)}},
		{"shl cross", ipmath.U128{0, 1}.Shl(64), ipmath.U128{1, 0}},
		{"shl 127", ipmath.U128{0, 1}.Shl(127), ipmath.U128{1 << 63, 0}},
		{"shr cross", ipmath.U128{1, 0}.Shr(1), ipmath.U128{0, 1 << 63}},
		{"shr all", max.Shr(128), ipmath.U128{}},
		{"ones 0", ipmath.Ones(0), ipmath.U128{}},
		{"ones 70", ipmath.Ones(70), ipmath.U128{0x3f, ^uint64(0)}},
		{"andnot", max.AndNot(ipmath.Ones(8)), ipmath.U128{^uint64(0), ^uint64(0xff)}},
	} {
		assert.Equal(t, r.want, r.got, r.name)
	}
	assert.Equal(t, ipmath.U128{Hi: 1 << 8}, ipmath.U128{Lo: 1}.Shl(72))
	assert.Equal(t, ipmath.U128{Lo: 1}, ipmath.U128{Hi: 1 << 8}.Shr(72))
	assert.Equal(t, max, ipmath.Ones(128))
	assert.True(t, ipmath.U128{0, 5}.Less(ipmath.U128{1, 0}))
	assert.False(t, ipmath.U128{1, 0}.Less(ipmath.U128{0, 5}))
}

func TestSubnets(t *testing.T) {
	for _, r := range []struct {
		network string
		len     int
		i       uint64
		nth     string
		last    string
	}{
		{"10.50.0.0/16", 24, 1, "10.50.1.0", "10.50.255.0"},
		{"10.0.0.0/8", 30, 5, "10.0.0.20", "10.255.255.252"},
		{"fd50::/56", 64, 1, "fd50:0:0:1::", "fd50:0:0:ff::"},
		{"fd00::/8", 126, 3, "fd00::c", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffc"},
	} {
		n := netip.MustParsePrefix(r.network)
		assert.Equal(t, r.nth, ipmath.NthSubnet(n.Addr(), r.len, r.i).String(), r.network)
		assert.Equal(t, r.last, ipmath.LastSubnet(n, r.len).String(), r.network)
	}
}

func ExampleLastAddr() {
	fmt.Println(ipmath.LastAddr(netip.MustParsePrefix("10.50.3.0/24")))
	fmt.Println(ipmath.LastAddr(netip.MustParsePrefix("fd00::/120")))
	// Output:
	// 10.50.3.255
	// fd00::ff
}

func TestCovers(t *testing.T) {
	p := netip.MustParsePrefix
	for _, r := range []struct {
		outer, inner string
		want         bool
	}{
		{"10.50.0.0/16", "10.50.2.0/24", true},
		{"10.50.0.0/16", "10.50.0.0/16", true},
		{"10.50.0.0/16", "10.50.2.7/32", true},
		{"10.50.0.0/16", "10.0.0.0/8", false},
		{"10.50.0.0/16", "10.51.0.0/24", false},
		{"10.50.1.0/24", "10.50.1.1/24", true}, // host bits of inner ignored
		{"fd50::/56", "fd50:0:0:2::/64", true},
		{"fd50::/56", "10.50.2.0/24", false},
	} {
		assert.Equal(t, r.want, ipmath.Covers(p(r.outer), p(r.inner)), "%s covers %s", r.outer, r.inner)
	}
	assert.False(t, ipmath.Covers(netip.Prefix{}, p("10.0.0.0/8")))
}

func TestFromIPNet(t *testing.T) {
	parse := func(s string) *net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip // keep the host bits, as an interface address has them
		return n
	}
	for _, r := range []struct{ in, want string }{
		{"10.50.200.1/24", "10.50.200.1/24"},
		{"fd00::2/64", "fd00::2/64"},
		{"192.0.2.2/32", "192.0.2.2/32"},
	} {
		got, ok := ipmath.FromIPNet(parse(r.in))
		assert.True(t, ok, r.in)
		assert.Equal(t, r.want, got.String(), r.in)
	}
	// An IPv4 address in 16-byte form with a 128-bit mask, as some
	// sources hand it.
	mapped := &net.IPNet{IP: net.ParseIP("192.0.2.2"), Mask: net.CIDRMask(120, 128)}
	got, ok := ipmath.FromIPNet(mapped)
	assert.True(t, ok)
	assert.Equal(t, "192.0.2.2/24", got.String())
	_, ok = ipmath.FromIPNet(nil)
	assert.False(t, ok)
	_, ok = ipmath.FromIPNet(&net.IPNet{IP: net.IP{1, 2, 3}, Mask: net.CIDRMask(8, 32)})
	assert.False(t, ok)
}
