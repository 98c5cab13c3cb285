// Package pathmtu finds the MTU of the path pod traffic takes to other
// nodes, from the kernel's routes and addresses, for flannel's subnet.env
// (FLANNEL_MTU). It knows no backend: a vxlan device, a WireGuard device,
// a plain underlay or any custom device are found the same way.
//
// The path is made of the routes into the overlay Network that the
// backend's hooks installed (routes to peer subnets, or one route for the
// whole Network) and the devices that hold an overlay address of this
// node (a vxlan or WireGuard device gets the subnet's .0/32 before any
// peer exists). The MTU is the lowest among them: a route's own mtu
// metric where it has one, else its device's. Routes inside this node's
// own subnet lead to its pods (the CNI bridge), and the subnet's gateway
// address (its .1) is the bridge's: both are left out, since the CNI
// plugin sets their MTU from FLANNEL_MTU itself.
package pathmtu

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// Query says which part of the kernel's state is the overlay.
type Query struct {
	// Networks are the overlay's Network and, with dual stack,
	// IPv6Network.
	Networks []netip.Prefix
	// Own are this node's own subnets (IPv4 and IPv6 lease).
	Own []netip.Prefix
}

// Path is the lowest MTU found and what has it.
type Path struct {
	MTU    int
	Device string // the device whose MTU (or whose route's mtu) it is
	// Why names the object that put the device on the path, e.g.
	// "route 10.50.2.0/24" or "address 10.50.1.0/32".
	Why string
}

// String is e.g. "1450 (dev flannel-vxlan, route 10.50.2.0/24)".
func (p Path) String() string {
	return fmt.Sprintf("%d (dev %s, %s)", p.MTU, p.Device, p.Why)
}

// Route is a unicast route as the selection sees it.
type Route struct {
	Dst  netip.Prefix
	MTU  int   // the route's mtu metric; 0 when it has none
	Devs []int // the link index of each nexthop
}

// Addr is an address on a device.
type Addr struct {
	Prefix netip.Prefix
	Dev    int
}

// Link is a device.
type Link struct {
	Name string
	MTU  int
}

// State is the part of the kernel's state the selection reads.
type State struct {
	Routes []Route
	Addrs  []Addr
	Links  map[int]Link
}

// Probe reads the links, routes (every table) and addresses of the
// current network namespace and returns the lowest MTU on the overlay's
// path, or ok false when nothing in the kernel belongs to it yet (a
// host-gw node before its first peer: the caller falls back to the
// underlay's MTU). It takes the routes one at a time, as Select would:
// a node with thousands of peers' routes never holds them all.
func Probe(q Query) (p Path, ok bool, err error) {
	links, err := netlink.LinkList()
	if err != nil {
		return Path{}, false, fmt.Errorf("path mtu: list links: %w", err)
	}
	sel := selector{q: q, links: make(map[int]Link, len(links))}
	for _, l := range links {
		a := l.Attrs()
		sel.links[a.Index] = Link{Name: a.Name, MTU: a.MTU}
	}
	var devs []int // one route's, reused
	for _, fam := range families(q) {
		err := netlink.RouteListFilteredIter(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE,
			func(r netlink.Route) bool {
				if r.Type != unix.RTN_UNICAST || r.Dst == nil {
					return true
				}
				dst, ok := ipmath.FromIPNet(r.Dst)
				if !ok {
					return true
				}
				devs = devs[:0]
				if r.LinkIndex > 0 {
					devs = append(devs, r.LinkIndex)
				}
				for _, nh := range r.MultiPath {
					devs = append(devs, nh.LinkIndex)
				}
				sel.route(Route{Dst: dst, MTU: r.MTU, Devs: devs})
				return true
			})
		if err != nil {
			return Path{}, false, fmt.Errorf("path mtu: list routes: %w", err)
		}
	}
	for _, fam := range families(q) {
		as, err := netlink.AddrList(nil, fam)
		if err != nil {
			return Path{}, false, fmt.Errorf("path mtu: list addresses: %w", err)
		}
		for _, a := range as {
			if p, ok := ipmath.FromIPNet(a.IPNet); ok {
				sel.addr(Addr{Prefix: p, Dev: a.LinkIndex})
			}
		}
	}
	return sel.best, sel.best.MTU > 0, nil
}

func families(q Query) []int {
	var v4, v6 bool
	for _, n := range q.Networks {
		v4 = v4 || n.Addr().Is4()
		v6 = v6 || n.Addr().Is6()
	}
	var fams []int
	if v4 {
		fams = append(fams, netlink.FAMILY_V4)
	}
	if v6 {
		fams = append(fams, netlink.FAMILY_V6)
	}
	return fams
}

// Select picks the lowest MTU on the overlay's path in st (see the
// package doc for which routes and addresses count). Devices it cannot
// find in st.Links are skipped. Among equal MTUs the first route wins,
// then the first address, so the answer is stable.
func Select(q Query, st State) (Path, bool) {
	sel := selector{q: q, links: st.Links}
	for _, r := range st.Routes {
		sel.route(r)
	}
	for _, a := range st.Addrs {
		sel.addr(a)
	}
	return sel.best, sel.best.MTU > 0
}

// selector is Select's state: the routes, then the addresses, are
// offered to it in order.
type selector struct {
	q     Query
	links map[int]Link
	best  Path
}

// lower reports whether mtu beats the best so far.
func (s *selector) lower(mtu int) bool { return mtu > 0 && (s.best.MTU == 0 || mtu < s.best.MTU) }

func (s *selector) route(r Route) {
	if !inOverlay(s.q, r.Dst) {
		return
	}
	for _, idx := range r.Devs {
		l, ok := s.links[idx]
		if !ok {
			continue
		}
		mtu := l.MTU
		if r.MTU > 0 {
			mtu = min(mtu, r.MTU)
		}
		if s.lower(mtu) {
			s.best = Path{MTU: mtu, Device: l.Name, Why: "route " + r.Dst.String()}
		}
	}
}

func (s *selector) addr(a Addr) {
	if !inNetwork(s.q, a.Prefix.Addr()) || isGateway(s.q, a.Prefix.Addr()) {
		return
	}
	if l, ok := s.links[a.Dev]; ok && s.lower(l.MTU) {
		s.best = Path{MTU: l.MTU, Device: l.Name, Why: "address " + a.Prefix.String()}
	}
}

// inOverlay: dst lies inside a Network and not inside an own subnet.
func inOverlay(q Query, dst netip.Prefix) bool {
	for _, o := range q.Own {
		if ipmath.Covers(o, dst) {
			return false
		}
	}
	for _, n := range q.Networks {
		if ipmath.Covers(n, dst) {
			return true
		}
	}
	return false
}

func inNetwork(q Query, a netip.Addr) bool {
	for _, n := range q.Networks {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// isGateway: a is the first host of an own subnet, which the CNI bridge
// holds (flannel's FLANNEL_SUBNET).
func isGateway(q Query, a netip.Addr) bool {
	for _, o := range q.Own {
		if o.IsValid() && o.Masked().Addr().Next() == a {
			return true
		}
	}
	return false
}
