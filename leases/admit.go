package leases

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBackendData bounds an admitted lease's BackendData: a VTEP MAC is 17
// bytes and a wireguard key 44; 4 KiB leaves room for a custom backend's
// few fields while keeping a hook's stdin small.
const MaxBackendData = 4 << 10

// Reason names why a remote lease was refused. The values are stable
// snake_case words, fit for logs, status files and metric labels.
type Reason string

// The reasons Admit refuses a lease for, in the order it checks them.
const (
	ReasonBadKey         Reason = "bad_key"          // the store key is not a canonical subnet key
	ReasonBadValue       Reason = "bad_value"        // the value is not a lease (JSON, size, addresses)
	ReasonBackendType    Reason = "backend_type"     // BackendType is not "extension"
	ReasonOutsideNetwork Reason = "outside_network"  // the IPv4 subnet is not a SubnetLen subnet of Network
	ReasonIPv6Subnet     Reason = "bad_ipv6_subnet"  // IPv6 part missing, unexpected, or not an IPv6SubnetLen subnet of IPv6Network
	ReasonPublicIP       Reason = "bad_public_ip"    // PublicIP is not a unicast IPv4 address
	ReasonPublicIPv6     Reason = "bad_public_ipv6"  // PublicIPv6 is not a global or unique-local IPv6 address
	ReasonOwnPublicIP    Reason = "own_public_ip"    // the lease carries this node's PublicIP (a stale lease of ours)
	ReasonBackendData    Reason = "bad_backend_data" // not UTF-8, several lines, control characters or too long
	ReasonDataShape      Reason = "backend_data_shape"
	ReasonOverlapsOwn    Reason = "overlaps_own_subnet"
	ReasonOverlaps       Reason = "overlaps_lease" // another admitted lease holds (part of) the subnet
	// ReasonDuplicateData: the BackendData names a node (a VTEP MAC, a
	// WireGuard key) that this node or another admitted lease already is.
	ReasonDuplicateData Reason = "duplicate_backend_data"
	// ReasonOverlapsNode: the subnet overlaps a network of this node's
	// own addresses (its underlay), which the node had before flexhook.
	ReasonOverlapsNode Reason = "overlaps_node_network"
	// ReasonDuplicateClaim: another claimant of the same subnet is older
	// (Kubernetes: two Nodes with one podCIDR; the Node created first,
	// then the lower name, keeps it).
	ReasonDuplicateClaim Reason = "duplicate_claim"
)

// Reasons lists every Reason, in Admit's order.
var Reasons = []Reason{
	ReasonBadKey, ReasonBadValue, ReasonBackendType, ReasonOutsideNetwork, ReasonIPv6Subnet,
	ReasonPublicIP, ReasonPublicIPv6, ReasonOwnPublicIP, ReasonBackendData, ReasonDataShape,
	ReasonOverlapsOwn, ReasonOverlapsNode, ReasonOverlaps, ReasonDuplicateData, ReasonDuplicateClaim,
}

// Refusal is one lease Admit refused, with why.
type Refusal struct {
	Lease  Lease
	Reason Reason
	Detail string // a human sentence, safe to log (lease data quoted)
}

// Key returns the store key of the refused lease, quoted and shortened so
// that it is safe to print.
func (r Refusal) Key() string { return DisplayKey(r.Lease) }

func (r Refusal) String() string { return r.Key() + ": " + string(r.Reason) + ": " + r.Detail }

// DisplayKey returns l's store key (or its subnet key when the store gave
// none) in a form safe for logs and terminals: printable keys as they are,
// others Go-quoted; at most 80 bytes of it.
func DisplayKey(l Lease) string {
	k := l.Key
	if k == "" && l.Subnet.IsValid() {
		k = l.StoreKey()
	}
	return quoteData(k, 80)
}

// DisplayData returns BackendData shortened to at most 80 bytes for a
// table or a log line (longer data is cut and its length given).
func DisplayData(s string) string {
	if len(s) <= 80 {
		return s
	}
	return strings.ToValidUTF8(s[:80], "") + fmt.Sprintf("…(%d bytes)", len(s))
}

// Printable keeps text another node controls (its BackendData, a hook's
// stderr that may echo it) from breaking a table, a log line or the
// terminal: control characters become '?'.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// quoteData returns s unchanged when it is short printable UTF-8 without
// quotes or spaces, else Go-quoted; anything past max bytes is cut and
// marked.
func quoteData(s string, max int) string {
	cut := ""
	if len(s) > max {
		s, cut = strings.ToValidUTF8(s[:max], ""), fmt.Sprintf("…(%d bytes)", len(s))
	}
	plain := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\'
	})
	if !plain || s == "" {
		s = strconv.Quote(s)
	}
	return s + cut
}

// Policy is what a node admits remote leases against. Every store's
// leases go through it before any hook sees them.
type Policy struct {
	// Range gives Network and SubnetLen (and the IPv6 pair for dual
	// stack); SubnetMin and SubnetMax are not checked, since other nodes
	// may allocate with other bounds.
	Range Range
	// Own is this node's lease: its subnets may not be taken by another
	// lease. Zero while unknown.
	Own Lease
	// PublicIP and PublicIPv6 are this node's addresses; a remote lease
	// carrying one of them is a stale lease of this node.
	PublicIP, PublicIPv6 netip.Addr
	// NodeAddrs are the addresses the node had before flexhook (its
	// underlay, its other interfaces), with their prefix lengths: a remote
	// lease may neither carry one as its PublicIP nor take a subnet that
	// overlaps one of their networks (a host-gw route for it would
	// replace the node's connected route). Those inside the own subnets
	// (the CNI bridge, an overlay device) do not count, nor networks wider
	// than Network (an underlay chosen to hold the overlay).
	NodeAddrs []netip.Prefix
	// Shape, when set, is the form BackendData must have.
	Shape *Shape
}

// Admission is the outcome of Admit over one snapshot.
type Admission struct {
	Admitted []Lease   // sorted by subnet
	Refused  []Refusal // sorted by key
}

// Admit splits a store snapshot into the remote leases a hook may see and
// the ones refused, with reasons; the own lease (Own's key) is in neither.
// A lease must pass every rule of [Policy.Check]; then, of leases that
// overlap, one wins: a lease in incumbent (admitted before, by subnet)
// keeps its place, otherwise the narrowest subnet, then the lowest key. Admit is deterministic for a
// given snapshot and incumbent set.
func (p Policy) Admit(snap []Lease, incumbent map[netip.Prefix]Lease) Admission {
	return p.AdmitFunc(snap, func(s netip.Prefix) (Lease, bool) {
		l, ok := incumbent[s]
		return l, ok
	})
}

// AdmitFunc is Admit with the incumbents looked up by subnet through
// incumbent, for a caller that keeps them in a form of its own.
func (p Policy) AdmitFunc(snap []Lease, incumbent func(netip.Prefix) (Lease, bool)) Admission {
	var a Admission
	ownKey := ""
	if p.Own.Subnet.IsValid() {
		ownKey = SubnetKey(p.Own.Subnet, p.Own.IPv6Subnet)
	}
	ok := make([]int, 0, len(snap)) // indexes into snap of the leases that pass Check
	for i := range snap {
		l := &snap[i]
		if ownKey != "" && l.Invalid == "" && l.StoreKey() == ownKey {
			continue // our own lease
		}
		if reason, detail := p.Check(*l); reason != "" {
			a.Refused = append(a.Refused, Refusal{Lease: *l, Reason: reason, Detail: detail})
			continue
		}
		ok = append(ok, i)
	}
	exact := p.Range.Network.IsValid()
	if exact && !collide(snap, ok) {
		// The common case: no two leases share a subnet, nothing to decide.
		a.Admitted = make([]Lease, len(ok))
		for j, i := range ok {
			a.Admitted[j] = snap[i]
		}
	} else {
		a.Admitted = admitOverlapping(snap, ok, incumbent, exact, &a.Refused)
	}
	if !slices.IsSortedFunc(a.Admitted, Compare) {
		slices.SortFunc(a.Admitted, Compare)
	}
	a.Admitted = p.uniqueIdentities(a.Admitted, incumbent, &a.Refused)
	slices.SortFunc(a.Refused, func(x, y Refusal) int { return cmp.Compare(x.Lease.StoreKey(), y.Lease.StoreKey()) })
	return a
}

// uniqueIdentities refuses, where the shape says BackendData names a
// node, every lease whose data is this node's own or that of another
// admitted lease: one that was admitted before with that data keeps it
// (an incumbent), else the first in subnet order. Otherwise a second lease repeating
// a peer's VTEP MAC or key would take that peer's fdb entry or
// allowed-ips over. admitted is sorted by Compare and stays so.
func (p Policy) uniqueIdentities(admitted []Lease, incumbent func(netip.Prefix) (Lease, bool), refused *[]Refusal) []Lease {
	if p.Shape == nil || p.Shape.identity == nil {
		return admitted
	}
	owner := map[string]Lease{}
	// Incumbents first: the lease that had the identity keeps it.
	for _, l := range admitted {
		id := p.Shape.Identity(l.Attrs.BackendData)
		if x, in := incumbent(l.Subnet); id != "" && in && sameSubnets(x, l) && p.Shape.Identity(x.Attrs.BackendData) == id {
			if _, taken := owner[id]; !taken {
				owner[id] = l
			}
		}
	}
	own := p.Shape.Identity(p.Own.Attrs.BackendData)
	out := admitted[:0:0]
	for _, l := range admitted {
		id := p.Shape.Identity(l.Attrs.BackendData)
		switch w, taken := owner[id]; {
		case id == "":
		case id == own:
			*refused = append(*refused, Refusal{Lease: l, Reason: ReasonDuplicateData,
				Detail: fmt.Sprintf("BackendData %s is this node's own (%s)", quoteData(l.Attrs.BackendData, 60), p.Shape.Name)})
			continue
		case taken && !sameSubnets(w, l):
			*refused = append(*refused, Refusal{Lease: l, Reason: ReasonDuplicateData,
				Detail: fmt.Sprintf("BackendData %s is already the admitted lease %s's (%s names one node)",
					quoteData(l.Attrs.BackendData, 60), DisplayKey(w), p.Shape.Name)})
			continue
		default:
			owner[id] = l
		}
		out = append(out, l)
	}
	return out
}

// Compare orders leases by IPv4 subnet (address, then length), IPv6
// subnet, then store key: the order stores list them in.
func Compare(a, b Lease) int {
	return cmp.Or(comparePrefix(a.Subnet, b.Subnet), comparePrefix(a.IPv6Subnet, b.IPv6Subnet), cmp.Compare(a.Key, b.Key))
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// collide reports whether two of the leases snap[ok[...]] have the same
// IPv4 or IPv6 subnet.
func collide(snap []Lease, ok []int) bool {
	v4 := make(map[netip.Prefix]struct{}, len(ok))
	var v6 map[netip.Prefix]struct{}
	for _, i := range ok {
		l := &snap[i]
		if _, dup := v4[l.Subnet]; dup {
			return true
		}
		v4[l.Subnet] = struct{}{}
		if l.IPv6Subnet.IsValid() {
			if v6 == nil {
				v6 = map[netip.Prefix]struct{}{}
			}
			if _, dup := v6[l.IPv6Subnet]; dup {
				return true
			}
			v6[l.IPv6Subnet] = struct{}{}
		}
	}
	return false
}

// admitOverlapping picks, among leases that overlap, the winner: an
// incumbent (admitted before) keeps its place, then the narrowest subnet
// (without a Range a wide lease must not win over the ones it covers),
// then the lowest key. The losers are refused.
func admitOverlapping(snap []Lease, ok []int, incumbent func(netip.Prefix) (Lease, bool), exact bool,
	refused *[]Refusal) []Lease {
	isInc := func(l *Lease) bool {
		x, in := incumbent(l.Subnet)
		return in && sameSubnets(x, *l)
	}
	order := slices.Clone(ok)
	slices.SortFunc(order, func(i, j int) int {
		x, y := &snap[i], &snap[j]
		xi, yi := isInc(x), isInc(y)
		switch {
		case xi && !yi:
			return -1
		case yi && !xi:
			return 1
		}
		return cmp.Or(cmp.Compare(y.Subnet.Bits(), x.Subnet.Bits()), cmp.Compare(x.StoreKey(), y.StoreKey()))
	})
	held := newHolders(exact)
	out := make([]Lease, 0, len(order))
	for _, i := range order {
		l := snap[i]
		if w, hit := held.overlapping(l); hit {
			*refused = append(*refused, Refusal{Lease: l, Reason: ReasonOverlaps,
				Detail: "overlaps the admitted lease " + DisplayKey(w)})
			continue
		}
		held.add(l)
		out = append(out, l)
	}
	return out
}

func sameSubnets(a, b Lease) bool { return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet }

// holders are the admitted leases, by subnet. With a Range every
// admitted subnet has the range's length, so two overlap only when equal:
// a map lookup, and admission stays linear in the snapshot. Without one
// (leases list with no config) subnets of any length are compared one by
// one.
type holders struct {
	exact bool
	v4    map[netip.Prefix]Lease
	v6    map[netip.Prefix]Lease
	all   []Lease
}

func newHolders(exact bool) *holders {
	return &holders{exact: exact, v4: map[netip.Prefix]Lease{}, v6: map[netip.Prefix]Lease{}}
}

func (h *holders) add(l Lease) {
	if !h.exact {
		h.all = append(h.all, l)
		return
	}
	h.v4[l.Subnet] = l
	if l.IPv6Subnet.IsValid() {
		h.v6[l.IPv6Subnet] = l
	}
}

// overlapping returns an admitted lease whose IPv4 or IPv6 subnet
// overlaps l's.
func (h *holders) overlapping(l Lease) (Lease, bool) {
	if h.exact {
		if x, ok := h.v4[l.Subnet]; ok {
			return x, true
		}
		if x, ok := h.v6[l.IPv6Subnet]; ok && l.IPv6Subnet.IsValid() {
			return x, true
		}
		return Lease{}, false
	}
	for _, x := range h.all {
		if x.Subnet.Overlaps(l.Subnet) ||
			x.IPv6Subnet.IsValid() && l.IPv6Subnet.IsValid() && x.IPv6Subnet.Overlaps(l.IPv6Subnet) {
			return x, true
		}
	}
	return Lease{}, false
}

// Check applies the rules that concern one lease alone, in the order of
// [Reasons], and returns the first one it breaks ("" when none) with a
// sentence saying how. Overlaps between remote leases are Admit's.
func (p Policy) Check(l Lease) (Reason, string) {
	if l.Invalid != "" {
		return l.Invalid, l.Problem
	}
	if l.Key != "" && l.Key != SubnetKey(l.Subnet, l.IPv6Subnet) {
		return ReasonBadKey, "key is not canonical, want " + SubnetKey(l.Subnet, l.IPv6Subnet)
	}
	if l.Attrs.BackendType != BackendType {
		return ReasonBackendType, fmt.Sprintf("BackendType %s is not %q", quoteData(l.Attrs.BackendType, 40), BackendType)
	}
	if r := p.Range; r.Network.IsValid() {
		if !inside(l.Subnet, r.Network, r.SubnetLen) {
			return ReasonOutsideNetwork, fmt.Sprintf("%s is not a /%d subnet of %s", l.Subnet, r.SubnetLen, r.Network)
		}
		switch {
		case r.DualStack() && !l.IPv6Subnet.IsValid():
			return ReasonIPv6Subnet, "dual stack is on and the lease has no IPv6 subnet"
		case r.DualStack() && !inside(l.IPv6Subnet, r.IPv6Network, r.IPv6SubnetLen):
			return ReasonIPv6Subnet, fmt.Sprintf("%s is not a /%d subnet of %s", l.IPv6Subnet, r.IPv6SubnetLen, r.IPv6Network)
		case !r.DualStack() && l.IPv6Subnet.IsValid():
			return ReasonIPv6Subnet, fmt.Sprintf("IPv6 subnet %s while dual stack is off", l.IPv6Subnet)
		}
	}
	if err := CheckPublicIP(l.Attrs.PublicIP); err != nil {
		return ReasonPublicIP, err.Error()
	}
	if l.Attrs.PublicIPv6.IsValid() || l.Attrs.PublicIPv6.Zone() != "" {
		if err := CheckPublicIPv6(l.Attrs.PublicIPv6); err != nil {
			return ReasonPublicIPv6, err.Error()
		}
	}
	if p.PublicIP.IsValid() && l.Attrs.PublicIP == p.PublicIP.Unmap() ||
		p.PublicIPv6.IsValid() && l.Attrs.PublicIPv6 == p.PublicIPv6 {
		return ReasonOwnPublicIP, "carries this node's public IP: a stale lease of this node"
	}
	for _, a := range p.NodeAddrs {
		if a.Addr() == l.Attrs.PublicIP || l.Attrs.PublicIPv6.IsValid() && a.Addr() == l.Attrs.PublicIPv6 {
			return ReasonOwnPublicIP, fmt.Sprintf("its public IP %s is an address of this node", a.Addr())
		}
	}
	if err := CheckBackendData(l.Attrs.BackendData); err != nil {
		return ReasonBackendData, err.Error()
	}
	if p.Shape != nil {
		if err := p.Shape.Check(l.Attrs.BackendData); err != nil {
			return ReasonDataShape, err.Error()
		}
	}
	if o := p.Own; o.Subnet.IsValid() {
		if o.Subnet.Overlaps(l.Subnet) || o.IPv6Subnet.IsValid() && l.IPv6Subnet.IsValid() && o.IPv6Subnet.Overlaps(l.IPv6Subnet) {
			return ReasonOverlapsOwn, "overlaps this node's subnet " + SubnetKey(o.Subnet, o.IPv6Subnet)
		}
	}
	for _, a := range p.NodeAddrs {
		n := a.Masked()
		if p.Own.Subnet.IsValid() && p.Own.Subnet.Contains(a.Addr()) || p.Own.IPv6Subnet.IsValid() && p.Own.IPv6Subnet.Contains(a.Addr()) {
			continue
		}
		// A node network wider than the overlay's (an underlay 10.0.0.0/8
		// around Network 10.244.0.0/16) was chosen to hold it: the lease
		// routes are more specific and replace nothing.
		if w := p.Range.Network; a.Addr().Is4() && w.IsValid() && n.Bits() < w.Bits() {
			continue
		}
		if w := p.Range.IPv6Network; a.Addr().Is6() && w.IsValid() && n.Bits() < w.Bits() {
			continue
		}
		if n.Overlaps(l.Subnet) || l.IPv6Subnet.IsValid() && n.Overlaps(l.IPv6Subnet) {
			return ReasonOverlapsNode, fmt.Sprintf("overlaps %s, the network of this node's address %s", n, a.Addr())
		}
	}
	return "", ""
}

// inside reports whether p is a masked subnet of exactly bits inside
// network, of network's family.
func inside(p, network netip.Prefix, bits int) bool {
	return p.IsValid() && p.Masked() == p && p.Bits() == bits &&
		p.Addr().Is4() == network.Addr().Is4() && !p.Addr().Is4In6() && network.Contains(p.Addr())
}

// CheckPublicIP reports why ip may not be another node's PublicIP: it
// must be a plain unicast IPv4 address, not unspecified (0.0.0.0/8),
// loopback, link-local, multicast, the reserved 240.0.0.0/4 or broadcast.
func CheckPublicIP(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("PublicIP is missing")
	case !ip.Is4():
		return fmt.Errorf("PublicIP %s is not IPv4", quoteData(ip.String(), 60))
	}
	b := ip.As4()
	switch {
	case b[0] == 0:
		return fmt.Errorf("PublicIP %s is unspecified (0.0.0.0/8)", ip)
	case ip.IsLoopback():
		return fmt.Errorf("PublicIP %s is loopback", ip)
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("PublicIP %s is link-local", ip)
	case ip.IsMulticast():
		return fmt.Errorf("PublicIP %s is multicast", ip)
	case b[0] >= 240:
		return fmt.Errorf("PublicIP %s is reserved or broadcast (240.0.0.0/4)", ip)
	}
	return nil
}

// CheckPublicIPv6 reports why ip may not be another node's PublicIPv6: it
// must be a global or unique-local unicast IPv6 address without a zone,
// not IPv4-mapped.
func CheckPublicIPv6(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("PublicIPv6 is missing")
	case ip.Zone() != "":
		return fmt.Errorf("PublicIPv6 %s has a zone", quoteData(ip.String(), 60))
	case !ip.Is6() || ip.Is4In6():
		return fmt.Errorf("PublicIPv6 %s is not IPv6", ip)
	case !ip.IsGlobalUnicast():
		return fmt.Errorf("PublicIPv6 %s is not a global or unique-local unicast address", ip)
	}
	return nil
}

// CheckBackendData reports why s may not reach a hook's stdin: it must be
// valid UTF-8, one line, without control characters (C0, DEL, C1, the
// Unicode line and paragraph separators), at most MaxBackendData bytes.
func CheckBackendData(s string) error {
	switch {
	case len(s) > MaxBackendData:
		return fmt.Errorf("BackendData of %d bytes is longer than %d", len(s), MaxBackendData)
	case !utf8.ValidString(s):
		return fmt.Errorf("BackendData is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			if r == '\n' || r == '\r' {
				return fmt.Errorf("BackendData has more than one line (a line break at byte %d)", i)
			}
			return fmt.Errorf("BackendData has the control character %U at byte %d", r, i)
		}
	}
	return nil
}
