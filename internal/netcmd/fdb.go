package netcmd

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bridgeObjects is bridge's object table in its order.
var bridgeObjects = []keyword{{"link", true}, {"fdb", true}, {"mdb", true}, {"vlan", true}, {"vni", true}}

// fdbVerbs is do_fdb's verb chain.
var fdbVerbs = []keyword{{"add", true}, {"append", true}, {"replace", true}, {"delete", true}}

// fdbKeywords is fdb_modify's chain (6.1); dev, dst and self are read.
var fdbKeywords = []keyword{
	{"dev", false}, {"dst", false}, {"nhid", false}, {"port", false}, {"vni", false}, {"src_vni", false},
	{"via", false}, {"self", false}, {"master", true}, {"router", true}, {"local", true},
	{"permanent", true}, {"temp", true}, {"static", true}, {"dynamic", true}, {"vlan", true},
	{"use", true}, {"extern_learn", true}, {"sticky", true}, {"to", false}, {"help", true},
}

// fdb is `bridge fdb add|append|replace|delete MAC dev NAME self [dst
// ADDR]`. Without dst the library would send an empty NDA_DST, which the
// kernel refuses: add, append and replace without dst are read (their
// object named) but not fast. delete without dst is fast, sent with dst
// 0.0.0.0: the kernel reads a missing NDA_DST as the any address
// (vxlan_fdb_parse), and a delete for the any address removes the whole
// entry, every remote (__vxlan_fdb_delete), as bridge's does; devices
// other than vxlan ignore NDA_DST on delete (rtnl_fdb_del,
// br_fdb_delete).
type fdb struct {
	verb Verb
	mac  string
	dev  string
	dst  netip.Addr
	self bool
}

func parseBridge(argv []string) (*Cmd, error) {
	w := &words{argv[1:]}
	if lookup(bridgeObjects, w.next()) != "fdb" {
		return nil, ErrNotRead
	}
	verbAt := len(argv) - len(w.a)
	var f fdb
	switch lookup(fdbVerbs, w.next()) {
	case "add":
		f.verb = Add
	case "append":
		f.verb = Append
	case "replace":
		f.verb = Replace
	case "delete":
		f.verb = Del
	default:
		return nil, ErrNotRead
	}
	for !w.done() {
		t := w.next()
		switch lookup(fdbKeywords, t) {
		case "dev":
			if err := w.devOnce(&f.dev); err != nil {
				return nil, err
			}
		case "dst":
			a, ok := addr(w.next(), 0)
			if !ok || f.dst.IsValid() {
				return nil, ErrNotRead
			}
			f.dst = a
		case "self":
			f.self = true
		case "to", "":
			if t == "to" {
				t = w.next()
			}
			m, ok := mac(t)
			if !ok || f.mac != "" {
				return nil, ErrNotRead
			}
			f.mac = m
		default:
			return nil, ErrNotRead
		}
	}
	if f.mac == "" || f.dev == "" {
		return nil, ErrNotRead
	}
	c := &Cmd{Verb: f.verb, Objects: []Object{FDBObject(f.mac, f.dev, f.dst)}, verbAt: verbAt, op: f.apply,
		Fast: f.self && (f.dst.IsValid() || f.verb == Del)}
	return c, nil
}

func (f fdb) apply(h *netlink.Handle, d devices) error {
	idx, err := d.index(f.dev)
	if err != nil {
		return err
	}
	ll, err := net.ParseMAC(f.mac)
	if err != nil {
		return err
	}
	// iproute2's bridge fdb: NUD_NOARP, and permanent unless told.
	dst := f.dst
	if !dst.IsValid() { // delete only (Fast): the any address, as the kernel reads no dst
		dst = netip.IPv4Unspecified()
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, HardwareAddr: ll, IP: dst.AsSlice(),
		State: netlink.NUD_NOARP | netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF}
	switch f.verb {
	case Add:
		return h.NeighAdd(n)
	case Append:
		return h.NeighAppend(n)
	case Replace:
		return h.NeighSet(n)
	}
	return h.NeighDel(n)
}
