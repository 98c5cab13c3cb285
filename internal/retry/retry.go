// Package retry is flexhook's one way to wait and try again: exponential
// backoff, a context-aware sleep, and a loop that retries a call until it
// succeeds or the context ends. Its clock can be replaced in tests.
package retry

import (
	"context"
	"errors"
	"time"
)

// Backoff is an exponential delay sequence: Initial, doubling up to Max.
type Backoff struct {
	Initial, Max time.Duration
	// Attempts bounds Do: it gives up after that many failed calls (0: no
	// bound; only the context ends it).
	Attempts int
	// Jitter, when set, turns each delay into the one waited (e.g. a
	// random part of it, so that racing nodes spread out).
	Jitter func(time.Duration) time.Duration
	// After is the clock (default time.After); tests make it fire at once.
	After func(time.Duration) <-chan time.Time
}

// Delay returns the wait before retry number attempt (1-based), jitter
// applied.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter != nil {
		d = b.Jitter(d)
	}
	return d
}

// Sleep waits d, or until ctx is done (returning its error).
func (b Backoff) Sleep(ctx context.Context, d time.Duration) error {
	after := b.After
	if after == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-after(d):
		return nil
	}
}

// Sleep waits d, or until ctx is done (returning its error), on the real
// clock.
func Sleep(ctx context.Context, d time.Duration) error { return Backoff{}.Sleep(ctx, d) }

// Sequence walks a Backoff: Next returns the next delay, Reset starts over.
// For retries a timer drives (a loop's select) rather than Do.
type Sequence struct {
	Backoff
	n int
}

// Next returns the delay before the next retry.
func (s *Sequence) Next() time.Duration {
	s.n++
	return s.Delay(s.n)
}

// Reset starts the sequence over, after a success.
func (s *Sequence) Reset() { s.n = 0 }

// permanent marks an error Do must not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent wraps err so that Do returns it at once instead of retrying.
func Permanent(err error) error { return permanent{err} }

// progress marks an error after which Do starts its backoff over.
type progress struct{ error }

func (p progress) Unwrap() error { return p.error }

// Progress wraps err, a failure that came after the call did useful work
// (a watch that ran a while), so that Do retries it after the initial
// delay again rather than the next longer one.
func Progress(err error) error { return progress{err} }

// Do calls fn until it returns nil, returns an error wrapped by
// Permanent (Do returns the inner error), fails b.Attempts times (Do
// returns the last error), or ctx is done (Do returns the context's error
// joined with fn's last). Between attempts it waits the backoff, telling
// onRetry (which may be nil) the attempt that failed, its error and the
// wait; an error wrapped by Progress starts the backoff over.
func Do(ctx context.Context, b Backoff, fn func(context.Context) error, onRetry func(attempt int, err error, wait time.Duration)) error {
	for attempt, n := 1, 1; ; attempt, n = attempt+1, n+1 {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		var pr progress
		if errors.As(err, &pr) {
			err, n = pr.error, 1
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if b.Attempts > 0 && attempt >= b.Attempts {
			return err
		}
		d := b.Delay(n)
		if onRetry != nil {
			onRetry(attempt, err, d)
		}
		if serr := b.Sleep(ctx, d); serr != nil {
			return errors.Join(serr, err)
		}
	}
}
