package leases

import (
	"context"
	"net/netip"
)

// The capabilities some stores have beyond Store, each a small interface:
// callers ask with As, never for a concrete store type.

// ConfigStore is a store that keeps the network config beside the leases,
// as flannel does (etcd's <prefix>/config, the file store's <dir>/config).
type ConfigStore interface {
	// Config returns the config's bytes; ErrNotFound when there is none.
	Config(ctx context.Context) ([]byte, error)
}

// Peeker is a store that can say what this node's lease would be without
// writing anything (dry-run): the kube store, whose lease is the Node's
// pod CIDR.
type Peeker interface {
	Peek(ctx context.Context, r Range, attrs Attrs) (Lease, error)
}

// NodeAnnouncer is a store bound to this node's own object in a cluster
// (Kubernetes): the node's public addresses as annotated there (zero when
// not), and a way to say that its network is up.
type NodeAnnouncer interface {
	NodePublicIP(ctx context.Context) (v4, v6 netip.Addr, err error)
	SetNetworkAvailable(ctx context.Context) error
}

// Wrapper is a store that wraps another (metrics' counting store); As
// looks through it.
type Wrapper interface {
	Unwrap() Store
}

// As returns s, or the store it wraps (through any number of Wrappers),
// as capability T.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		w, ok := s.(Wrapper)
		if !ok {
			break
		}
		s = w.Unwrap()
	}
	var zero T
	return zero, false
}
