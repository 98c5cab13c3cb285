package kube

import (
	"fmt"
	"net/netip"

	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podCIDRs returns the node's IPv4 and IPv6 pod CIDRs from spec.podCIDRs
// (or spec.podCIDR when that list is empty), as flanneld reads them: at
// most two, the first of each family.
func podCIDRs(n *corev1.Node) (v4, v6 netip.Prefix, err error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if len(cidrs) == 0 {
		return v4, v6, fmt.Errorf("node %q has no podCIDR (is kube-controller-manager's --allocate-node-cidrs on?)", n.Name)
	}
	if len(cidrs) > 2 {
		return v4, v6, fmt.Errorf("node %q has %d podCIDRs; want one per family", n.Name, len(cidrs))
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("node %q: podCIDR %q: %w", n.Name, s, err)
		}
		p = p.Masked()
		switch {
		case p.Addr().Is4() && !v4.IsValid():
			v4 = p
		case p.Addr().Is6() && !v6.IsValid():
			v6 = p
		}
	}
	return v4, v6, nil
}

// leaseOf turns a node into a lease. ok is false for a node that does not
// run a kube subnet manager (no "true" kube-subnet-manager annotation):
// such nodes are not leases at all, as in flanneld. A node that runs one
// but whose pod CIDRs or annotations do not decode comes back with
// Invalid set and Problem naming the node, so that it is listed and
// refused, never applied. With dualStack off the node's IPv6 half is
// not read.
func (a Annotations) leaseOf(n *corev1.Node, dualStack bool) (l leases.Lease, ok bool) {
	ann := n.Annotations
	if ann[a.SubnetKubeManaged] != "true" {
		return l, false
	}
	v4, v6, err := podCIDRs(n)
	if err == nil && !v4.IsValid() {
		err = fmt.Errorf("node %q has no IPv4 podCIDR", n.Name)
	}
	if err != nil {
		return leases.Lease{Key: "node/" + n.Name, Invalid: leases.ReasonBadKey, Problem: err.Error()}, true
	}
	if !dualStack {
		v6 = netip.Prefix{}
	}
	l = leases.Lease{Subnet: v4, IPv6Subnet: v6}
	l.Key = leases.SubnetKey(v4, v6)
	bad := func(err error) (leases.Lease, bool) {
		l.Invalid, l.Problem = leases.ReasonBadValue, fmt.Sprintf("node %q: %v", n.Name, err)
		return l, true
	}
	l.Attrs.BackendType = ann[a.BackendType]
	if l.Attrs.PublicIP, err = parseAddr(a.PublicIP, ann[a.PublicIP]); err != nil {
		return bad(err)
	}
	if dualStack {
		if l.Attrs.PublicIPv6, err = parseAddr(a.PublicIPv6, ann[a.PublicIPv6]); err != nil {
			return bad(err)
		}
	}
	if len(ann[a.BackendData]) > leases.MaxValueSize {
		return bad(fmt.Errorf("annotation %s of %d bytes is larger than %d", a.BackendData, len(ann[a.BackendData]), leases.MaxValueSize))
	}
	if l.Attrs.BackendData, err = decodeBackendData(ann[a.BackendData]); err != nil {
		return bad(fmt.Errorf("annotation %s: %w", a.BackendData, err))
	}
	return l, true
}

// trim is the informer's transform: a Node cut down to what leaseOf,
// refuseYoungerClaims and updated read (name, uid, resourceVersion,
// creation time, pod CIDRs, and a's annotations), so
// the cache's memory grows with the number of Nodes, not with what
// kubelets report. Anything else (a tombstone) passes as it is.
func (a Annotations) trim(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	t := &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			CreationTimestamp: n.CreationTimestamp,
		},
		Spec: corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}
	for _, k := range a.keys() {
		if v, ok := n.Annotations[k]; ok {
			if t.Annotations == nil {
				t.Annotations = make(map[string]string, 5)
			}
			t.Annotations[k] = v
		}
	}
	return t, nil
}

// keys are every annotation a names.
func (a Annotations) keys() []string {
	return []string{a.SubnetKubeManaged, a.BackendData, a.BackendV6Data, a.BackendType, a.PublicIP, a.PublicIPv6,
		a.NodePublicIP, a.NodePublicIPv6, a.PublicIPOverwrite, a.PublicIPv6Overwrite}
}
