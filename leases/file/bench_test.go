package file_test

import (
	"fmt"
	"testing"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

// filled returns a store holding n live leases in rangeOf(255).
func filled(b *testing.B, n int) *file.Store {
	b.Helper()
	s, _ := open(b, b.TempDir())
	for i := range n {
		if _, err := s.Acquire(b.Context(), rangeOf(255), attrs(fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250), "data")); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkAcquire measures one new lease among 250 (lock, list, pick,
// atomic write), then its removal.
func BenchmarkAcquire(b *testing.B) {
	s := filled(b, 250)
	ctx := b.Context()
	for b.Loop() {
		l, err := s.Acquire(ctx, rangeOf(255), attrs("198.51.100.1", "new"))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Remove(ctx, l.Subnet); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireReuse measures a restarted node taking its lease back
// among 250.
func BenchmarkAcquireReuse(b *testing.B) {
	s := filled(b, 250)
	ctx := b.Context()
	for b.Loop() {
		if _, err := s.Acquire(ctx, rangeOf(255), attrs("192.0.2.1", "data")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenew measures one renewal (lock, read, atomic write).
func BenchmarkRenew(b *testing.B) {
	s := filled(b, 250)
	ctx := b.Context()
	l, err := s.Acquire(ctx, rangeOf(255), attrs("192.0.2.1", "data"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Renew(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList measures listing 250 leases.
func BenchmarkList(b *testing.B) {
	s := filled(b, 250)
	ctx := b.Context()
	for b.Loop() {
		ls, err := s.List(ctx)
		if err != nil || len(ls) != 250 {
			b.Fatal(len(ls), err)
		}
	}
}

// BenchmarkPickFree measures the pure allocation among 250 taken subnets.
func BenchmarkPickFree(b *testing.B) {
	s := filled(b, 250)
	ls, err := s.List(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := leases.PickFree(rangeOf(255), ls, nil); err != nil {
			b.Fatal(err)
		}
	}
}
