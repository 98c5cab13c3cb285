package leases

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// MaxCandidates caps Range.Len: a range holding more subnets than this
// (an IPv6 range, or SubnetLen 32 in a huge Network) only offers its first
// MaxCandidates subnets. It keeps indexes within an int on every platform.
const MaxCandidates = 1 << 30

// ErrInvalidRange is wrapped by Range.Validate's errors.
var ErrInvalidRange = errors.New("invalid subnet range")

// DualStack reports whether r also allocates IPv6 subnets.
func (r Range) DualStack() bool { return r.IPv6Network.IsValid() }

// String describes r for error messages, such as
// "10.50.1.0/24..10.50.255.0/24 in 10.50.0.0/16".
func (r Range) String() string {
	s := fmt.Sprintf("%s/%d..%s/%d in %s", r.SubnetMin, r.SubnetLen, r.SubnetMax, r.SubnetLen, r.Network)
	if r.DualStack() {
		s += fmt.Sprintf(", %s/%d..%s/%d in %s", r.IPv6SubnetMin, r.IPv6SubnetLen,
			r.IPv6SubnetMax, r.IPv6SubnetLen, r.IPv6Network)
	}
	return s
}

// Validate checks that r describes at least one subnet: Network is a masked
// IPv4 prefix, SubnetLen lies between its length and 32, and SubnetMin and
// SubnetMax are inside Network, aligned on SubnetLen and in order. The IPv6
// fields are checked the same way when IPv6Network is valid.
func (r Range) Validate() error {
	if err := validateFamily("", false, r.Network, r.SubnetLen, r.SubnetMin, r.SubnetMax); err != nil {
		return err
	}
	if r.DualStack() {
		return validateFamily("IPv6", true, r.IPv6Network, r.IPv6SubnetLen, r.IPv6SubnetMin, r.IPv6SubnetMax)
	}
	return nil
}

func validateFamily(pfx string, v6 bool, network netip.Prefix, subnetLen int, lo, hi netip.Addr) error {
	family, bitLen := "IPv4", 32
	if v6 {
		family, bitLen = "IPv6", 128
	}
	switch {
	case !network.IsValid():
		return fmt.Errorf("%w: %sNetwork is not set", ErrInvalidRange, pfx)
	case network.Addr().Is6() != v6 || network.Addr().Is4In6():
		return fmt.Errorf("%w: %sNetwork %s is not %s", ErrInvalidRange, pfx, network, family)
	case network.Masked() != network:
		return fmt.Errorf("%w: %sNetwork %s has host bits set", ErrInvalidRange, pfx, network)
	case subnetLen < network.Bits() || subnetLen > bitLen:
		return fmt.Errorf("%w: %sSubnetLen %d is not between %d and %d", ErrInvalidRange, pfx, subnetLen, network.Bits(), bitLen)
	}
	for _, f := range []struct {
		name string
		a    netip.Addr
	}{{"SubnetMin", lo}, {"SubnetMax", hi}} {
		switch {
		case !f.a.IsValid():
			return fmt.Errorf("%w: %s%s is not set", ErrInvalidRange, pfx, f.name)
		case !network.Contains(f.a):
			return fmt.Errorf("%w: %s%s %s is not inside %s", ErrInvalidRange, pfx, f.name, f.a, network)
		case netip.PrefixFrom(f.a, subnetLen).Masked().Addr() != f.a:
			return fmt.Errorf("%w: %s%s %s is not on a /%d boundary", ErrInvalidRange, pfx, f.name, f.a, subnetLen)
		}
	}
	if hi.Less(lo) {
		return fmt.Errorf("%w: %sSubnetMin %s is above %sSubnetMax %s", ErrInvalidRange, pfx, lo, pfx, hi)
	}
	return nil
}

// Len returns the number of candidate subnets of r: those from SubnetMin to
// SubnetMax, and, for dual stack, no more than there are IPv6 subnets from
// IPv6SubnetMin to IPv6SubnetMax (the i-th IPv4 subnet pairs with the i-th
// IPv6 subnet). It is 0 for an invalid range and at most MaxCandidates.
func (r Range) Len() int {
	if r.Validate() != nil {
		return 0
	}
	n := r.span4().n
	if r.DualStack() {
		n = min(n, r.span6().n)
	}
	return int(n)
}

// Nth returns the i-th candidate: SubnetMin plus i subnets, and, for dual
// stack, IPv6SubnetMin plus i IPv6 subnets (v6 is zero otherwise). Both are
// zero when i is outside [0, r.Len()).
func (r Range) Nth(i int) (v4, v6 netip.Prefix) {
	if i < 0 || i >= r.Len() {
		return netip.Prefix{}, netip.Prefix{}
	}
	v4 = r.span4().nth(uint64(i))
	if r.DualStack() {
		v6 = r.span6().nth(uint64(i))
	}
	return v4, v6
}

// Fits reports whether a lease with subnets v4 and v6 belongs to r, so that
// a node may keep it: v4 is one of r's candidates and, for dual stack, v6 is
// an IPv6SubnetLen subnet between IPv6SubnetMin and IPv6SubnetMax (flannel
// does not pair the two strictly); without dual stack v6 must be zero.
func (r Range) Fits(v4, v6 netip.Prefix) bool {
	if r.Validate() != nil || !v4.IsValid() {
		return false
	}
	if i, j, ok := r.span4().indexes(v4); !ok || i != j || v4.Bits() != r.SubnetLen || v4.Masked() != v4 || uint64(i) >= uint64(r.Len()) {
		return false
	}
	if !r.DualStack() {
		return !v6.IsValid()
	}
	if !v6.IsValid() || v6.Bits() != r.IPv6SubnetLen || v6.Masked() != v6 {
		return false
	}
	a := v6.Addr()
	return a.Is6() && !a.Is4In6() && !a.Less(r.IPv6SubnetMin) && !r.IPv6SubnetMax.Less(a)
}

// PickFree returns a free candidate of r chosen uniformly at random. A
// candidate is taken when a lease's Subnet of SubnetLen bits or more
// overlaps its IPv4 subnet or, for dual stack, a lease's IPv6Subnet of
// IPv6SubnetLen bits or more overlaps its IPv6 subnet; a wider lease
// takes nothing. Rather than
// probing at random and scanning when unlucky, PickFree computes the taken
// indexes as merged intervals and draws among the free ones, so its cost
// depends on len(taken) only and it always finds the last free candidate.
// A nil rnd uses math/rand/v2's global source. When every candidate is
// taken the error wraps ErrNoFreeSubnet and names the range.
func PickFree(r Range, taken []Lease, rnd *rand.Rand) (v4, v6 netip.Prefix, err error) {
	if err := r.Validate(); err != nil {
		return netip.Prefix{}, netip.Prefix{}, err
	}
	ivs, free := r.takenIntervals(taken)
	if free == 0 {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("%w in %s (all %d taken)", ErrNoFreeSubnet, r, r.Len())
	}
	var k uint64
	if rnd != nil {
		k = rnd.Uint64N(free)
	} else {
		k = rand.Uint64N(free)
	}
	k = kthFree(ivs, k)
	v4, v6 = r.Nth(int(k))
	return v4, v6, nil
}

// FindByPublicIP returns the lease whose Attrs.PublicIP is ip (for an IPv6
// ip: whose Attrs.PublicIPv6 is ip). When several match, the one expiring
// last wins; the first of equals otherwise. Invalid leases never match.
func FindByPublicIP(ls []Lease, ip netip.Addr) (Lease, bool) {
	if !ip.IsValid() {
		return Lease{}, false
	}
	ip = ip.Unmap()
	var best Lease
	found := false
	for _, l := range ls {
		if l.Invalid != "" {
			continue
		}
		have := l.Attrs.PublicIP
		if ip.Is6() {
			have = l.Attrs.PublicIPv6
		}
		if !have.IsValid() || have.Unmap() != ip {
			continue
		}
		if !found || l.Expiration.After(best.Expiration) {
			best, found = l, true
		}
	}
	return best, found
}

type interval struct{ lo, hi uint64 }

// takenIntervals returns the candidate indexes of r (validated) that taken
// overlap, as sorted disjoint intervals, and how many candidates are free.
func (r Range) takenIntervals(taken []Lease) (ivs []interval, free uint64) {
	n := uint64(r.Len())
	s4, s6 := r.span4(), r.span6()
	ivs = make([]interval, 0, len(taken))
	add := func(i, j uint64, ok bool) {
		if ok && i < n {
			ivs = append(ivs, interval{i, min(j, n-1)})
		}
	}
	for _, l := range taken {
		// A lease wider than SubnetLen takes nothing: one for 0.0.0.0/0
		// or the whole Network (admission refuses it; no node can hold
		// it) must not block allocation. A narrower one takes its block.
		if l.Subnet.Bits() >= r.SubnetLen {
			add(s4.indexes(l.Subnet))
		}
		if r.DualStack() && l.IPv6Subnet.Bits() >= r.IPv6SubnetLen {
			add(s6.indexes(l.IPv6Subnet))
		}
	}
	ivs = merge(ivs)
	free = n
	for _, iv := range ivs {
		free -= iv.hi - iv.lo + 1
	}
	return ivs, free
}

// kthFree returns the index of the k-th (from 0) candidate outside the
// sorted disjoint intervals ivs.
func kthFree(ivs []interval, k uint64) uint64 {
	for _, iv := range ivs {
		if iv.lo > k {
			break
		}
		k += iv.hi - iv.lo + 1
	}
	return k
}

// merge sorts ivs and joins overlapping or adjacent intervals.
func merge(ivs []interval) []interval {
	if len(ivs) == 0 {
		return ivs
	}
	slices.SortFunc(ivs, func(a, b interval) int { return cmp.Compare(a.lo, b.lo) })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if iv.lo <= last.hi+1 {
			last.hi = max(last.hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// span is one address family's candidates: n subnets of 2^host addresses
// each, the first at min.
type span struct {
	min    ipmath.U128
	host   int // host bits of a subnet
	bitLen int // 32 or 128
	n      uint64
}

func (r Range) span4() span { return newSpan(r.SubnetMin, r.SubnetMax, r.SubnetLen) }

func (r Range) span6() span {
	if !r.DualStack() {
		return span{}
	}
	return newSpan(r.IPv6SubnetMin, r.IPv6SubnetMax, r.IPv6SubnetLen)
}

// newSpan expects a validated, aligned lo <= hi.
func newSpan(lo, hi netip.Addr, subnetLen int) span {
	s := span{min: ipmath.FromAddr(lo), bitLen: lo.BitLen()}
	s.host = s.bitLen - subnetLen
	d := ipmath.FromAddr(hi).Sub(s.min).Shr(s.host)
	if d.Hi != 0 || d.Lo >= MaxCandidates {
		s.n = MaxCandidates
	} else {
		s.n = d.Lo + 1
	}
	return s
}

func (s span) nth(i uint64) netip.Prefix {
	return netip.PrefixFrom(s.min.Add(ipmath.U128{Lo: i}.Shl(s.host)).Addr(s.bitLen), s.bitLen-s.host)
}

// indexes returns the first and last candidate index p overlaps (the last
// may be beyond s.n; the caller clips it), or ok=false when it overlaps none.
func (s span) indexes(p netip.Prefix) (i, j uint64, ok bool) {
	if s.n == 0 || !p.IsValid() || p.Addr().BitLen() != s.bitLen || p.Addr().Is4In6() {
		return 0, 0, false
	}
	p = p.Masked()
	first := ipmath.FromAddr(p.Addr())
	last := first.Or(ipmath.Ones(s.bitLen - p.Bits()))
	if last.Less(s.min) {
		return 0, 0, false
	}
	if !first.Less(s.min) {
		d := first.Sub(s.min).Shr(s.host)
		if d.Hi != 0 || d.Lo >= s.n {
			return 0, 0, false
		}
		i = d.Lo
	}
	d := last.Sub(s.min).Shr(s.host)
	if d.Hi != 0 {
		j = ^uint64(0)
	} else {
		j = d.Lo
	}
	return i, j, true
}
