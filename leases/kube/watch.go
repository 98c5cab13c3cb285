package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// synced waits until the informer has listed every node once.
func (s *Store) synced(ctx context.Context) error {
	if s.informer.HasSynced() {
		return nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("list nodes: %w", context.Cause(ctx))
	}
	return nil
}

// snapshot turns the informer's nodes into leases, sorted by subnet.
func (s *Store) snapshot() []leases.Lease {
	return s.leasesOf(s.nodes.List())
}

// leasesOf turns nodes (*node) into leases, sorted by subnet.
func (s *Store) leasesOf(objs []any) []leases.Lease {
	s.mu.Lock()
	own := s.own
	s.mu.Unlock()
	out := make([]leases.Lease, 0, len(objs))
	var nodes []*node // of out, index by index
	for _, o := range objs {
		n, ok := o.(*node)
		if !ok {
			continue
		}
		l, ok := s.ann.leaseOf(n, s.cfg.DualStack)
		if !ok {
			continue
		}
		// This node's lease carries the attrs it acquired with (its own
		// address, not a public-ip-overwrite) while its annotations say
		// what Acquire published: the lease is the one the engine holds.
		// Annotations someone changed show as they are, so that the
		// engine sees its lease is not as it left it and renews.
		if n.name == s.cfg.NodeName && l.Invalid == "" && own.BackendType != "" {
			if want, err := s.ann.Published(n.annotations(s.ann), own, s.cfg.PreStartup); err == nil && want == nil {
				l.Attrs = own
			}
		}
		out = append(out, l)
		nodes = append(nodes, n)
	}
	refuseYoungerClaims(out, nodes, s.cfg.NodeName)
	slices.SortFunc(out, leases.Compare)
	return out
}

// refuseYoungerClaims decides between Nodes that claim one subnet (a
// podCIDR assigned twice: by hand, an IPAM bug, anyone who may create
// Nodes) the same way on every node: the Node created first keeps it,
// then the lower name; this node's own Node always does (lease admission
// refuses the other as overlapping the own subnet). The others are
// refused as duplicate_claim under the key node/NAME, so that a newcomer
// never displaces an applied lease and the winner does not depend on the
// order a list returns.
func refuseYoungerClaims(ls []leases.Lease, nodes []*node, self string) {
	older := func(i, j int) bool { // node i's claim beats node j's
		switch a, b := nodes[i], nodes[j]; {
		case a.name == self:
			return true
		case b.name == self:
			return false
		case !a.created.Equal(b.created):
			return a.created.Before(b.created)
		default:
			return a.name < b.name
		}
	}
	winner := map[netip.Prefix]int{}
	claim := func(p netip.Prefix, i int) {
		if !p.IsValid() {
			return
		}
		if w, ok := winner[p]; !ok || older(i, w) {
			winner[p] = i
		}
	}
	for i, l := range ls {
		if l.Invalid == "" {
			claim(l.Subnet, i)
			claim(l.IPv6Subnet, i)
		}
	}
	for i := range ls {
		l := &ls[i]
		if l.Invalid != "" {
			continue
		}
		for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
			if w, ok := winner[p]; p.IsValid() && ok && w != i {
				l.Key, l.Invalid = "node/"+nodes[i].name, leases.ReasonDuplicateClaim
				l.Problem = fmt.Sprintf("node %q claims %s, which node %q, created earlier, holds", nodes[i].name, p, nodes[w].name)
				break
			}
		}
	}
}

// listNodes lists every Node from the API server (a consistent read),
// as nodes.
func (s *Store) listNodes(ctx context.Context) ([]any, error) {
	nl, err := s.cfg.Client.ListNodes(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make([]any, len(nl.Items))
	for i := range nl.Items {
		out[i] = s.ann.slim(&nl.Items[i])
	}
	return out, nil
}

// List returns the leases of every node that runs a kube subnet manager,
// ours included, as the API server has them now.
func (s *Store) List(ctx context.Context) ([]leases.Lease, error) {
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	return s.leasesOf(nodes), nil
}

// Watch sends the full set of leases once the informer has synced, then
// again after node changes that change it (waiting the quiet time for
// more changes first, at most the max wait), until ctx is done: the
// shared leases.Pipe over the informer (feed). The informer retries a
// lost API server by itself, so Watch does not fail.
func (s *Store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	return leases.Pipe{Quiet: s.o.quiet, Max: s.o.maxWait}.Run(ctx, out, feed{s})
}

// feed is the kube store's list/notify half of Watch: the node informer.
type feed struct{ s *Store }

// Follow starts the informer, waits until it has listed every node once,
// then tells Pipe of every node change that touches leases.
func (f feed) Follow(ctx context.Context, changed func()) error {
	s := f.s
	notify := make(chan struct{}, 1)
	s.mu.Lock()
	s.watches[notify] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watches, notify)
		s.mu.Unlock()
	}()
	s.start(ctx)
	if err := s.synced(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return retry.Permanent(err)
	}
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
			changed()
		}
	}
}

// Snapshot is the informer's nodes as leases.
func (f feed) Snapshot() []leases.Lease { return f.s.snapshot() }

// Remove takes the lease for subnet off the node that holds it: the
// annotations a kube subnet manager writes are deleted (the operator's
// node-public-ip and *-overwrite ones are kept). The Node itself stays.
func (s *Store) Remove(ctx context.Context, subnet netip.Prefix) error {
	nodes, err := s.listNodes(ctx)
	if err != nil {
		return err
	}
	// The Node holding the subnet; this node's own first, since a podCIDR
	// may be assigned twice and the other Node's annotations are not ours.
	holder := ""
	for _, o := range nodes {
		if n, ok := o.(*node); ok {
			// A lease refused for its values (a garbled public-ip) is
			// listed under its subnet, and removable by it.
			if l, ok := s.ann.leaseOf(n, s.cfg.DualStack); ok && l.Subnet == subnet &&
				(holder == "" || n.name == s.cfg.NodeName) {
				holder = n.name
			}
		}
	}
	if holder == "" {
		return fmt.Errorf("%s: %w", subnet, leases.ErrNotFound)
	}
	del := map[string]*string{}
	for _, k := range []string{s.ann.SubnetKubeManaged, s.ann.BackendType, s.ann.BackendData, s.ann.BackendV6Data, s.ann.PublicIP, s.ann.PublicIPv6} {
		del[k] = nil
	}
	return s.patchAnnotations(ctx, holder, del)
}

// SetNetworkAvailable sets this node's NetworkUnavailable condition to
// False with reason FlannelIsUp, the patch flanneld sends once its
// backend runs (--set-node-network-unavailable).
func (s *Store) SetNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	cond := []corev1.NodeCondition{{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		Reason:             "FlannelIsUp",
		Message:            "Flannel is running on this node",
		LastTransitionTime: now,
		LastHeartbeatTime:  now,
	}}
	raw, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": cond}})
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.PatchNodeStatus(ctx, s.cfg.NodeName, types.StrategicMergePatchType, raw); err != nil {
		return fmt.Errorf("set node %q NetworkUnavailable=False: %w", s.cfg.NodeName, err)
	}
	return nil
}

// NodePublicIP returns the addresses an operator chose for this node with
// the node-public-ip and node-public-ipv6 annotations (zero when unset),
// which flanneld takes over --public-ip and --public-ipv6.
func (s *Store) NodePublicIP(ctx context.Context) (v4, v6 netip.Addr, err error) {
	n, err := s.getNode(ctx)
	if err != nil {
		return v4, v6, err
	}
	if v4, err = parseAddr(s.ann.NodePublicIP, n.Annotations[s.ann.NodePublicIP]); err != nil {
		return v4, v6, err
	}
	v6, err = parseAddr(s.ann.NodePublicIPv6, n.Annotations[s.ann.NodePublicIPv6])
	return v4, v6, err
}
