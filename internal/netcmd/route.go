package netcmd

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// routeKeywords is iproute_modify's chain of keywords in its order (6.1),
// as far as a prefix of one could be taken for another; the ones read
// are via, dev/oif, onlink, metric/priority/preference, table and
// nexthop, every other makes the command not read.
var routeKeywords = []keyword{
	{"src", false}, {"as", false}, {"via", false}, {"from", false}, {"tos", false}, {"dsfield", true},
	{"expires", false}, {"metric", true}, {"priority", true}, {"preference", false}, {"scope", false},
	{"mtu", false}, {"hoplimit", false}, {"advmss", false}, {"reordering", true}, {"rtt", false},
	{"rto_min", false}, {"window", true}, {"cwnd", true}, {"initcwnd", true}, {"initrwnd", true},
	{"features", true}, {"quickack", true}, {"congctl", true}, {"rttvar", true}, {"ssthresh", true},
	{"realms", true}, {"onlink", false}, {"nexthop", false}, {"nhid", false}, {"protocol", true},
	{"table", true}, {"vrf", true}, {"dev", false}, {"oif", false}, {"pref", true}, {"encap", false},
	{"ttl-propagate", false}, {"fastopen_no_cookie", true}, {"help", true},
}

// nexthopKeywords is parse_one_nh's chain (via, dev and onlink read).
var nexthopKeywords = []keyword{
	{"via", false}, {"dev", false}, {"weight", false}, {"onlink", false}, {"realms", true},
	{"encap", false}, {"as", false},
}

// route is `ip [-4|-6] route add|replace|delete [to] PREFIX [via ADDR]
// [dev NAME] [onlink] [metric N] [table ID]`, or with `nexthop via ADDR
// dev NAME [onlink]` after the route's own keywords.
type route struct {
	verb    Verb
	dst     netip.Prefix
	gw      netip.Addr
	dev     string
	onlink  bool
	nexthop bool
	metric  uint32
	table   uint32
}

func parseRoute(w *words, fam, verbAt int) (*Cmd, error) {
	verb, err := ipVerb(w)
	if err != nil {
		return nil, err
	}
	r := route{verb: verb}
	var gwWord string
	hasMetric, hasTable := false, false
	for !w.done() && !r.nexthop {
		t := w.next()
		switch lookup(routeKeywords, t) {
		case "via":
			if gwWord != "" {
				return nil, ErrNotRead
			}
			gwWord = w.next()
		case "dev", "oif":
			if err := w.devOnce(&r.dev); err != nil {
				return nil, err
			}
		case "onlink":
			r.onlink = true
		case "metric", "priority", "preference":
			n, ok := number(w.next(), 1<<32-1)
			if !ok || hasMetric {
				return nil, ErrNotRead
			}
			r.metric, hasMetric = uint32(n), true
		case "table":
			id, ok := tableID(w.next())
			if !ok || hasTable {
				return nil, ErrNotRead
			}
			r.table, hasTable = id, true
		case "nexthop":
			if verb == Del {
				return nil, ErrNotRead
			}
			r.nexthop = true
		case "":
			if t == "to" {
				t = w.next()
			}
			p, ok := prefix(t, fam)
			if !ok || r.dst.IsValid() || p.Masked() != p {
				return nil, ErrNotRead
			}
			r.dst = p
			fam = famOf(p.Addr())
		default:
			return nil, ErrNotRead
		}
	}
	if !r.dst.IsValid() {
		return nil, ErrNotRead
	}
	if r.nexthop {
		if gwWord != "" || r.dev != "" || r.onlink {
			return nil, ErrNotRead // a gateway both on the route and in a nexthop
		}
		if err := r.readNexthop(w, &gwWord); err != nil {
			return nil, err
		}
	}
	if gwWord != "" {
		var ok bool
		if r.gw, ok = addr(gwWord, famOf(r.dst.Addr())); !ok {
			return nil, ErrNotRead
		}
	}
	obj := RouteObject(r.dst, r.table, r.metric)
	c := &Cmd{Verb: verb, Objects: []Object{obj}, Fast: true, verbAt: verbAt, op: r.apply}
	return c, nil
}

// readNexthop reads one nexthop: via ADDR, dev NAME, onlink, and nothing
// else (a second nexthop, weight: not read).
func (r *route) readNexthop(w *words, gw *string) error {
	for !w.done() {
		switch lookup(nexthopKeywords, w.next()) {
		case "via":
			if *gw != "" {
				return ErrNotRead
			}
			*gw = w.next()
		case "dev":
			if err := w.devOnce(&r.dev); err != nil {
				return err
			}
		case "onlink":
			r.onlink = true
		default:
			return ErrNotRead
		}
	}
	if *gw == "" && r.dev == "" {
		return ErrNotRead
	}
	return nil
}

// tableID reads a table as rtnl_rttable_a2n does for the names every
// system has and numbers in base 0 (other names come from
// /etc/iproute2/rt_tables: not read).
func tableID(s string) (uint32, bool) {
	switch s {
	case "main":
		return mainTable, true
	case "local":
		return 255, true
	case "default":
		return 253, true
	}
	n, ok := number(s, 1<<32-1)
	if !ok || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

func (r route) apply(h *netlink.Handle, d devices) error {
	fam := unix.AF_INET
	if r.dst.Addr().Is6() {
		fam = unix.AF_INET6
	}
	nr := &netlink.Route{Dst: ipmath.ToIPNet(r.dst), Family: fam, Priority: int(r.metric), Table: int(r.table)}
	idx := 0
	if r.dev != "" {
		var err error
		if idx, err = d.index(r.dev); err != nil {
			return err
		}
	}
	var gw net.IP
	if r.gw.IsValid() {
		gw = r.gw.AsSlice()
	}
	flags := 0
	if r.onlink {
		flags = unix.RTNH_F_ONLINK
	}
	if r.nexthop {
		nr.MultiPath = []*netlink.NexthopInfo{{LinkIndex: idx, Gw: gw, Flags: flags}}
	} else {
		nr.LinkIndex, nr.Gw, nr.Flags = idx, gw, flags
	}
	switch {
	case r.verb == Del:
		// iproute2's delete: any scope, protocol and type.
		nr.Scope = netlink.Scope(unix.RT_SCOPE_NOWHERE)
		return h.RouteDel(nr)
	case fam == unix.AF_INET && gw == nil && !r.nexthop:
		// iproute2's scope for a route with no gateway and no nexthop; a
		// nexthop route stays global, whatever its nexthop holds.
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.verb == Replace {
		return h.RouteReplace(nr)
	}
	return h.RouteAdd(nr)
}
