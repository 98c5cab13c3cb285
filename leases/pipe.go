package leases

import (
	"context"
	"slices"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
)

// Equal reports whether l and o are the same lease for a watcher: key,
// subnets, attrs and validity; the expiration is not compared (a renewal
// is no change).
func (l Lease) Equal(o Lease) bool {
	return l.Key == o.Key && l.Subnet == o.Subnet && l.IPv6Subnet == o.IPv6Subnet && l.Attrs == o.Attrs &&
		l.Invalid == o.Invalid && l.Problem == o.Problem
}

// SameSet reports whether two sorted lease lists hold equal leases.
func SameSet(a, b []Lease) bool { return slices.EqualFunc(a, b, Lease.Equal) }

// Feed is a store's own half of Watch: it lists the leases and notices
// changes; Pipe, the other half, is the same for every store.
type Feed interface {
	// Follow keeps the feed's view of the store current until ctx is done
	// (it returns nil) or the view breaks (an error: Pipe backs off and
	// calls it again, which lists anew; an error wrapped by
	// retry.Permanent ends Watch, one by retry.Progress restarts the
	// backoff). It calls changed after every change, the first complete
	// listing included.
	Follow(ctx context.Context, changed func()) error
	// Snapshot returns the view as List would list it now, sorted by
	// subnet. Pipe calls it while Follow runs.
	Snapshot() []Lease
}

// Pipe is the shared half of every store's Watch: it runs a Feed,
// batches its changes, drops a snapshot equal to the last one sent,
// resumes the feed after it breaks, and sends.
type Pipe struct {
	// Quiet is how long Pipe waits after a change for more before it
	// sends, and Max how long at most after the first of them (changes
	// that never stop must not hold a snapshot back); zero Quiet sends
	// after every change. The first snapshot goes at once.
	Quiet, Max time.Duration
	// Backoff paces calls of Follow after it broke.
	Backoff retry.Backoff
	// OnRetry, if set, is told each break and the wait before the next
	// Follow (the store logs it in its words).
	OnRetry func(err error, wait time.Duration)
}

// Run is Watch: it sends the leases on out once at the start and again
// after changes, until ctx is done (nil) or the feed fails for good.
func (p Pipe) Run(ctx context.Context, out chan<- []Lease, f Feed) error {
	notify := make(chan struct{}, 1)
	changed := func() {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() {
		followed <- retry.Do(fctx, p.Backoff, func(ctx context.Context) error { return f.Follow(ctx, changed) },
			func(_ int, err error, wait time.Duration) {
				if p.OnRetry != nil {
					p.OnRetry(err, wait)
				}
			})
	}()
	var ended error // Follow's end, once it came (got)
	got := false
	defer func() {
		cancel()
		if !got {
			<-followed // Follow stops with fctx
		}
	}()
	finish := func() error {
		if ctx.Err() != nil {
			return nil
		}
		return ended
	}

	var last []Lease
	sent := false
	send := func() bool {
		snap := f.Snapshot()
		if sent && SameSet(last, snap) {
			return true
		}
		select {
		case out <- snap:
			last, sent = snap, true
			return true
		case <-ctx.Done():
			return false
		case ended = <-followed:
			got = true
			return false
		}
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var first time.Time // of the changes not yet sent
	for {
		select {
		case <-ctx.Done():
			return nil
		case ended = <-followed:
			got = true
			return finish()
		case <-notify:
			if !sent || p.Quiet == 0 {
				if !send() {
					return finish()
				}
				continue
			}
			if first.IsZero() {
				first = time.Now()
			}
			quiet.Reset(max(0, min(p.Quiet, p.Max-time.Since(first))))
		case <-quiet.C:
			first = time.Time{}
			if !send() {
				return finish()
			}
		}
	}
}
