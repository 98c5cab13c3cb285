package netcmd

import (
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// addrKeywords is ipaddr_modify's chain (6.1); dev and local are read.
var addrKeywords = []keyword{
	{"peer", false}, {"remote", false}, {"broadcast", true}, {"brd", false}, {"anycast", false},
	{"scope", false}, {"dev", false}, {"label", false}, {"metric", true}, {"priority", true},
	{"preference", true}, {"valid_lft", true}, {"preferred_lft", true}, {"local", false},
	{"help", true},
}

// addrCmd is `ip [-4|-6] addr add|replace|delete [local] ADDR[/LEN] dev
// NAME`, the words in any order.
type addrCmd struct {
	verb Verb
	p    netip.Prefix
	dev  string
}

func parseAddr(w *words, fam, verbAt int) (*Cmd, error) {
	verb, err := ipVerb(w)
	if err != nil {
		return nil, err
	}
	a := addrCmd{verb: verb}
	for !w.done() {
		t := w.next()
		switch lookup(addrKeywords, t) {
		case "dev":
			if err := w.devOnce(&a.dev); err != nil {
				return nil, err
			}
		case "local", "":
			if t == "local" {
				t = w.next()
			}
			// A delete of an IPv4 address without a length deletes it
			// with whatever length it has (iproute2 sends no
			// IFA_ADDRESS): not read, the real ip decides.
			if verb == Del && !strings.Contains(t, "/") {
				return nil, ErrNotRead
			}
			p, ok := prefix(t, fam)
			if !ok || a.p.IsValid() {
				return nil, ErrNotRead
			}
			a.p = p
		default:
			return nil, ErrNotRead
		}
	}
	if !a.p.IsValid() || a.dev == "" {
		return nil, ErrNotRead
	}
	return &Cmd{Verb: verb, Objects: []Object{AddrObject(a.p, a.dev)}, Fast: true, verbAt: verbAt, op: a.apply}, nil
}

func (a addrCmd) apply(h *netlink.Handle, _ devices) error {
	l, err := h.LinkByName(a.dev)
	if err != nil {
		return err
	}
	na := &netlink.Addr{IPNet: ipmath.ToIPNet(a.p)}
	if a.p.Addr().Is4() {
		na.Broadcast = net.IPv4zero // iproute2 sets none unless told (brd)
		if a.verb != Del && a.p.Addr().As4()[0] == 127 {
			na.Scope = int(netlink.SCOPE_HOST) // iproute2's default_scope
		}
	}
	switch a.verb {
	case Add:
		return h.AddrAdd(l, na)
	case Replace:
		return h.AddrReplace(l, na)
	}
	return h.AddrDel(l, na)
}
