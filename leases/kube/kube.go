// Package kube is the lease store of flanneld's kube subnet manager
// (--kube-subnet-mgr): a node's subnet is its Node's spec.podCIDRs, given
// by Kubernetes, and its lease is kept in the Node's annotations, written
// through the nodes/status subresource exactly as flanneld writes them,
// so that flexhook and flanneld nodes in one cluster run each other's
// hooks. Remote leases come from a node informer; nodes without the
// kube-subnet-manager annotation are not leases. There is no TTL: a
// lease ends when its Node is deleted (or its annotations removed).
//
//	st, err := kube.New(ctx, kube.Config{Client: cs, NodeName: "node-1"})
package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Config says which cluster and which node.
type Config struct {
	Client API // required: NewAPI (kube.Client), or any API
	// NodeName is this node's Node. Without it the store only lists,
	// watches and removes leases; Acquire and the calls about this node
	// fail.
	NodeName string
	// Prefix is flanneld's --kube-annotation-prefix; DefaultPrefix when
	// empty.
	Prefix string
	// DualStack reads and publishes the IPv6 half of leases (IPv6
	// podCIDRs and public-ipv6). Off, IPv6 podCIDRs are ignored, as
	// flanneld's extension backend ignores them.
	DualStack bool
	// PreStartup says a PreStartupCommand runs: flanneld's extension
	// backend then publishes BackendData as a JSON string even when it is
	// empty (""), and without one as nothing. Set it for byte-equal
	// annotations; readers take both as no data.
	PreStartup bool
}

// Option configures New.
type Option func(*options) error

type options struct {
	log            *slog.Logger
	quiet, maxWait time.Duration
}

// Logger sets the logger (nil or not given: slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			l = slog.Default()
		}
		o.log = l
		return nil
	}
}

// Quiet sets how long Watch waits after a node change for more
// changes before it sends a snapshot (default 20ms), and how long at most
// after the first of them (default 250ms).
func Quiet(quiet, maxWait time.Duration) Option {
	return func(o *options) error {
		if quiet < 0 || maxWait < quiet {
			return fmt.Errorf("Quiet(%s, %s): want 0 <= quiet <= maxWait", quiet, maxWait)
		}
		o.quiet, o.maxWait = quiet, maxWait
		return nil
	}
}

// Store is the kube lease store. It is safe for concurrent use.
type Store struct {
	cfg Config
	ann Annotations
	o   options

	startInformer sync.Once
	cancel        context.CancelFunc // stops the informer
	done          chan struct{}      // closed when it stopped
	informer      cache.Controller
	nodes         cache.Store

	mu      sync.Mutex
	watches map[chan struct{}]struct{} // one per Watch, told of changes
	own     leases.Attrs               // the attrs last acquired, re-asserted by Renew
}

var (
	_ leases.Store         = (*Store)(nil)
	_ leases.Peeker        = (*Store)(nil)
	_ leases.NodeAnnouncer = (*Store)(nil)
)

// New returns a store for cfg. It does not contact the API server: the
// first call does, and the first Watch starts the node informer, which
// runs until Close.
func New(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube store: no client")
	}
	ann, err := NewAnnotations(cmp.Or(cfg.Prefix, DefaultPrefix))
	if err != nil {
		return nil, fmt.Errorf("kube store: %w", err)
	}
	o := options{log: slog.Default(), quiet: 20 * time.Millisecond, maxWait: 250 * time.Millisecond}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	s := &Store{cfg: cfg, ann: ann, o: o, done: make(chan struct{}), watches: map[chan struct{}]struct{}{}}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) {
			return cfg.Client.ListNodes(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			return cfg.Client.WatchNodes(ctx, lo)
		},
	}
	s.nodes, s.informer = cache.NewInformerWithOptions(cache.InformerOptions{
		// A client that says it cannot do watch-list (client-go's fakes)
		// gets a plain list and watch.
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, cfg.Client),
		ObjectType:    &corev1.Node{},
		// The cache keeps what leases are made of, not what kubelets
		// write: a Node of a 5000-node cluster is ~12 KB of images,
		// conditions and node info, its lease a few hundred bytes.
		Transform: ann.trim,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.changed() },
			UpdateFunc: func(old, cur any) { s.updated(old, cur) },
			DeleteFunc: func(any) { s.changed() },
		},
	})
	return s, nil
}

// start runs the informer once, until Close: it outlives the ctx of
// the Watch that started it (whose values it keeps).
func (s *Store) start(ctx context.Context) {
	s.startInformer.Do(func() {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s.mu.Lock()
		s.cancel = cancel
		s.mu.Unlock()
		go func() {
			defer close(s.done)
			s.informer.RunWithContext(ctx)
		}()
	})
}

// Close stops the informer, if it ran, and waits for it.
func (s *Store) Close() error {
	started := true
	s.startInformer.Do(func() { started = false })
	if started {
		s.mu.Lock()
		cancel := s.cancel
		s.mu.Unlock()
		cancel()
		<-s.done
	}
	return nil
}

// updated tells the watches of a node update that may change its lease:
// kubelets update their Node's status often, and those updates are not
// lease changes.
func (s *Store) updated(old, cur any) {
	o, ok1 := old.(*node)
	n, ok2 := cur.(*node)
	if ok1 && ok2 && o.podCIDR == n.podCIDR && slices.Equal(o.podCIDRs, n.podCIDRs) && sameAnnotations(o, n) {
		return
	}
	s.changed()
}

// sameAnnotations: o and n make the same lease as far as annotations go.
func sameAnnotations(o, n *node) bool {
	for _, i := range []int{annSubnetKubeManaged, annBackendData, annBackendType, annPublicIP, annPublicIPv6} {
		if o.annotation(i) != n.annotation(i) {
			return false
		}
	}
	return true
}

func (s *Store) changed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.watches {
		select {
		case c <- struct{}{}:
		default: // already told
		}
	}
}

// getNode reads this node's Node from the API server (not the cache: a
// lease is acquired on what the server says now).
func (s *Store) getNode(ctx context.Context) (*corev1.Node, error) {
	name := s.cfg.NodeName
	if name == "" {
		return nil, fmt.Errorf("kube store: %w", ErrNoNodeName)
	}
	n, err := s.cfg.Client.GetNode(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get node %q: %w", name, err)
	}
	return n, nil
}

// Acquire returns this node's lease: its Node's pod CIDRs, which must be
// SubnetLen subnets of Network (and with dual stack IPv6SubnetLen
// subnets of IPv6Network; anything else is a permanent error, since
// retrying cannot fix it), with attrs published in its annotations
// (patched only when they differ).
func (s *Store) Acquire(ctx context.Context, r leases.Range, attrs leases.Attrs) (leases.Lease, error) {
	n, l, err := s.ownLease(ctx, r)
	if err != nil {
		return leases.Lease{}, err
	}
	s.mu.Lock()
	s.own = attrs
	s.mu.Unlock()
	return s.publish(ctx, n, l, attrs)
}

// Peek is Acquire that writes nothing: the lease this node would get,
// with attrs as given (a dry-run's own lease).
func (s *Store) Peek(ctx context.Context, r leases.Range, attrs leases.Attrs) (leases.Lease, error) {
	_, l, err := s.ownLease(ctx, r)
	l.Attrs = attrs
	return l, err
}

// ownLease reads this node's Node and the lease its pod CIDRs make in r.
func (s *Store) ownLease(ctx context.Context, r leases.Range) (*corev1.Node, leases.Lease, error) {
	n, err := s.getNode(ctx)
	if err != nil {
		return nil, leases.Lease{}, err
	}
	v4, v6, err := podCIDRs(n.Name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
	if err != nil {
		return nil, leases.Lease{}, err
	}
	if err := fits(n.Name, "", v4, r.Network, r.SubnetLen); err != nil {
		return nil, leases.Lease{}, retry.Permanent(err)
	}
	if r.DualStack() {
		if err := fits(n.Name, "IPv6", v6, r.IPv6Network, r.IPv6SubnetLen); err != nil {
			return nil, leases.Lease{}, retry.Permanent(err)
		}
	} else {
		v6 = netip.Prefix{}
	}
	return n, leases.Lease{Subnet: v4, IPv6Subnet: v6, Key: leases.SubnetKey(v4, v6)}, nil
}

// fits checks a pod CIDR against the network it must be a subnet of.
func fits(node, family string, p, network netip.Prefix, bits int) error {
	name := "Network"
	if family != "" {
		name = family + "Network"
	}
	switch {
	case !p.IsValid():
		return fmt.Errorf("node %q has no %s podCIDR, and %s is %s", node, cmp.Or(family, "IPv4"), name, network)
	case !network.IsValid():
		return fmt.Errorf("node %q: %s is not set", node, name)
	case p.Bits() < network.Bits() || !network.Contains(p.Addr()):
		return fmt.Errorf("podCIDR %s of node %q is outside %s %s", p, node, name, network)
	case p.Bits() != bits:
		return fmt.Errorf("podCIDR %s of node %q is a /%d, but the %s subnet length is %d: set %sSubnetLen to %d in net-conf.json",
			p, node, p.Bits(), name, bits, family, p.Bits())
	}
	return nil
}

// publish patches attrs into n's annotations when they differ and
// returns l with attrs.
func (s *Store) publish(ctx context.Context, n *corev1.Node, l leases.Lease, attrs leases.Attrs) (leases.Lease, error) {
	want, err := s.ann.Published(n.Annotations, attrs, s.cfg.PreStartup)
	if err != nil {
		return leases.Lease{}, err
	}
	if want != nil {
		set := make(map[string]*string, len(want))
		for k, v := range want {
			set[k] = &v
		}
		if err := s.patchAnnotations(ctx, s.cfg.NodeName, set); err != nil {
			return leases.Lease{}, err
		}
		s.o.log.Debug("node annotations patched", "node", s.cfg.NodeName, "annotations", len(want))
	}
	// The hooks get this node's own addresses, as flanneld gives them,
	// even where public-ip-overwrite publishes another.
	l.Attrs = attrs
	return l, nil
}

// patchAnnotations sets (or, for a nil value, removes) annotations of this
// node through the nodes/status subresource, as flanneld does.
func (s *Store) patchAnnotations(ctx context.Context, node string, ann map[string]*string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return err
	}
	if _, err := s.cfg.Client.PatchNodeStatus(ctx, node, types.StrategicMergePatchType, body); err != nil {
		return fmt.Errorf("patch node %q annotations: %w", node, err)
	}
	return nil
}

// Renew re-asserts the lease: the Node must still exist with the same pod
// CIDRs (else the error wraps ErrLeaseGone), and annotations that someone
// changed or removed are written again.
func (s *Store) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	n, err := s.getNode(ctx)
	if apierrors.IsNotFound(err) {
		return leases.Lease{}, fmt.Errorf("node %q was deleted: %w", s.cfg.NodeName, leases.ErrLeaseGone)
	}
	if err != nil {
		return leases.Lease{}, err
	}
	v4, v6, err := podCIDRs(n.Name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("%w: %w", leases.ErrLeaseGone, err)
	}
	if v4 != l.Subnet || l.IPv6Subnet.IsValid() && v6 != l.IPv6Subnet {
		return leases.Lease{}, fmt.Errorf("node %q podCIDRs changed from %s to %s: %w",
			s.cfg.NodeName, leases.SubnetKey(l.Subnet, l.IPv6Subnet), leases.SubnetKey(v4, v6), leases.ErrLeaseGone)
	}
	s.mu.Lock()
	attrs := s.own
	s.mu.Unlock()
	if attrs.BackendType == "" {
		attrs = l.Attrs
	}
	return s.publish(ctx, n, l, attrs)
}
