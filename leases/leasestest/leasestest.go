// Package leasestest is an in-memory leases.Store for tests of pure logic,
// with failures a test injects: the next n calls of an operation fail,
// calls of an operation are slow, a running Watch breaks. It allocates
// with leases.PickFree and takes back a lease by PublicIP, like the real
// stores. Acquire and Renew set Expiration a TTL ahead, but nothing
// expires: leases live until removed.
package leasestest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flexhook/flexhook/leases"
)

// Operations a failure or a delay can be injected into.
const (
	OpAcquire = "Acquire"
	OpRenew   = "Renew"
	OpList    = "List"
	OpWatch   = "Watch"
	OpRemove  = "Remove"
)

// ErrInjected is what injected failures wrap.
var ErrInjected = errors.New("injected store failure")

var _ leases.Store = (*Store)(nil)

// Store is an in-memory lease store. The zero value is not usable: call New.
type Store struct {
	// TTL is how far ahead Acquire and Renew put Expiration (default 24h);
	// set it before use.
	TTL time.Duration

	mu       sync.Mutex
	leases   map[string]leases.Lease // by key
	fail     map[string][]error      // per op, consumed one per call
	delay    map[string]time.Duration
	calls    map[string]int
	watchers map[chan struct{}]struct{}
	broken   chan struct{} // closed to break every running Watch
}

// New returns an empty store.
func New() *Store {
	return &Store{
		TTL:      leases.DefaultTTL,
		leases:   map[string]leases.Lease{},
		fail:     map[string][]error{},
		delay:    map[string]time.Duration{},
		calls:    map[string]int{},
		watchers: map[chan struct{}]struct{}{},
		broken:   make(chan struct{}),
	}
}

// Fail makes the next n calls of op fail with an error wrapping err (and
// ErrInjected).
func (s *Store) Fail(op string, n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fail[op] = append(s.fail[op], fmt.Errorf("%s: %w (%w)", op, err, ErrInjected))
	}
}

// Slow makes every call of op take d, or until its context is done (0:
// not slow).
func (s *Store) Slow(op string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay[op] = d
}

// Calls returns how many times op was called.
func (s *Store) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// BreakWatch makes every running Watch return an error.
func (s *Store) BreakWatch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.broken)
	s.broken = make(chan struct{})
}

// Put writes l as another node would (no checks), and notifies watchers.
func (s *Store) Put(l leases.Lease) {
	s.mu.Lock()
	if l.Key == "" {
		l.Key = leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	}
	s.leases[l.Key] = l
	s.notifyLocked()
	s.mu.Unlock()
}

// begin accounts for a call of op: its delay, then its injected failure.
func (s *Store) begin(ctx context.Context, op string) error {
	s.mu.Lock()
	s.calls[op]++
	d := s.delay[op]
	s.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errs := s.fail[op]; len(errs) > 0 {
		s.fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

func (s *Store) notifyLocked() {
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *Store) snapshotLocked() []leases.Lease {
	out := make([]leases.Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, leases.Compare)
	return out
}

// Acquire takes back the lease carrying attrs' owner address, else takes
// the first free subnet of r, in range order: deterministic, so that tests
// putting peers on fixed subnets never find their own lease among them
// (10.50.1.0/24 is the first of 10.50.0.0/16).
func (s *Store) Acquire(ctx context.Context, r leases.Range, attrs leases.Attrs) (leases.Lease, error) {
	if err := s.begin(ctx, OpAcquire); err != nil {
		return leases.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snapshotLocked()
	if own, ok := leases.FindByPublicIP(snap, attrs.Owner()); ok {
		own.Attrs = attrs
		own.Expiration = time.Now().Add(s.TTL)
		s.leases[own.Key] = own
		s.notifyLocked()
		return own, nil
	}
	v4, v6, err := firstFree(r, snap)
	if err != nil {
		return leases.Lease{}, err
	}
	l := leases.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs, Key: leases.SubnetKey(v4, v6), Expiration: time.Now().Add(s.TTL)}
	s.leases[l.Key] = l
	s.notifyLocked()
	return l, nil
}

// firstFree is the first candidate of r no lease of taken overlaps.
func firstFree(r leases.Range, taken []leases.Lease) (v4, v6 netip.Prefix, err error) {
	for i := range r.Len() {
		v4, v6 = r.Nth(i)
		free := true
		for _, l := range taken {
			if l.Subnet.Overlaps(v4) || v6.IsValid() && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Overlaps(v6) {
				free = false
				break
			}
		}
		if free {
			return v4, v6, nil
		}
	}
	return netip.Prefix{}, netip.Prefix{}, leases.ErrNoFreeSubnet
}

// Renew rewrites l's attrs; ErrLeaseGone when its key is gone or holds
// another node's lease.
func (s *Store) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	if err := s.begin(ctx, OpRenew); err != nil {
		return leases.Lease{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	cur, ok := s.leases[key]
	if !ok || cur.Attrs.Owner() != l.Attrs.Owner() {
		return leases.Lease{}, fmt.Errorf("renew %s: %w", key, leases.ErrLeaseGone)
	}
	l.Key = key
	l.Expiration = time.Now().Add(s.TTL)
	s.leases[key] = l
	return l, nil
}

// List returns every lease.
func (s *Store) List(ctx context.Context) ([]leases.Lease, error) {
	if err := s.begin(ctx, OpList); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(), nil
}

// Watch sends the leases at the start and after every change until ctx is
// done (nil) or BreakWatch (an error).
func (s *Store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	if err := s.begin(ctx, OpWatch); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[ch] = struct{}{}
	broken := s.broken
	snap := s.snapshotLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()
	for {
		select {
		case out <- snap:
		case <-ctx.Done():
			return nil
		case <-broken:
			return fmt.Errorf("watch: broken (%w)", ErrInjected)
		}
		select {
		case <-ch:
			s.mu.Lock()
			snap = s.snapshotLocked()
			s.mu.Unlock()
		case <-ctx.Done():
			return nil
		case <-broken:
			return fmt.Errorf("watch: broken (%w)", ErrInjected)
		}
	}
}

// Remove deletes the lease of subnet.
func (s *Store) Remove(ctx context.Context, subnet netip.Prefix) error {
	if err := s.begin(ctx, OpRemove); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := false
	for k, l := range s.leases {
		if l.Subnet == subnet.Masked() {
			delete(s.leases, k)
			removed = true
		}
	}
	if !removed {
		return fmt.Errorf("remove %s: %w", subnet, leases.ErrNotFound)
	}
	s.notifyLocked()
	return nil
}

// Close does nothing.
func (s *Store) Close() error { return nil }
