package metrics

import (
	"context"
	"net/netip"

	"github.com/flexhook/flexhook/leases"
)

// store counts the calls of a leases.Store and their errors.
type store struct {
	s    leases.Store
	m    *Metrics
	name string
}

var _ leases.Store = (*store)(nil)

// Store returns s with its calls counted under store=name ("file",
// "etcd"); a nil m returns s itself.
func (m *Metrics) Store(s leases.Store, name string) leases.Store {
	if m == nil {
		return s
	}
	return &store{s: s, m: m, name: name}
}

func (s *store) Acquire(ctx context.Context, r leases.Range, a leases.Attrs) (leases.Lease, error) {
	l, err := s.s.Acquire(ctx, r, a)
	s.m.StoreOp(s.name, "acquire", err)
	return l, err
}

func (s *store) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	nl, err := s.s.Renew(ctx, l)
	s.m.StoreOp(s.name, "renew", err)
	return nl, err
}

func (s *store) List(ctx context.Context) ([]leases.Lease, error) {
	ls, err := s.s.List(ctx)
	s.m.StoreOp(s.name, "list", err)
	return ls, err
}

// Watch counts each watch (re)start, and as an error one that ends in
// failure.
func (s *store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	err := s.s.Watch(ctx, out)
	s.m.StoreOp(s.name, "watch", err)
	return err
}

func (s *store) Remove(ctx context.Context, subnet netip.Prefix) error {
	err := s.s.Remove(ctx, subnet)
	s.m.StoreOp(s.name, "remove", err)
	return err
}

func (s *store) Close() error { return s.s.Close() }

// Unwrap returns the counted store (leases.As looks through it).
func (s *store) Unwrap() leases.Store { return s.s }
