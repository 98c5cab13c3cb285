package netcmd

import (
	"github.com/vishvananda/netlink"
)

// linkVerbs is do_iplink's verb chain.
var linkVerbs = []keyword{{"add", true}, {"set", true}, {"change", true}, {"replace", true}, {"delete", true}}

// linkKeywords are iplink_parse's keywords (6.1): a positional device
// name that is one of them, or a prefix of one it compares by prefix, is
// taken as that keyword by ip, so it is not read as a name here.
var linkKeywords = []keyword{
	{"up", false}, {"down", false}, {"name", false}, {"index", false}, {"type", true}, {"mtu", false},
	{"xdp", false}, {"xdpgeneric", false}, {"xdpdrv", false}, {"xdpoffload", false}, {"netns", false},
	{"address", true}, {"broadcast", true}, {"brd", false}, {"txqueuelen", true}, {"qlen", false},
	{"txqlen", true}, {"arp", false}, {"multicast", false}, {"allmulticast", false}, {"promisc", false},
	{"trailers", false}, {"carrier", false}, {"vf", false}, {"master", true}, {"vrf", false},
	{"nomaster", true}, {"dynamic", true}, {"alias", true}, {"group", false}, {"mode", false},
	{"state", false}, {"numtxqueues", true}, {"numrxqueues", true}, {"addrgenmode", true},
	{"link-netns", true}, {"link-netnsid", true}, {"protodown", false}, {"protodown_reason", false},
	{"gso_max_size", false}, {"gso_max_segs", false}, {"gro_max_size", false}, {"parentdev", false},
	{"link", true}, {"on", true}, {"off", true}, {"dev", false}, {"help", true},
}

// positionalName reads a device name where ip takes any word that is no
// keyword as the device.
func positionalName(s string) (string, bool) {
	if lookup(linkKeywords, s) != "" {
		return "", false
	}
	return devName(s)
}

// linkCmd is `ip link set [dev] NAME [up|down] [mtu N]`, `ip link delete
// [dev] NAME` and `ip link add [name|dev] NAME type vxlan id N dstport
// PORT [nolearning]`; `ip link add [name|dev] NAME type wireguard` is read
// (its object named) but not fast.
type linkCmd struct {
	verb     Verb
	name     string
	up, down bool
	mtu      int
	vxlan    *netlink.Vxlan
}

func parseLink(w *words) (*Cmd, error) {
	var l linkCmd
	switch lookup(linkVerbs, w.next()) {
	case "set":
		l.verb = Set
		if err := l.readSet(w); err != nil {
			return nil, err
		}
	case "delete":
		l.verb = Del
		s := w.next()
		if s == "dev" {
			s = w.next()
		}
		var ok bool
		if l.name, ok = positionalName(s); !ok || !w.done() {
			return nil, ErrNotRead
		}
	case "add":
		l.verb = Add
		return l.readAdd(w)
	default:
		return nil, ErrNotRead
	}
	return &Cmd{Verb: l.verb, Objects: []Object{LinkObject(l.name)}, Fast: true, verbAt: -1, op: l.apply}, nil
}

func (l *linkCmd) readSet(w *words) error {
	for !w.done() {
		t := w.next()
		switch lookup(linkKeywords, t) {
		case "dev":
			if err := w.devOnce(&l.name); err != nil {
				return err
			}
		case "up", "down":
			if l.up || l.down {
				return ErrNotRead
			}
			l.up, l.down = t == "up", t == "down"
		case "mtu":
			n, ok := number(w.next(), 1<<31-1)
			if !ok || n == 0 || l.mtu != 0 {
				return ErrNotRead
			}
			l.mtu = int(n)
		case "":
			name, ok := devName(t)
			if !ok || l.name != "" {
				return ErrNotRead
			}
			l.name = name
		default:
			return ErrNotRead
		}
	}
	if l.name == "" || !l.up && !l.down && l.mtu == 0 {
		return ErrNotRead
	}
	return nil
}

// readAdd reads what follows `ip link add`.
func (l *linkCmd) readAdd(w *words) (*Cmd, error) {
	s := w.next()
	if s == "name" || s == "dev" {
		s = w.next()
	}
	var ok bool
	if l.name, ok = positionalName(s); !ok {
		return nil, ErrNotRead
	}
	if w.next() != "type" {
		return nil, ErrNotRead
	}
	c := &Cmd{Verb: Add, Objects: []Object{LinkObject(l.name)}, verbAt: -1}
	switch w.next() {
	case "wireguard":
		if !w.done() {
			return nil, ErrNotRead
		}
		return c, nil
	case "vxlan":
	default:
		return nil, ErrNotRead
	}
	id, port, learning := -1, -1, true
	for !w.done() {
		switch t := w.next(); t {
		case "id", "vni":
			n, ok := number(w.next(), 1<<24-1)
			if !ok || id >= 0 {
				return nil, ErrNotRead
			}
			id = int(n)
		case "dstport":
			n, ok := number(w.next(), 65535)
			if !ok || port >= 0 {
				return nil, ErrNotRead
			}
			port = int(n)
		case "nolearning":
			if !learning {
				return nil, ErrNotRead
			}
			learning = false
		default:
			return nil, ErrNotRead
		}
	}
	// Without dstport iproute2 warns and the kernel picks its default:
	// that form is the real ip's.
	if id < 0 || port < 0 {
		return nil, ErrNotRead
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = l.name
	l.vxlan = &netlink.Vxlan{LinkAttrs: attrs, VxlanId: id, Port: port, Learning: learning}
	c.Fast, c.op = true, l.apply
	return c, nil
}

func (l linkCmd) apply(h *netlink.Handle, _ devices) error {
	switch {
	case l.vxlan != nil:
		return h.LinkAdd(l.vxlan)
	case l.verb == Add:
		return ErrNotRead
	}
	link, err := h.LinkByName(l.name)
	if err != nil {
		return err
	}
	switch l.verb {
	case Del:
		return h.LinkDel(link)
	case Set:
		if l.mtu != 0 {
			if err := h.LinkSetMTU(link, l.mtu); err != nil {
				return err
			}
		}
		switch {
		case l.up:
			return h.LinkSetUp(link)
		case l.down:
			return h.LinkSetDown(link)
		}
	}
	return nil
}
