package leases

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// v4Range is 10.50.1.0/24 .. 10.50.255.0/24 in 10.50.0.0/16: 255 subnets.
func v4Range() Range {
	return Range{Network: pfx("10.50.0.0/16"), SubnetLen: 24, SubnetMin: addr("10.50.1.0"), SubnetMax: addr("10.50.255.0")}
}

// dualRange pairs 10.50.1.0/24.. with fd00:0:0:1::/64.. (255 of each).
func dualRange() Range {
	r := v4Range()
	r.IPv6Network, r.IPv6SubnetLen = pfx("fd00::/56"), 64
	r.IPv6SubnetMin, r.IPv6SubnetMax = addr("fd00:0:0:1::"), addr("fd00:0:0:ff::")
	return r
}

func with(r Range, f func(*Range)) Range { f(&r); return r }

func TestRangeValidate(t *testing.T) {
	tests := []struct {
		name string
		r    Range
		want string // "" when valid
	}{
		{"v4", v4Range(), ""},
		{"dual", dualRange(), ""},
		{"one subnet", with(v4Range(), func(r *Range) { r.SubnetMax = r.SubnetMin }), ""},
		{"len 32", with(v4Range(), func(r *Range) { r.SubnetLen, r.SubnetMax = 32, addr("10.50.1.7") }), ""},
		{"no network", Range{}, "Network is not set"},
		{"v6 network", with(v4Range(), func(r *Range) { r.Network = pfx("fd00::/16") }), "is not IPv4"},
		{"host bits", with(v4Range(), func(r *Range) { r.Network = pfx("10.50.0.1/16") }), "host bits"},
		{"len short", with(v4Range(), func(r *Range) { r.SubnetLen = 15 }), "SubnetLen 15 is not between 16 and 32"},
		{"len long", with(v4Range(), func(r *Range) { r.SubnetLen = 33 }), "SubnetLen 33"},
		{"min unset", with(v4Range(), func(r *Range) { r.SubnetMin = netip.Addr{} }), "SubnetMin is not set"},
		{"min outside", with(v4Range(), func(r *Range) { r.SubnetMin = addr("10.49.0.0") }), "SubnetMin 10.49.0.0 is not inside"},
		{"max outside", with(v4Range(), func(r *Range) { r.SubnetMax = addr("10.51.0.0") }), "SubnetMax 10.51.0.0 is not inside"},
		{"min unaligned", with(v4Range(), func(r *Range) { r.SubnetMin = addr("10.50.1.1") }), "SubnetMin 10.50.1.1 is not on a /24 boundary"},
		{"max unaligned", with(v4Range(), func(r *Range) { r.SubnetMax = addr("10.50.9.128") }), "SubnetMax 10.50.9.128 is not on a /24"},
		{"min above max", with(v4Range(), func(r *Range) { r.SubnetMin, r.SubnetMax = r.SubnetMax, r.SubnetMin }), "SubnetMin 10.50.255.0 is above SubnetMax"},
		{"v6 is v4", with(dualRange(), func(r *Range) { r.IPv6Network = pfx("10.0.0.0/8") }), "IPv6Network 10.0.0.0/8 is not IPv6"},
		{"v6 len", with(dualRange(), func(r *Range) { r.IPv6SubnetLen = 129 }), "IPv6SubnetLen 129"},
		{"v6 unaligned", with(dualRange(), func(r *Range) { r.IPv6SubnetMin = addr("fd00:0:0:1::1") }), "IPv6SubnetMin fd00:0:0:1::1 is not on a /64"},
		{"v6 outside", with(dualRange(), func(r *Range) { r.IPv6SubnetMax = addr("fd01::") }), "IPv6SubnetMax fd01:: is not inside"},
		{"v6 order", with(dualRange(), func(r *Range) { r.IPv6SubnetMin = addr("fd00:0:0:ff::"); r.IPv6SubnetMax = addr("fd00:0:0:1::") }), "IPv6SubnetMin fd00:0:0:ff:: is above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidRange)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRangeLen(t *testing.T) {
	tests := []struct {
		name string
		r    Range
		want int
	}{
		{"v4", v4Range(), 255},
		{"one", with(v4Range(), func(r *Range) { r.SubnetMax = r.SubnetMin }), 1},
		{"invalid", Range{}, 0},
		{"whole /0 of /32s capped", Range{Network: pfx("0.0.0.0/0"), SubnetLen: 32, SubnetMin: addr("0.0.0.0"), SubnetMax: addr("255.255.255.255")}, MaxCandidates},
		{"/1 of /31s is 2^30", Range{Network: pfx("0.0.0.0/1"), SubnetLen: 31, SubnetMin: addr("0.0.0.0"), SubnetMax: addr("127.255.255.254")}, 1 << 30},
		{"dual, v6 wider", with(dualRange(), func(r *Range) { r.IPv6Network, r.IPv6SubnetMax = pfx("fd00::/8"), addr("fdff:ffff:ffff:ffff::") }), 255},
		{"dual, v6 narrower", with(dualRange(), func(r *Range) { r.IPv6SubnetMax = addr("fd00:0:0:3::") }), 3},
		{"dual, both huge", Range{
			Network: pfx("0.0.0.0/0"), SubnetLen: 32, SubnetMin: addr("0.0.0.0"), SubnetMax: addr("255.255.255.255"),
			IPv6Network: pfx("::/0"), IPv6SubnetLen: 128, IPv6SubnetMin: addr("::"), IPv6SubnetMax: addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
		}, MaxCandidates},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, tt.r.Len()) })
	}
}

func TestRangeNth(t *testing.T) {
	wide := Range{ // IPv6 subnets of /56: consecutive ones differ above bit 64
		Network: pfx("10.0.0.0/8"), SubnetLen: 16, SubnetMin: addr("10.0.0.0"), SubnetMax: addr("10.255.0.0"),
		IPv6Network: pfx("fd00::/48"), IPv6SubnetLen: 56, IPv6SubnetMin: addr("fd00::"), IPv6SubnetMax: addr("fd00:0:0:ff00::"),
	}
	tests := []struct {
		name   string
		r      Range
		i      int
		v4, v6 string // "" for zero
	}{
		{"first", v4Range(), 0, "10.50.1.0/24", ""},
		{"second", v4Range(), 1, "10.50.2.0/24", ""},
		{"last", v4Range(), 254, "10.50.255.0/24", ""},
		{"past end", v4Range(), 255, "", ""},
		{"negative", v4Range(), -1, "", ""},
		{"invalid range", Range{}, 0, "", ""},
		{"dual first", dualRange(), 0, "10.50.1.0/24", "fd00:0:0:1::/64"},
		{"dual third", dualRange(), 2, "10.50.3.0/24", "fd00:0:0:3::/64"},
		{"dual last", dualRange(), 254, "10.50.255.0/24", "fd00:0:0:ff::/64"},
		{"v6 capped by v6 max", with(dualRange(), func(r *Range) { r.IPv6SubnetMax = addr("fd00:0:0:2::") }), 2, "", ""},
		{"v6 above bit 64", wide, 1, "10.1.0.0/16", "fd00:0:0:100::/56"},
		{"v6 last of wide", wide, 255, "10.255.0.0/16", "fd00:0:0:ff00::/56"},
		{"/32", Range{Network: pfx("10.0.0.0/30"), SubnetLen: 32, SubnetMin: addr("10.0.0.1"), SubnetMax: addr("10.0.0.3")}, 2, "10.0.0.3/32", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v4, v6 := tt.r.Nth(tt.i)
			assert.Equal(t, tt.v4, prefixString(v4))
			assert.Equal(t, tt.v6, prefixString(v6))
		})
	}
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func TestRangeFits(t *testing.T) {
	tests := []struct {
		name   string
		r      Range
		v4, v6 string
		want   bool
	}{
		{"candidate", v4Range(), "10.50.7.0/24", "", true},
		{"below min", v4Range(), "10.50.0.0/24", "", false},
		{"other network", v4Range(), "10.51.7.0/24", "", false},
		{"wrong length", v4Range(), "10.50.7.0/25", "", false},
		{"wider", v4Range(), "10.50.0.0/16", "", false},
		{"v6 without dual stack", v4Range(), "10.50.7.0/24", "fd00:0:0:7::/64", false},
		{"dual", dualRange(), "10.50.7.0/24", "fd00:0:0:9::/64", true},
		{"dual missing v6", dualRange(), "10.50.7.0/24", "", false},
		{"dual v6 outside", dualRange(), "10.50.7.0/24", "fd00:0:0:100::/64", false},
		{"dual v6 length", dualRange(), "10.50.7.0/24", "fd00:0:0:9::/80", false},
		{"dual v6 below min", dualRange(), "10.50.7.0/24", "fd00::/64", false},
		{"no v4", v4Range(), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v4, v6 netip.Prefix
			if tt.v4 != "" {
				v4 = pfx(tt.v4)
			}
			if tt.v6 != "" {
				v6 = pfx(tt.v6)
			}
			assert.Equal(t, tt.want, tt.r.Fits(v4, v6))
		})
	}
}

func lease(v4 string) Lease { return Lease{Subnet: pfx(v4)} }

func leaseV6(v4, v6 string) Lease {
	l := Lease{IPv6Subnet: pfx(v6)}
	if v4 != "" {
		l.Subnet = pfx(v4)
	}
	return l
}

func TestPickFree(t *testing.T) {
	small := with(v4Range(), func(r *Range) { r.SubnetMax = addr("10.50.4.0") }) // 4 subnets
	smallDual := with(dualRange(), func(r *Range) { r.SubnetMax = addr("10.50.4.0") })
	tests := []struct {
		name    string
		r       Range
		taken   []Lease
		want    []string // every possible pick ("v4" or "v4 v6")
		wantErr error
	}{
		{"empty", small, nil, []string{"10.50.1.0/24", "10.50.2.0/24", "10.50.3.0/24", "10.50.4.0/24"}, nil},
		{"exact", small, []Lease{lease("10.50.1.0/24"), lease("10.50.3.0/24")}, []string{"10.50.2.0/24", "10.50.4.0/24"}, nil},
		{"last free", small, []Lease{lease("10.50.1.0/24"), lease("10.50.2.0/24"), lease("10.50.4.0/24")}, []string{"10.50.3.0/24"}, nil},
		{"narrower lease takes its block", small, []Lease{lease("10.50.1.128/25"), lease("10.50.2.7/32"), lease("10.50.3.64/26")}, []string{"10.50.4.0/24"}, nil},
		{"wider lease takes nothing", small, []Lease{lease("10.50.0.0/17"), lease("10.50.0.0/16"), lease("0.0.0.0/0"), lease("10.50.2.0/23"), lease("10.50.3.0/24")}, []string{"10.50.1.0/24", "10.50.2.0/24", "10.50.4.0/24"}, nil},
		{"outside leases ignored", small, []Lease{lease("10.50.0.0/24"), lease("10.50.5.0/24"), lease("192.168.0.0/16"), {}}, []string{"10.50.1.0/24", "10.50.2.0/24", "10.50.3.0/24", "10.50.4.0/24"}, nil},
		{"duplicates", small, []Lease{lease("10.50.2.0/24"), lease("10.50.2.0/24"), lease("10.50.1.128/25")}, []string{"10.50.3.0/24", "10.50.4.0/24"}, nil},
		{"full", small, []Lease{lease("10.50.1.0/24"), lease("10.50.2.0/24"), lease("10.50.3.0/24"), lease("10.50.4.0/24")}, nil, ErrNoFreeSubnet},
		{"not covered by a wide one", small, []Lease{lease("10.0.0.0/8")}, []string{"10.50.1.0/24", "10.50.2.0/24", "10.50.3.0/24", "10.50.4.0/24"}, nil},
		{"invalid range", Range{}, nil, nil, ErrInvalidRange},
		{"dual pairs by index", smallDual, nil, []string{"10.50.1.0/24 fd00:0:0:1::/64", "10.50.2.0/24 fd00:0:0:2::/64", "10.50.3.0/24 fd00:0:0:3::/64", "10.50.4.0/24 fd00:0:0:4::/64"}, nil},
		{"dual v6 overlap takes", smallDual, []Lease{lease("10.50.1.0/24"), leaseV6("10.9.9.0/24", "fd00:0:0:2::/64"), leaseV6("", "fd00:0:0:4:8000::/65")}, []string{"10.50.3.0/24 fd00:0:0:3::/64"}, nil},
		{"dual v6 wide takes nothing", smallDual, []Lease{leaseV6("", "fd00::/8"), leaseV6("", "fd00:0:0:2::/64")}, []string{"10.50.1.0/24 fd00:0:0:1::/64", "10.50.3.0/24 fd00:0:0:3::/64", "10.50.4.0/24 fd00:0:0:4::/64"}, nil},
		{"v6 ignored without dual", small, []Lease{leaseV6("", "fd00::/8")}, []string{"10.50.1.0/24", "10.50.2.0/24", "10.50.3.0/24", "10.50.4.0/24"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, 2))
			seen := map[string]int{}
			for range 400 {
				v4, v6, err := PickFree(tt.r, tt.taken, rnd)
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
					return
				}
				require.NoError(t, err)
				s := v4.String()
				if v6.IsValid() {
					s += " " + v6.String()
				}
				seen[s]++
			}
			got := make([]string, 0, len(seen))
			for _, w := range tt.want {
				if seen[w] > 0 {
					got = append(got, w)
				}
			}
			assert.Equal(t, tt.want, got, "every free candidate is picked sometimes")
			assert.Len(t, seen, len(tt.want), "only free candidates are picked: %v", seen)
		})
	}
}

func TestPickFreeErrorNamesRange(t *testing.T) {
	r := with(v4Range(), func(r *Range) { r.SubnetMax = r.SubnetMin })
	_, _, err := PickFree(r, []Lease{lease("10.50.1.0/24")}, nil)
	require.ErrorIs(t, err, ErrNoFreeSubnet)
	assert.EqualError(t, err, "out of subnets in 10.50.1.0/24..10.50.1.0/24 in 10.50.0.0/16 (all 1 taken)")
}

func TestPickFreeNilRand(t *testing.T) {
	v4, _, err := PickFree(v4Range(), nil, nil)
	require.NoError(t, err)
	assert.True(t, v4Range().Fits(v4, netip.Prefix{}), v4)
}

// TestTakenIntervalsBruteForce checks the interval arithmetic against a
// direct overlap test of every candidate, for many random ranges and
// random (overlapping, out-of-range, mixed-length) leases.
func TestTakenIntervalsBruteForce(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	randV4 := func(net netip.Prefix) netip.Prefix {
		b := net.Addr().As4()
		u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		u += rnd.Uint32N(1 << (32 - net.Bits()))
		u -= 1 << 5 // sometimes just below the network
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}), 18+rnd.IntN(15)).Masked()
	}
	randV6 := func() netip.Prefix {
		b := addr("fd00::").As16()
		b[7] = byte(rnd.IntN(40))
		b[8] = byte(rnd.IntN(256))
		return netip.PrefixFrom(netip.AddrFrom16(b), 52+rnd.IntN(20)).Masked()
	}
	for iter := range 300 {
		subnetLen := 22 + rnd.IntN(9) // 22..30 in a /20
		network := pfx("10.50.0.0/20")
		n := 1 << (subnetLen - 20)
		lo, hi := rnd.IntN(n), rnd.IntN(n)
		lo, hi = min(lo, hi), max(lo, hi)
		r := Range{Network: network, SubnetLen: subnetLen}
		first := newSpan(network.Addr(), network.Addr(), subnetLen)
		r.SubnetMin, r.SubnetMax = first.nth(uint64(lo)).Addr(), first.nth(uint64(hi)).Addr()
		if iter%2 == 0 {
			r.IPv6Network, r.IPv6SubnetLen = pfx("fd00::/56"), 64
			r.IPv6SubnetMin = netip.AddrFrom16([16]byte{0: 0xfd, 7: byte(rnd.IntN(8))})
			r.IPv6SubnetMax = netip.AddrFrom16([16]byte{0: 0xfd, 7: byte(8 + rnd.IntN(40))})
		}
		require.NoError(t, r.Validate(), r)
		var taken []Lease
		for range rnd.IntN(12) {
			l := Lease{Subnet: randV4(network)}
			if rnd.IntN(3) == 0 {
				l.IPv6Subnet = randV6()
			}
			taken = append(taken, l)
		}
		var want []uint64
		for i := range r.Len() {
			v4, v6 := r.Nth(i)
			free := true
			for _, l := range taken {
				if l.Subnet.Bits() >= r.SubnetLen && l.Subnet.Overlaps(v4) ||
					v6.IsValid() && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Bits() >= r.IPv6SubnetLen && l.IPv6Subnet.Overlaps(v6) {
					free = false
				}
			}
			if free {
				want = append(want, uint64(i))
			}
		}
		ivs, free := r.takenIntervals(taken)
		require.Equal(t, uint64(len(want)), free, "range %s taken %v", r, taken)
		for k, w := range want {
			require.Equal(t, w, kthFree(ivs, uint64(k)), "range %s taken %v k %d", r, taken, k)
		}
		_, _, err := PickFree(r, taken, rnd)
		if len(want) == 0 {
			require.ErrorIs(t, err, ErrNoFreeSubnet)
		} else {
			require.NoError(t, err)
		}
	}
}

func TestFindByPublicIP(t *testing.T) {
	now := time.Now()
	ls := []Lease{
		{Subnet: pfx("10.50.1.0/24"), Attrs: Attrs{PublicIP: addr("192.0.2.1")}, Expiration: now},
		{Subnet: pfx("10.50.2.0/24"), Attrs: Attrs{PublicIP: addr("192.0.2.2"), PublicIPv6: addr("2001:db8::2")}, Expiration: now},
		{Subnet: pfx("10.50.3.0/24"), Attrs: Attrs{PublicIP: addr("192.0.2.1")}, Expiration: now.Add(time.Hour)},
		{Subnet: pfx("10.50.4.0/24"), Attrs: Attrs{PublicIP: addr("192.0.2.4")}, Expiration: now},
		{Subnet: pfx("10.50.5.0/24"), Attrs: Attrs{PublicIP: addr("192.0.2.4")}, Expiration: now},
	}
	tests := []struct {
		ip   netip.Addr
		want string // subnet, "" when not found
	}{
		{addr("192.0.2.2"), "10.50.2.0/24"},
		{addr("::ffff:192.0.2.2"), "10.50.2.0/24"},
		{addr("192.0.2.1"), "10.50.3.0/24"}, // expires last
		{addr("192.0.2.4"), "10.50.4.0/24"}, // first of equals
		{addr("2001:db8::2"), "10.50.2.0/24"},
		{addr("192.0.2.9"), ""},
		{addr("2001:db8::9"), ""},
		{netip.Addr{}, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.ip), func(t *testing.T) {
			l, ok := FindByPublicIP(ls, tt.ip)
			assert.Equal(t, tt.want != "", ok)
			assert.Equal(t, tt.want, prefixString(l.Subnet))
		})
	}
	_, ok := FindByPublicIP(nil, addr("192.0.2.1"))
	assert.False(t, ok)
}
