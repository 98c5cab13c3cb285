package shell

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/interp"
)

// The native fast path (see [FastPath]): the commands the presets run,
//
//	ip [-4|-6] route add|del|delete|replace PREFIX [nexthop] [via ADDR] [dev NAME] [onlink]
//	ip [-4|-6] addr|address add|del|delete ADDR/LEN dev NAME
//	ip link set [dev] NAME [up|down] [mtu N]
//	ip link del|delete [dev] NAME
//	ip link add NAME type vxlan id N dstport PORT [nolearning]
//	ip [-4|-6] neigh|neighbor|neighbour add|replace|del|delete ADDR [lladdr MAC] dev NAME [nud permanent|noarp|reachable|stale]
//	bridge fdb add|append|replace|del|delete MAC dev NAME self dst ADDR
//	arp -s ADDR MAC dev NAME
//
// are done in the daemon through rtnetlink, with the same messages
// iproute2 and net-tools send. A form not listed, a name that does not
// resolve to the system's binary, and every failure (the object exists or
// is missing, a device is absent, the kernel refuses) run the real binary
// instead: a refused request changes nothing, so the real tool fails the
// same way and says so in its own words, with its exit status. The trace
// shows the commands as any other.

// fastDirs are where the fast path's tools must live.
var fastDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// fastOp is one recognised command, done through h.
type fastOp func(h *netlink.Handle) error

// errNotFast marks a command the fast path does not do itself.
var errNotFast = errors.New("not a fast-path form")

// netlinkHandle is the Shell's rtnetlink socket, opened at first use in
// the daemon's network namespace, one request at a time.
type netlinkHandle struct {
	once sync.Once
	mu   sync.Mutex
	h    *netlink.Handle
	err  error
}

func (n *netlinkHandle) do(op fastOp) error {
	n.once.Do(func() { n.h, n.err = netlink.NewHandle(unix.NETLINK_ROUTE) })
	if n.err != nil {
		return n.err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return op(n.h)
}

// fastPath is the fast-path middleware.
func (st *runState) fastPath(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.fastPath || st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		op, ok := fastOpOf(args)
		if !ok {
			return next(ctx, args)
		}
		if !st.s.resolve.systemTool(interp.HandlerCtx(ctx), args[0], fastDirs) {
			return next(ctx, args)
		}
		if err := st.s.netlink.do(op); err != nil {
			st.s.log.Debug("fast path refused; running the real binary", "hook", st.hook.String(),
				"subnet", st.subnet, "command", args[0], "error", err)
			return next(ctx, args) // the real tool fails the same way, in its words
		}
		st.s.log.Debug("done through netlink", "hook", st.hook.String(), "subnet", st.subnet, "command", args[0])
		return nil
	}
}

// fastOpOf returns the netlink operation argv stands for, or ok=false
// when argv is not one of the fast path's forms (see the list above).
func fastOpOf(argv []string) (fastOp, bool) {
	if len(argv) < 2 || strings.Contains(argv[0], "/") {
		return nil, false
	}
	var op fastOp
	var err error
	switch argv[0] {
	case "ip":
		op, err = ipOp(argv[1:])
	case "bridge":
		op, err = bridgeOp(argv[1:])
	case "arp":
		op, err = arpOp(argv[1:])
	default:
		return nil, false
	}
	return op, err == nil
}

// words walks a command's arguments.
type words struct{ a []string }

// next returns the next word, "" after the last (no form has an empty
// word where a word is due, so "" never matches).
func (w *words) next() string {
	if len(w.a) == 0 {
		return ""
	}
	s := w.a[0]
	w.a = w.a[1:]
	return s
}

func (w *words) done() bool { return len(w.a) == 0 }

// verb takes the next word when it is one of verbs.
func (w *words) verb(verbs ...string) (string, error) {
	v := w.next()
	if !slices.Contains(verbs, v) {
		return "", errNotFast
	}
	return v, nil
}

func ipOp(args []string) (fastOp, error) {
	w := &words{args}
	fam := 0
	obj := w.next()
	switch obj {
	case "-4":
		fam = unix.AF_INET
		obj = w.next()
	case "-6":
		fam = unix.AF_INET6
		obj = w.next()
	}
	switch obj {
	case "route":
		return routeOp(w, fam)
	case "addr", "address":
		return addrOp(w, fam)
	case "link":
		if fam != 0 {
			return nil, errNotFast
		}
		return linkOp(w)
	case "neigh", "neighbor", "neighbour":
		return neighOp(w, fam)
	}
	return nil, errNotFast
}

// prefix parses a masked PREFIX of family fam (0: any).
func prefix(s string, fam int) (*net.IPNet, int, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return nil, 0, errNotFast
	}
	f := famOf(p.Addr())
	if fam != 0 && f != fam {
		return nil, 0, errNotFast
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, f, nil
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addr parses an address of family fam.
func addr(s string, fam int) (net.IP, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() || famOf(a) != fam {
		return nil, errNotFast
	}
	return a.AsSlice(), nil
}

// mac parses a unicast-or-not 48-bit MAC as iproute2 prints them.
func mac(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 || strings.ContainsAny(s, "-.") {
		return nil, errNotFast
	}
	return m, nil
}

// devName checks a device name as the kernel would take it.
func devName(s string) (string, error) {
	if s == "" || len(s) >= unix.IFNAMSIZ || strings.ContainsAny(s, "/ \t\n:") {
		return "", errNotFast
	}
	return s, nil
}

// onLink is the fast op that looks dev up and runs fn on it; an absent
// device ends the fast attempt as linkIndex's does.
func onLink(dev string, fn func(*netlink.Handle, netlink.Link) error) fastOp {
	return func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		return fn(h, l)
	}
}

// linkIndex looks a device up; an absent one ends the fast attempt (the
// real tool says `Cannot find device "NAME"`).
func linkIndex(h *netlink.Handle, name string) (int, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

func routeOp(w *words, fam int) (fastOp, error) {
	verb, err := w.verb("add", "replace", "del", "delete")
	if err != nil {
		return nil, err
	}
	ps := w.next()
	dst, fam, err := prefix(ps, fam)
	if err != nil {
		return nil, err
	}
	var gw net.IP
	var dev string
	var onlink, nexthop bool
	for first := true; !w.done(); first = false {
		t := w.next()
		switch {
		case t == "nexthop" && first && verb != "del" && verb != "delete":
			nexthop = true
		case t == "via" && gw == nil:
			s := w.next()
			if gw, err = addr(s, fam); err != nil {
				return nil, err
			}
		case t == "dev" && dev == "":
			s := w.next()
			if dev, err = devName(s); err != nil {
				return nil, err
			}
		case t == "onlink" && !onlink:
			onlink = true
		default:
			return nil, errNotFast
		}
	}
	if nexthop && gw == nil && dev == "" {
		return nil, errNotFast
	}
	return func(h *netlink.Handle) error {
		r := &netlink.Route{Dst: dst, Family: fam}
		idx := 0
		if dev != "" {
			if idx, err = linkIndex(h, dev); err != nil {
				return err
			}
		}
		flags := 0
		if onlink {
			flags = unix.RTNH_F_ONLINK
		}
		if nexthop {
			r.MultiPath = []*netlink.NexthopInfo{{LinkIndex: idx, Gw: gw, Flags: flags}}
		} else {
			r.LinkIndex, r.Gw, r.Flags = idx, gw, flags
		}
		switch {
		case verb == "del" || verb == "delete":
			// iproute2's delete: any scope, protocol and type.
			r.Scope = netlink.Scope(unix.RT_SCOPE_NOWHERE)
			return h.RouteDel(r)
		case fam == unix.AF_INET && gw == nil:
			r.Scope = netlink.SCOPE_LINK // iproute2's scope for a route without a gateway
		}
		if verb == "replace" {
			return h.RouteReplace(r)
		}
		return h.RouteAdd(r)
	}, nil
}

func addrOp(w *words, fam int) (fastOp, error) {
	verb, err := w.verb("add", "del", "delete")
	if err != nil {
		return nil, err
	}
	s := w.next()
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() || fam != 0 && famOf(p.Addr()) != fam {
		return nil, errNotFast
	}
	if t := w.next(); t != "dev" {
		return nil, errNotFast
	}
	ds := w.next()
	dev, err := devName(ds)
	if err != nil || !w.done() {
		return nil, errNotFast
	}
	return onLink(dev, func(h *netlink.Handle, l netlink.Link) error {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is4() {
			a.Broadcast = net.IPv4zero // iproute2 sets none unless told (brd)
		}
		if verb == "add" {
			return h.AddrAdd(l, a)
		}
		return h.AddrDel(l, a)
	}), nil
}

func linkOp(w *words) (fastOp, error) {
	verb := w.next()
	switch verb {
	case "set":
		return linkSetOp(w)
	case "del", "delete":
		s := w.next()
		if s == "dev" {
			s = w.next()
		}
		dev, err := devName(s)
		if err != nil || !w.done() {
			return nil, errNotFast
		}
		return onLink(dev, func(h *netlink.Handle, l netlink.Link) error { return h.LinkDel(l) }), nil
	case "add":
		return vxlanAddOp(w)
	}
	return nil, errNotFast
}

func linkSetOp(w *words) (fastOp, error) {
	var dev string
	var up, down bool
	mtu := 0
	for !w.done() {
		t := w.next()
		switch {
		case t == "dev" && dev == "":
			s := w.next()
			d, err := devName(s)
			if err != nil {
				return nil, err
			}
			dev = d
		case t == "up" && !up && !down:
			up = true
		case t == "down" && !up && !down:
			down = true
		case t == "mtu" && mtu == 0:
			s := w.next()
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || !digitsOnly(s) {
				return nil, errNotFast
			}
			mtu = n
		case dev == "" && !isLinkKeyword(t):
			d, err := devName(t)
			if err != nil {
				return nil, err
			}
			dev = d
		default:
			return nil, errNotFast
		}
	}
	if dev == "" || !up && !down && mtu == 0 {
		return nil, errNotFast
	}
	return onLink(dev, func(h *netlink.Handle, l netlink.Link) error {
		if mtu != 0 {
			if err := h.LinkSetMTU(l, mtu); err != nil {
				return err
			}
		}
		switch {
		case up:
			return h.LinkSetUp(l)
		case down:
			return h.LinkSetDown(l)
		}
		return nil
	}), nil
}

// isLinkKeyword reports whether t is one of ip link set's keywords, which
// iproute2 would not take as a device name.
func isLinkKeyword(t string) bool {
	switch t {
	case "dev", "up", "down", "mtu", "name", "address", "arp", "multicast", "txqueuelen", "txqlen",
		"master", "nomaster", "netns", "alias", "group", "type", "vf", "promisc", "allmulticast", "dynamic",
		"state", "mode", "xdp", "link-netns", "link-netnsid", "protodown", "carrier", "broadcast", "brd":
		return true
	}
	return false
}

// vxlanAddOp is `ip link add NAME type vxlan id N dstport PORT
// [nolearning]`: the vxlan recipe's device. Without dstport iproute2
// warns and the kernel picks its default, so that form runs the real ip.
func vxlanAddOp(w *words) (fastOp, error) {
	s := w.next()
	if s == "name" || s == "dev" {
		s = w.next()
	}
	name, err := devName(s)
	if err != nil {
		return nil, err
	}
	if t := w.next(); t != "type" {
		return nil, errNotFast
	}
	if t := w.next(); t != "vxlan" {
		return nil, errNotFast
	}
	id, port, learning := -1, -1, true
	for !w.done() {
		t := w.next()
		switch {
		case (t == "id" || t == "vni") && id < 0:
			v := w.next()
			n, err := strconv.Atoi(v)
			if err != nil || !digitsOnly(v) || n >= 1<<24 {
				return nil, errNotFast
			}
			id = n
		case t == "dstport" && port < 0:
			v := w.next()
			n, err := strconv.Atoi(v)
			if err != nil || !digitsOnly(v) || n > 65535 {
				return nil, errNotFast
			}
			port = n
		case t == "nolearning" && learning:
			learning = false
		default:
			return nil, errNotFast
		}
	}
	if id < 0 || port < 0 {
		return nil, errNotFast
	}
	return func(h *netlink.Handle) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		return h.LinkAdd(&netlink.Vxlan{LinkAttrs: attrs, VxlanId: id, Port: port, Learning: learning})
	}, nil
}

// nudStates are ip neigh's nud names.
var nudStates = map[string]int{
	"permanent": netlink.NUD_PERMANENT, "noarp": netlink.NUD_NOARP,
	"reachable": netlink.NUD_REACHABLE, "stale": netlink.NUD_STALE,
}

func neighOp(w *words, fam int) (fastOp, error) {
	verb, err := w.verb("add", "replace", "del", "delete")
	if err != nil {
		return nil, err
	}
	s := w.next()
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() || fam != 0 && famOf(a) != fam {
		return nil, errNotFast
	}
	var ll net.HardwareAddr
	var dev string
	state := -1
	for !w.done() {
		t := w.next()
		switch {
		case t == "lladdr" && ll == nil:
			v := w.next()
			if ll, err = mac(v); err != nil {
				return nil, err
			}
		case t == "dev" && dev == "":
			v := w.next()
			if dev, err = devName(v); err != nil {
				return nil, err
			}
		case t == "nud" && state < 0:
			v := w.next()
			st, ok := nudStates[v]
			if !ok {
				return nil, errNotFast
			}
			state = st
		default:
			return nil, errNotFast
		}
	}
	del := verb == "del" || verb == "delete"
	if dev == "" || !del && ll == nil || del && (ll != nil || state >= 0) {
		return nil, errNotFast
	}
	if state < 0 {
		state = netlink.NUD_PERMANENT // iproute2's default
	}
	return func(h *netlink.Handle) error {
		idx, err := linkIndex(h, dev)
		if err != nil {
			return err
		}
		n := &netlink.Neigh{LinkIndex: idx, Family: famOf(a), IP: a.AsSlice(), HardwareAddr: ll, State: state}
		switch verb {
		case "add":
			return h.NeighAdd(n)
		case "replace":
			return h.NeighSet(n)
		}
		n.State = netlink.NUD_PERMANENT // what iproute2 sends with a delete
		return h.NeighDel(n)
	}, nil
}

func bridgeOp(args []string) (fastOp, error) {
	w := &words{args}
	if t := w.next(); t != "fdb" {
		return nil, errNotFast
	}
	verb, err := w.verb("add", "append", "replace", "del", "delete")
	if err != nil {
		return nil, err
	}
	s := w.next()
	ll, err := mac(s)
	if err != nil {
		return nil, err
	}
	var dev string
	var dst net.IP
	self := false
	for !w.done() {
		t := w.next()
		switch {
		case t == "dev" && dev == "":
			v := w.next()
			if dev, err = devName(v); err != nil {
				return nil, err
			}
		case t == "self" && !self:
			self = true
		case t == "dst" && dst == nil:
			v := w.next()
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" || a.Is4In6() {
				return nil, errNotFast
			}
			dst = a.AsSlice()
		default:
			return nil, errNotFast
		}
	}
	// Without dst the library still sends an empty NDA_DST, which the
	// kernel refuses: that form is the real bridge's.
	if dev == "" || !self || dst == nil {
		return nil, errNotFast
	}
	return func(h *netlink.Handle) error {
		idx, err := linkIndex(h, dev)
		if err != nil {
			return err
		}
		// iproute2's bridge fdb: NUD_NOARP, and permanent unless told.
		n := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, HardwareAddr: ll, IP: dst,
			State: netlink.NUD_NOARP | netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF}
		switch verb {
		case "add":
			return h.NeighAdd(n)
		case "append":
			return h.NeighAppend(n)
		case "replace":
			return h.NeighSet(n)
		}
		return h.NeighDel(n)
	}, nil
}

// arpOp is net-tools' `arp -s ADDR MAC dev NAME`: a permanent neighbour,
// replacing one that exists (SIOCSARP).
func arpOp(args []string) (fastOp, error) {
	if len(args) != 5 || args[0] != "-s" || args[3] != "dev" {
		return nil, errNotFast
	}
	ip, err := addr(args[1], unix.AF_INET)
	if err != nil {
		return nil, err
	}
	ll, err := mac(args[2])
	if err != nil {
		return nil, err
	}
	dev, err := devName(args[4])
	if err != nil {
		return nil, err
	}
	return func(h *netlink.Handle) error {
		idx, err := linkIndex(h, dev)
		if err != nil {
			return err
		}
		return h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, IP: ip, HardwareAddr: ll,
			State: netlink.NUD_PERMANENT})
	}, nil
}
