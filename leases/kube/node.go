package kube

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podCIDRs returns node name's IPv4 and IPv6 pod CIDRs from its
// spec.podCIDRs (cidrs, or spec.podCIDR, one, when that list is empty),
// as flanneld reads them: at most two, the first of each family.
func podCIDRs(name, one string, cidrs []string) (v4, v6 netip.Prefix, err error) {
	if len(cidrs) == 0 && one != "" {
		cidrs = []string{one}
	}
	if len(cidrs) == 0 {
		return v4, v6, fmt.Errorf("node %q has no podCIDR (is kube-controller-manager's --allocate-node-cidrs on?)", name)
	}
	if len(cidrs) > 2 {
		return v4, v6, fmt.Errorf("node %q has %d podCIDRs; want one per family", name, len(cidrs))
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("node %q: podCIDR %q: %w", name, s, err)
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
func (a Annotations) leaseOf(n *node, dualStack bool) (l leases.Lease, ok bool) {
	if n.annotation(annSubnetKubeManaged) != "true" {
		return l, false
	}
	v4, v6, err := podCIDRs(n.name, n.podCIDR, n.podCIDRs)
	if err == nil && !v4.IsValid() {
		err = fmt.Errorf("node %q has no IPv4 podCIDR", n.name)
	}
	if err != nil {
		return leases.Lease{Key: "node/" + n.name, Invalid: leases.ReasonBadKey, Problem: err.Error()}, true
	}
	if !dualStack {
		v6 = netip.Prefix{}
	}
	l = leases.Lease{Subnet: v4, IPv6Subnet: v6}
	l.Key = leases.SubnetKey(v4, v6)
	bad := func(err error) (leases.Lease, bool) {
		l.Invalid, l.Problem = leases.ReasonBadValue, fmt.Sprintf("node %q: %v", n.name, err)
		return l, true
	}
	l.Attrs.BackendType = n.annotation(annBackendType)
	if l.Attrs.PublicIP, err = parseAddr(a.PublicIP, n.annotation(annPublicIP)); err != nil {
		return bad(err)
	}
	if dualStack {
		if l.Attrs.PublicIPv6, err = parseAddr(a.PublicIPv6, n.annotation(annPublicIPv6)); err != nil {
			return bad(err)
		}
	}
	if len(n.annotation(annBackendData)) > leases.MaxValueSize {
		return bad(fmt.Errorf("annotation %s of %d bytes is larger than %d", a.BackendData, len(n.annotation(annBackendData)), leases.MaxValueSize))
	}
	if l.Attrs.BackendData, err = decodeBackendData(n.annotation(annBackendData)); err != nil {
		return bad(fmt.Errorf("annotation %s: %w", a.BackendData, err))
	}
	return l, true
}

// node is what the informer keeps of a Node, and all a lease is made
// of: name, resourceVersion, creation time, pod CIDRs and the values of
// the annotations Annotations names, by slot. A kubelet's Node decodes to
// ~12 KB of images, conditions and node info; a node is a few hundred
// bytes, so the cache's memory grows with the number of Nodes, not with
// what kubelets report. It is a metav1.ObjectMetaAccessor, which is all
// the informer's key function and store ask of an object.
type node struct {
	name, resourceVersion string
	created               time.Time
	podCIDR               string
	podCIDRs              []string
	ann                   [annSlots]string // values by slot
	has                   uint16           // bit i: slot i is set (an empty value is not an absent one)
}

// The annotation slots of a node, in the order of Annotations.keys.
const (
	annSubnetKubeManaged = iota
	annBackendData
	annBackendV6Data
	annBackendType
	annPublicIP
	annPublicIPv6
	annNodePublicIP
	annNodePublicIPv6
	annPublicIPOverwrite
	annPublicIPv6Overwrite
	annSlots
)

// GetObjectMeta is the Node's name and resourceVersion, for the informer.
func (n *node) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: n.name, ResourceVersion: n.resourceVersion}
}

// annotation is the value of slot i ("" when absent).
func (n *node) annotation(i int) string { return n.ann[i] }

// annotations are the node's annotations by name, as the Node has them.
func (n *node) annotations(a Annotations) map[string]string {
	m := make(map[string]string, annSlots)
	for i, k := range a.keys() {
		if n.has&(1<<i) != 0 {
			m[k] = n.ann[i]
		}
	}
	return m
}

// slim cuts n down to a node.
func (a Annotations) slim(n *corev1.Node) *node {
	s := &node{
		name: n.Name, resourceVersion: n.ResourceVersion, created: n.CreationTimestamp.Time,
		podCIDR: n.Spec.PodCIDR, podCIDRs: n.Spec.PodCIDRs,
	}
	for i, k := range a.keys() {
		if v, ok := n.Annotations[k]; ok {
			s.ann[i], s.has = v, s.has|1<<i
		}
	}
	return s
}

// trim is the informer's transform: a Node becomes a node. Anything
// else (a tombstone) passes as it is.
func (a Annotations) trim(obj any) (any, error) {
	if n, ok := obj.(*corev1.Node); ok {
		return a.slim(n), nil
	}
	return obj, nil
}

// keys are every annotation a names, in slot order.
func (a Annotations) keys() [annSlots]string {
	return [annSlots]string{a.SubnetKubeManaged, a.BackendData, a.BackendV6Data, a.BackendType, a.PublicIP, a.PublicIPv6,
		a.NodePublicIP, a.NodePublicIPv6, a.PublicIPOverwrite, a.PublicIPv6Overwrite}
}
