package runner

import (
	"net/netip"
	"slices"

	"github.com/flexhook/flexhook/hooks"
)

// op is one hook run that brings a subnet closer to the desired state.
type op struct {
	kind hooks.Kind // SubnetAdd or SubnetRemove
	v    *journalLease
}

// sameLease reports whether applying b in place of a needs no hook: the
// fields the hooks see are equal.
func sameLease(a, b *journalLease) bool {
	return a == b || a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet &&
		a.PublicIP == b.PublicIP &&
		a.PublicIPv6 == b.PublicIPv6 &&
		a.BackendData == b.BackendData
}

// reconcile is the pure reconciler. From the desired remote leases (the
// admitted store snapshot), the versions the journal says may be in the
// kernel, the versions added (and not removed) since the start, and the
// subnets due for a resync, it returns what to run: a Remove for every
// journal version that is not the desired one of its subnet, and an Add
// for every desired lease not added since the start (the kernel, not the
// journal, is the truth: at a start everything is added again) or due for
// a resync. All Removes come before all Adds; each list is in subnet
// order.
func reconcile(desired leaseSet, journaled map[netip.Prefix][]*journalLease,
	applied map[netip.Prefix]*journalLease, resync map[netip.Prefix]bool) (removes, adds []op) {
	for _, s := range sortedSubnets(journaled) {
		d, wanted := desired.get(s)
		for _, v := range journaled[s] {
			if wanted && sameLease(d, v) {
				continue
			}
			removes = append(removes, op{hooks.SubnetRemove, v})
		}
	}
	for _, d := range desired {
		s := d.Subnet
		if a, ok := applied[s]; ok && sameLease(a, d) && !resync[s] {
			continue
		}
		adds = append(adds, op{hooks.SubnetAdd, d})
	}
	return removes, adds
}

// leaseSet is a set of versions, at most one per subnet, sorted by
// subnet: the desired set. It costs a pointer per lease, where a map
// costs about 60 bytes.
type leaseSet []*journalLease

// get returns subnet s's version.
func (ls leaseSet) get(s netip.Prefix) (*journalLease, bool) {
	i, ok := slices.BinarySearchFunc(ls, s, func(v *journalLease, s netip.Prefix) int { return v.Subnet.Compare(s) })
	if !ok {
		return nil, false
	}
	return ls[i], true
}

// sort puts ls in subnet order (a no-op when it is, as admission's
// lists are with one subnet length).
func (ls leaseSet) sort() {
	bySubnet := func(a, b *journalLease) int { return a.Subnet.Compare(b.Subnet) }
	if !slices.IsSortedFunc(ls, bySubnet) {
		slices.SortFunc(ls, bySubnet)
	}
}

// heldBack reports whether Add a must wait for one of the pending
// Removes: one of its own subnet (a subnet's old versions go first).
func heldBack(a op, pending []op) bool {
	for _, r := range pending {
		if r.v.Subnet == a.v.Subnet {
			return true
		}
	}
	return false
}

// sameNode reports whether two versions of different subnets are one
// node's: the same PublicIP, or the same non-empty BackendData (a key, a
// VTEP MAC). A Remove of one can undo the other's Add (`wg set ... peer
// KEY remove`).
func sameNode(a, b *journalLease) bool {
	return a.Subnet != b.Subnet && (a.PublicIP == b.PublicIP ||
		a.BackendData != "" && a.BackendData == b.BackendData)
}

// sortedSubnets returns the keys of m in address order, so that hooks run
// in a stable order.
func sortedSubnets[V any](m map[netip.Prefix]V) []netip.Prefix {
	keys := make([]netip.Prefix, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b netip.Prefix) int { return a.Compare(b) })
	return keys
}
