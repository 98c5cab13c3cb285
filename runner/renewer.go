package runner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// renewer keeps the own lease alive. Each renewal runs in its own
// goroutine, bounded by the store timeout, so that hooks, retries and
// status go on while the store is slow or partitioned; its outcome comes
// back on results, for the loop to hand to done.
type renewer struct {
	store   leases.Store
	timeout time.Duration // each Renew call's
	margin  time.Duration // renew this long before the expiration
	backoff retry.Sequence
	timer   *time.Timer // fires when a renewal is due
	results chan renewResult
	busy    bool // a renewal is in flight
	failing bool // the last renewal failed; its retry is armed
	wg      sync.WaitGroup
	log     *slog.Logger
	metrics *metrics.Metrics
}

type renewResult struct {
	lease leases.Lease
	err   error
}

func newRenewer(store leases.Store, timeout, margin time.Duration, b retry.Backoff, log *slog.Logger, m *metrics.Metrics) *renewer {
	return &renewer{store: store, timeout: timeout, margin: margin, backoff: retry.Sequence{Backoff: b},
		timer: stoppedTimer(), results: make(chan renewResult, 1), log: log, metrics: m}
}

// schedule arms the timer at the lease's Expiration − margin (or halfway
// to the expiration when the margin is longer than what is left).
func (r *renewer) schedule(own leases.Lease) {
	exp := own.Expiration
	if exp.IsZero() {
		exp = time.Now().Add(leases.DefaultTTL)
	}
	d := time.Until(exp.Add(-r.margin))
	if d <= 0 {
		d = time.Until(exp) / 2
	}
	r.timer.Reset(max(d, r.backoff.Backoff.Initial))
}

// start renews own in the background unless a renewal is in flight.
func (r *renewer) start(ctx context.Context, own leases.Lease) {
	if r.busy {
		return
	}
	r.busy = true
	r.wg.Go(func() {
		rctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		nl, err := r.store.Renew(rctx, own)
		r.results <- renewResult{nl, err} // buffered: one renewal at a time
	})
}

// done takes a renewal's outcome: the renewed lease (ok), or the error
// wrapping leases.ErrLeaseGone when the lease is gone. Other failures (a
// timeout too) are logged with their cause and retried with backoff.
func (r *renewer) done(ctx context.Context, res renewResult, subnet any) (leases.Lease, bool, error) {
	r.busy = false
	switch {
	case res.err == nil:
		r.metrics.Renewed(nil, res.lease.Expiration)
		r.backoff.Reset()
		r.failing = false
		r.log.Debug("lease renewed", "subnet", res.lease.Subnet, "expires", res.lease.Expiration)
		r.schedule(res.lease)
		return res.lease, true, nil
	case errors.Is(res.err, leases.ErrLeaseGone):
		return leases.Lease{}, false, res.err
	case ctx.Err() != nil:
		return leases.Lease{}, false, nil
	}
	r.metrics.Renewed(res.err, time.Time{})
	d := r.backoff.Next()
	r.failing = true
	r.log.Error("renew lease failed; retrying", "subnet", subnet, "error", res.err, "retry_in", d)
	r.timer.Reset(d)
	return leases.Lease{}, false, nil
}

// stop stops the timer and waits for a renewal in flight (it ends with
// the context).
func (r *renewer) stop() {
	r.timer.Stop()
	r.wg.Wait()
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
