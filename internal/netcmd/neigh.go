package netcmd

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// neighKeywords is ipneigh_modify's chain (6.1); lladdr, nud and dev are
// read.
var neighKeywords = []keyword{
	{"lladdr", true}, {"nud", false}, {"proxy", true}, {"help", true}, {"router", false},
	{"use", false}, {"managed", false}, {"extern_learn", true}, {"dev", false}, {"protocol", true},
}

// nudStates are the nud names read (nud_state_a2n knows more).
var nudStates = map[string]int{
	"permanent": netlink.NUD_PERMANENT, "noarp": netlink.NUD_NOARP,
	"reachable": netlink.NUD_REACHABLE, "stale": netlink.NUD_STALE,
}

// neigh is `ip [-4|-6] neigh add|replace ADDR lladdr MAC dev NAME [nud
// STATE]` and `ip neigh delete ADDR dev NAME`; and net-tools' `arp -s ADDR
// MAC dev NAME` (arp: true), which replaces.
type neigh struct {
	verb  Verb
	ip    netip.Addr
	ll    string
	dev   string
	state int
	arp   bool
}

func parseNeigh(w *words, fam, verbAt int) (*Cmd, error) {
	verb, err := ipVerb(w)
	if err != nil {
		return nil, err
	}
	n := neigh{verb: verb, state: -1}
	for !w.done() {
		t := w.next()
		switch lookup(neighKeywords, t) {
		case "lladdr":
			var ok bool
			if n.ll != "" {
				return nil, ErrNotRead
			}
			if n.ll, ok = mac(w.next()); !ok {
				return nil, ErrNotRead
			}
		case "dev":
			if err := w.devOnce(&n.dev); err != nil {
				return nil, err
			}
		case "nud":
			st, ok := nudStates[w.next()]
			if !ok || n.state >= 0 {
				return nil, ErrNotRead
			}
			n.state = st
		case "":
			if t == "to" {
				t = w.next()
			}
			a, ok := addr(t, fam)
			if !ok || n.ip.IsValid() {
				return nil, ErrNotRead
			}
			n.ip = a
		default:
			return nil, ErrNotRead
		}
	}
	if !n.ip.IsValid() || n.dev == "" || verb != Del && n.ll == "" || verb == Del && (n.ll != "" || n.state >= 0) {
		return nil, ErrNotRead
	}
	if n.state < 0 {
		n.state = netlink.NUD_PERMANENT // iproute2's default
	}
	return &Cmd{Verb: verb, Objects: []Object{NeighObject(n.ip, n.dev)}, Fast: true, verbAt: verbAt, op: n.apply}, nil
}

// parseArp reads `arp -s ADDR MAC dev NAME`.
func parseArp(argv []string) (*Cmd, error) {
	if len(argv) != 6 || argv[1] != "-s" || argv[4] != "dev" {
		return nil, ErrNotRead
	}
	ip, ok := addr(argv[2], 4)
	if !ok {
		return nil, ErrNotRead
	}
	ll, ok := mac(argv[3])
	if !ok {
		return nil, ErrNotRead
	}
	dev, ok := devName(argv[5])
	if !ok {
		return nil, ErrNotRead
	}
	n := neigh{verb: Replace, ip: ip, ll: ll, dev: dev, state: netlink.NUD_PERMANENT, arp: true}
	return &Cmd{Verb: Replace, Objects: []Object{NeighObject(ip, dev)}, Fast: true, verbAt: -1, op: n.apply}, nil
}

// errNotEther is the fast path's refusal of arp -s on a device whose
// hardware type is not Ethernet: the kernel's SIOCSARP refuses it
// (EINVAL), and the real arp says so.
var errNotEther = &net.AddrError{Err: "arp -s takes an Ethernet device only"}

func (n neigh) apply(h *netlink.Handle, d devices) error {
	idx, err := d.index(n.dev)
	if err != nil {
		return err
	}
	if n.arp {
		if t, err := d.hardwareType(n.dev); err != nil || t != unix.ARPHRD_ETHER {
			return errNotEther
		}
	}
	fam := unix.AF_INET
	if n.ip.Is6() {
		fam = unix.AF_INET6
	}
	var ll net.HardwareAddr
	if n.ll != "" {
		if ll, err = net.ParseMAC(n.ll); err != nil {
			return err
		}
	}
	nn := &netlink.Neigh{LinkIndex: idx, Family: fam, IP: n.ip.AsSlice(), HardwareAddr: ll, State: n.state}
	switch n.verb {
	case Add:
		return h.NeighAdd(nn)
	case Replace:
		return h.NeighSet(nn)
	}
	nn.State = netlink.NUD_PERMANENT // what iproute2 sends with a delete
	return h.NeighDel(nn)
}
