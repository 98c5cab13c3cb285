package runner

import (
	"net/netip"
	"slices"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
)

// op is one hook run that brings a subnet closer to the desired state.
type op struct {
	kind  hooks.Kind // SubnetAdd or SubnetRemove
	lease leases.Lease
}

// sameLease reports whether applying b in place of a needs no hook: the
// fields the hooks see are equal (the expiration is not one of them).
func sameLease(a, b leases.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet &&
		a.Attrs.PublicIP == b.Attrs.PublicIP &&
		a.Attrs.PublicIPv6 == b.Attrs.PublicIPv6 &&
		a.Attrs.BackendData == b.Attrs.BackendData
}

// plan returns the hooks that turn the applied lease of one subnet (if
// any) into the desired one (if any), in the order they must run: a
// changed lease is removed before its new version is added.
func plan(desired leases.Lease, wanted bool, applied leases.Lease, done bool) []op {
	switch {
	case wanted && done && sameLease(desired, applied):
		return nil
	case wanted && done:
		return []op{{hooks.SubnetRemove, applied}, {hooks.SubnetAdd, desired}}
	case wanted:
		return []op{{hooks.SubnetAdd, desired}}
	case done:
		return []op{{hooks.SubnetRemove, applied}}
	}
	return nil
}

// diff compares the desired remote leases with the applied ones and
// returns, per subnet that is out of date, the hooks to run in order.
func diff(desired, applied map[netip.Prefix]leases.Lease) map[netip.Prefix][]op {
	out := make(map[netip.Prefix][]op)
	for s, d := range desired {
		a, done := applied[s]
		if ops := plan(d, true, a, done); len(ops) > 0 {
			out[s] = ops
		}
	}
	for s, a := range applied {
		if _, wanted := desired[s]; !wanted {
			out[s] = plan(leases.Lease{}, false, a, true)
		}
	}
	return out
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
