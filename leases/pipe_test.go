package leases_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// fakeFeed is a Feed driven by the test: each value on steps is the next
// view (nil: break the feed with an error; a permanent error: end).
type fakeFeed struct {
	steps   chan any
	mu      sync.Mutex
	view    []leases.Lease
	follows int
	stopped chan struct{}
}

func (f *fakeFeed) Follow(ctx context.Context, changed func()) error {
	f.mu.Lock()
	f.follows++
	f.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			close(f.stopped)
			return nil
		case s := <-f.steps:
			switch v := s.(type) {
			case error:
				return v
			case []leases.Lease:
				f.mu.Lock()
				f.view = v
				f.mu.Unlock()
				changed()
			}
		}
	}
}

func (f *fakeFeed) Snapshot() []leases.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view
}

func set(subnets ...string) []leases.Lease {
	out := []leases.Lease{}
	for _, s := range subnets {
		out = append(out, leases.Lease{Subnet: netip.MustParsePrefix(s), Attrs: leases.Attrs{BackendType: "extension"}})
	}
	return out
}

func TestPipe(t *testing.T) {
	f := &fakeFeed{steps: make(chan any), stopped: make(chan struct{})}
	out := make(chan []leases.Lease)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	p := leases.Pipe{Backoff: retry.Backoff{Initial: time.Millisecond, Max: time.Millisecond}}
	go func() { done <- p.Run(ctx, out, f) }()

	f.steps <- set("10.50.1.0/24")
	assert.Equal(t, set("10.50.1.0/24"), <-out, "the first listing goes at once")
	same := set("10.50.1.0/24")
	same[0].Expiration = time.Now() // a renewal: no change
	f.steps <- same
	f.steps <- set("10.50.1.0/24", "10.50.2.0/24")
	assert.Equal(t, set("10.50.1.0/24", "10.50.2.0/24"), <-out, "an unchanged snapshot is not sent")

	f.steps <- errors.New("watch broke") // the feed is followed again
	f.steps <- set("10.50.2.0/24")
	assert.Equal(t, set("10.50.2.0/24"), <-out, "the listing after a break")
	f.mu.Lock()
	assert.Equal(t, 2, f.follows)
	f.mu.Unlock()

	cancel()
	require.NoError(t, <-done)
	<-f.stopped // Follow ended with Run
}

func TestPipeEndsOnPermanentError(t *testing.T) {
	closed := errors.New("store closed")
	f := &fakeFeed{steps: make(chan any, 2), stopped: make(chan struct{})}
	f.steps <- set("10.50.1.0/24")
	f.steps <- retry.Permanent(closed)
	out := make(chan []leases.Lease, 1)
	err := leases.Pipe{}.Run(t.Context(), out, f)
	assert.ErrorIs(t, err, closed)
}
