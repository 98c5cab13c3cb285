// Package ipmath is flexhook's one home for address and prefix arithmetic
// (as pkg/ip is in the CNI plugins): a 128-bit unsigned integer that holds
// an IPv4 or IPv6 address, and the few prefix operations the config parser
// and the lease allocator need. Everything else uses net/netip directly.
package ipmath

import (
	"math/bits"
	"net"
	"net/netip"
)

// U128 is an unsigned 128-bit integer. An IPv4 address occupies its low 32
// bits.
type U128 struct{ Hi, Lo uint64 }

// FromAddr returns a as an integer (an IPv4-mapped IPv6 address counts as
// IPv6).
func FromAddr(a netip.Addr) U128 {
	if a.Is4() {
		b := a.As4()
		return U128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u U128
	for i := range 8 {
		u.Hi = u.Hi<<8 | uint64(b[i])
		u.Lo = u.Lo<<8 | uint64(b[8+i])
	}
	return u
}

// Addr returns u as an address of bitLen bits (32 or 128), truncating.
func (u U128) Addr(bitLen int) netip.Addr {
	if bitLen == 32 {
		v := uint32(u.Lo)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(u.Hi >> (8 * i))
		b[15-i] = byte(u.Lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// Ones returns a value with the low n bits set (0 <= n <= 128).
func Ones(n int) U128 { return U128{^uint64(0), ^uint64(0)}.Shr(128 - n) }

// Add returns u+v modulo 2^128.
func (u U128) Add(v U128) U128 {
	lo, c := bits.Add64(u.Lo, v.Lo, 0)
	hi, _ := bits.Add64(u.Hi, v.Hi, c)
	return U128{hi, lo}
}

// Sub returns u-v modulo 2^128.
func (u U128) Sub(v U128) U128 {
	lo, b := bits.Sub64(u.Lo, v.Lo, 0)
	hi, _ := bits.Sub64(u.Hi, v.Hi, b)
	return U128{hi, lo}
}

// Less reports whether u < v.
func (u U128) Less(v U128) bool { return u.Hi < v.Hi || u.Hi == v.Hi && u.Lo < v.Lo }

// Or returns u|v.
func (u U128) Or(v U128) U128 { return U128{u.Hi | v.Hi, u.Lo | v.Lo} }

// AndNot returns u&^v.
func (u U128) AndNot(v U128) U128 { return U128{u.Hi &^ v.Hi, u.Lo &^ v.Lo} }

// Shr returns u>>n.
func (u U128) Shr(n int) U128 {
	switch {
	case n <= 0:
		return u
	case n >= 128:
		return U128{}
	case n >= 64:
		return U128{0, u.Hi >> (n - 64)}
	}
	return U128{u.Hi >> n, u.Lo>>n | u.Hi<<(64-n)}
}

// Shl returns u<<n.
func (u U128) Shl(n int) U128 {
	switch {
	case n <= 0:
		return u
	case n >= 128:
		return U128{}
	case n >= 64:
		return U128{u.Lo << (n - 64), 0}
	}
	return U128{u.Hi<<n | u.Lo>>(64-n), u.Lo << n}
}

// LastAddr returns the last address of p (its broadcast address for IPv4).
func LastAddr(p netip.Prefix) netip.Addr {
	bl := p.Addr().BitLen()
	return FromAddr(p.Masked().Addr()).Or(Ones(bl - p.Bits())).Addr(bl)
}

// NthSubnet returns the address of the i-th subnet of subnetLen bits
// after a (a itself is the 0-th), for a aligned on subnetLen. It wraps
// around the address space; callers keep i within their network.
func NthSubnet(a netip.Addr, subnetLen int, i uint64) netip.Addr {
	bl := a.BitLen()
	return FromAddr(a).Add(U128{0, i}.Shl(bl - subnetLen)).Addr(bl)
}

// LastSubnet returns the address of the last subnet of subnetLen bits in
// network (subnetLen >= network.Bits()).
func LastSubnet(network netip.Prefix, subnetLen int) netip.Addr {
	bl := network.Addr().BitLen()
	return FromAddr(LastAddr(network)).AndNot(Ones(bl - subnetLen)).Addr(bl)
}

// Covers reports whether every address of inner lies in outer (both of one
// family).
func Covers(outer, inner netip.Prefix) bool {
	return outer.IsValid() && inner.IsValid() && inner.Bits() >= outer.Bits() &&
		outer.Masked().Contains(inner.Addr())
}

// FromIPNet returns n as a prefix (an IPv4-mapped address as IPv4, the
// address's host bits kept); ok is false for nil or a malformed n.
func FromIPNet(n *net.IPNet) (p netip.Prefix, ok bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	if ones < 0 || bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// ToIPNet is p as a *net.IPNet (the form netlink takes).
func ToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
