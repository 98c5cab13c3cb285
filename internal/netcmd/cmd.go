package netcmd

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
)

// Verb is what a command does to its objects.
type Verb int

// The verbs: Add fails when the object exists, Replace creates or
// changes it, Append adds one more of it (bridge fdb append), Del removes
// it, Set changes an object that must exist (ip link set, wg set).
const (
	Add Verb = iota + 1
	Replace
	Append
	Del
	Set
)

func (v Verb) String() string {
	switch v {
	case Add:
		return "add"
	case Replace:
		return "replace"
	case Append:
		return "append"
	case Del:
		return "del"
	case Set:
		return "set"
	}
	return fmt.Sprintf("verb(%d)", int(v))
}

// Object names one kernel object the way the kernel tells them apart, in
// a canonical text that is also how messages show it:
//
//	route 10.50.2.0/24              (main table, the family's default metric)
//	route 10.50.2.0/24 table 100 metric 5
//	addr 10.50.1.0/32 dev flannel-vxlan
//	neigh 10.50.2.0 dev flannel-vxlan
//	fdb b2:d1:fc:40:8d:2f dev flannel-vxlan
//	fdb 00:00:00:00:00:00 dev flannel-vxlan dst 192.0.2.3
//	link flannel-vxlan
//	wg-peer KEY dev flannel-wg
type Object string

// Kind is the object's first word: route, addr, neigh, fdb, link or
// wg-peer.
func (o Object) Kind() string {
	k, _, _ := strings.Cut(string(o), " ")
	return k
}

// RouteObject names a route to dst in table with metric (0: the family's
// default for a route added without one: 0 for IPv4, 1024 for IPv6).
func RouteObject(dst netip.Prefix, table, metric uint32) Object {
	if table == 0 {
		table = mainTable
	}
	if metric == 0 && dst.Addr().Is6() {
		metric = ipv6DefaultMetric
	}
	s := "route " + dst.String()
	if table != mainTable {
		s += fmt.Sprintf(" table %d", table)
	}
	if metric != 0 && !(dst.Addr().Is6() && metric == ipv6DefaultMetric) {
		s += fmt.Sprintf(" metric %d", metric)
	}
	return Object(s)
}

// AddrObject names address p on dev: with its length for IPv4, where
// the kernel tells 10.0.0.1/24 and 10.0.0.1/32 apart, and without for
// IPv6, where an address is one object whatever its length.
func AddrObject(p netip.Prefix, dev string) Object {
	if p.Addr().Is6() {
		return Object("addr " + p.Addr().String() + " dev " + dev)
	}
	return Object("addr " + p.String() + " dev " + dev)
}

// NeighObject names the neighbour entry for a on dev.
func NeighObject(a netip.Addr, dev string) Object {
	return Object("neigh " + a.String() + " dev " + dev)
}

// FDBObject names the fdb entry for mac on dev. The all-zeros MAC (a
// vxlan device's default destinations) has one entry per dst, so dst is
// part of its name; any other MAC has one entry per device.
func FDBObject(mac, dev string, dst netip.Addr) Object {
	mac = strings.ToLower(mac)
	if mac == zeroMAC && dst.IsValid() {
		return Object("fdb " + mac + " dev " + dev + " dst " + dst.String())
	}
	return Object("fdb " + mac + " dev " + dev)
}

// LinkObject names device name.
func LinkObject(name string) Object { return Object("link " + name) }

// PeerObject names WireGuard peer key on dev.
func PeerObject(key, dev string) Object { return Object("wg-peer " + key + " dev " + dev) }

const (
	mainTable         = 254
	ipv6DefaultMetric = 1024
	zeroMAC           = "00:00:00:00:00:00"
)

// Cmd is one command line read exactly.
type Cmd struct {
	Argv    []string
	Verb    Verb
	Objects []Object // what it changes, in order
	// Fast: Apply does the command through rtnetlink (ip, bridge, arp)
	// or WireGuard's configuration interface (wg set) exactly as the tool
	// would; otherwise only the real binary runs it.
	Fast bool
	// verbAt is the index in Argv of the verb word (-1: none to rewrite).
	verbAt int
	op     func(h *netlink.Handle, d devices) error // ip, bridge, arp
	wgOp   func(e Env) error                        // wg set
}

// Env is what Apply works through: the caller's sockets, opened once and
// handed out on first use (Route: rtnetlink; WireGuard: WireGuard's
// generic netlink family and wireguard-go's UAPI sockets; Ioctl: an
// AF_INET datagram socket, as IoctlSocket opens, for the device lookups
// by name), and Dir, the working directory the command's relative paths
// start from (wg's private-key FILE), as the tool's would be. Ioctl may
// be nil: each lookup then opens and closes a socket of its own.
type Env struct {
	Route     func() (*netlink.Handle, error)
	WireGuard func() (WireGuard, error)
	Ioctl     func() (int, error)
	Dir       string
}

// Apply does c through e. It is an error to call it when !c.Fast. A
// refused request changes nothing, so the caller may run the real binary
// to fail the same way in the tool's own words.
func (c *Cmd) Apply(e Env) error {
	switch {
	case !c.Fast:
		return ErrNotRead
	case c.wgOp != nil:
		return c.wgOp(e)
	case c.op != nil:
		h, err := e.Route()
		if err != nil {
			return err
		}
		return c.op(h, devices{socket: e.Ioctl})
	}
	return ErrNotRead
}

// AsReplace returns c's argv with its add verb replaced by replace, for
// the objects that have a replace (ip route, ip addr, ip neigh, bridge
// fdb); ok is false for any other command.
func (c *Cmd) AsReplace() ([]string, bool) {
	if c.Verb != Add || c.verbAt < 0 {
		return nil, false
	}
	out := append([]string(nil), c.Argv...)
	out[c.verbAt] = "replace"
	return out, true
}

// Parse reads argv, or returns an error wrapping ErrNotRead. argv[0] may
// be a path; its base name picks the tool.
func Parse(argv []string) (*Cmd, error) {
	if len(argv) < 2 {
		return nil, ErrNotRead
	}
	var c *Cmd
	var err error
	switch filepath.Base(argv[0]) {
	case "ip":
		c, err = parseIP(argv)
	case "bridge":
		c, err = parseBridge(argv)
	case "arp":
		c, err = parseArp(argv)
	case "wg":
		c, err = parseWg(argv)
	default:
		return nil, ErrNotRead
	}
	if err != nil {
		return nil, err
	}
	c.Argv = argv
	return c, nil
}

// ipObjects is ip's object table in its order (ip.c's cmds), as far as it
// decides which object a prefix stands for.
var ipObjects = []keyword{
	{"address", true}, {"addrlabel", true}, {"maddress", true}, {"route", true}, {"rule", true},
	{"neighbor", true}, {"neighbour", true}, {"ntable", true}, {"ntbl", true}, {"link", true},
}

// ipVerbs is the verb table of ip route, addr and neigh in its order.
var ipVerbs = []keyword{
	{"add", true}, {"change", true}, {"chg", false}, {"replace", true}, {"prepend", true},
	{"append", true}, {"test", true}, {"delete", true},
}

func parseIP(argv []string) (*Cmd, error) {
	w := &words{argv[1:]}
	fam := 0
	obj := w.next()
	for obj == "-4" || obj == "-6" {
		fam = 4
		if obj == "-6" {
			fam = 6
		}
		obj = w.next()
	}
	verbAt := len(argv) - len(w.a)
	switch lookup(ipObjects, obj) {
	case "route":
		return parseRoute(w, fam, verbAt)
	case "address":
		return parseAddr(w, fam, verbAt)
	case "neighbor", "neighbour":
		return parseNeigh(w, fam, verbAt)
	case "link":
		if fam != 0 {
			return nil, ErrNotRead
		}
		return parseLink(w)
	}
	return nil, ErrNotRead
}

// ipVerb reads the verb of ip route|addr|neigh: add, replace or delete
// (others: not read).
func ipVerb(w *words) (Verb, error) {
	v := w.next()
	switch lookup(ipVerbs, v) {
	case "add":
		return Add, nil
	case "replace":
		return Replace, nil
	case "delete":
		return Del, nil
	}
	return 0, ErrNotRead // change, prepend, append, test, show, ...
}

// prefix reads a prefix as get_prefix does for the forms it shares with
// netip (no leading zeros, no short IPv4): ADDR/LEN or ADDR (all bits).
// fam 4 or 6 insists on a family.
func prefix(s string, fam int) (netip.Prefix, bool) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, false
		}
	} else {
		a, ok := addr(s, fam)
		if !ok {
			return p, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	return p, a.Zone() == "" && !a.Is4In6() && (fam == 0 || famOf(a) == fam)
}

// addr reads an address (fam 0: either family).
func addr(s string, fam int) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() || fam != 0 && famOf(a) != fam {
		return netip.Addr{}, false
	}
	return a, true
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// mac reads a 48-bit MAC in the colon form with two hex digits a byte,
// which every one of the tools reads the same way.
func mac(s string) (string, bool) {
	if len(s) != 17 {
		return "", false
	}
	for i := 0; i < 17; i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return "", false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}
