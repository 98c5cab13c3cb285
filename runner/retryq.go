package runner

import (
	"errors"
	"net/netip"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/runner/shell"
)

// failure is the retry state of one subnet whose hook failed.
type failure struct {
	hook     hooks.Kind
	err      error
	attempts int
	since    time.Time
	next     time.Time
	conflict string // the shell.ConflictError reason, when that stopped the hook
}

// retryQueue is the per-subnet retry state: a subnet whose hook failed
// waits for its backoff before any of its hooks runs again, without
// holding up the others (client-go's workqueue, per key).
type retryQueue struct {
	backoff retry.Backoff
	failing map[netip.Prefix]*failure
}

func newRetryQueue(b retry.Backoff) *retryQueue {
	return &retryQueue{backoff: b, failing: map[netip.Prefix]*failure{}}
}

// due reports whether subnet s may run its hooks at now.
func (q *retryQueue) due(s netip.Prefix, now time.Time) bool {
	f := q.failing[s]
	return f == nil || !now.Before(f.next)
}

// retrying reports whether s has failed and waits or waited for a retry.
func (q *retryQueue) retrying(s netip.Prefix) bool { return q.failing[s] != nil }

// fail records a failure of hook k for s and returns its state.
func (q *retryQueue) fail(s netip.Prefix, k hooks.Kind, err error, now time.Time) *failure {
	f := q.failing[s]
	if f == nil {
		f = &failure{since: now}
		q.failing[s] = f
	}
	f.attempts++
	f.hook, f.err = k, err
	f.conflict = ""
	if ce := (*shell.ConflictError)(nil); errors.As(err, &ce) {
		f.conflict = ce.Reason
	}
	f.next = now.Add(q.backoff.Delay(f.attempts))
	return f
}

// forget drops s's retry state (its hooks succeeded, or it has nothing
// left to do, or its lease changed and is retried at once). It reports
// whether s was failing.
func (q *retryQueue) forget(s netip.Prefix) bool {
	_, ok := q.failing[s]
	delete(q.failing, s)
	return ok
}

// next returns the earliest pending retry (zero: none).
func (q *retryQueue) next() time.Time { return q.nextAfter(time.Time{}) }

// nextAfter returns the earliest pending retry later than now (zero:
// none).
func (q *retryQueue) nextAfter(now time.Time) time.Time {
	var first time.Time
	for _, f := range q.failing {
		if f.next.After(now) && (first.IsZero() || f.next.Before(first)) {
			first = f.next
		}
	}
	return first
}

// oldest returns since when the longest-failing subnet fails (zero: none).
func (q *retryQueue) oldest() time.Time {
	var first time.Time
	for _, f := range q.failing {
		if first.IsZero() || f.since.Before(first) {
			first = f.since
		}
	}
	return first
}

func (q *retryQueue) len() int { return len(q.failing) }

// conflicts counts the failing subnets stopped by a conflict, by reason.
func (q *retryQueue) conflicts() map[string]int {
	out := map[string]int{}
	for _, f := range q.failing {
		if f.conflict != "" {
			out[f.conflict]++
		}
	}
	return out
}

// status lists the failing subnets for status.json, in subnet order.
func (q *retryQueue) status() []Failure {
	out := []Failure{}
	for _, s := range sortedSubnets(q.failing) {
		f := q.failing[s]
		out = append(out, Failure{
			Subnet: s, Hook: f.hook.String(), Error: f.err.Error(),
			Attempts: f.attempts, Since: f.since.UTC(), NextRetry: f.next.UTC(), Conflict: f.conflict,
		})
	}
	return out
}
