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
	// After is the clock (default time.After); tests make it fire at once.
	After func(time.Duration) <-chan time.Time
}

// Delay returns the wait before retry number attempt (1-based).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
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

// Do calls fn until it returns nil, returns an error wrapped by
// Permanent (Do returns the inner error), or ctx is done (Do returns the
// context's error joined with fn's last). Between attempts it waits the
// backoff, telling onRetry (which may be nil) the attempt that failed,
// its error and the wait.
func Do(ctx context.Context, b Backoff, fn func(context.Context) error, onRetry func(attempt int, err error, wait time.Duration)) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		d := b.Delay(attempt)
		if onRetry != nil {
			onRetry(attempt, err, d)
		}
		if serr := b.Sleep(ctx, d); serr != nil {
			return errors.Join(serr, err)
		}
	}
}
