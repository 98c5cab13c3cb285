package runner

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// hookFunc runs SubnetAddCommand or SubnetRemoveCommand for one lease
// version (its BackendData on stdin).
type hookFunc func(ctx context.Context, k hooks.Kind, l leases.Lease) error

// core is the engine's synchronous heart, with no goroutine or timer of
// its own, so that the simulation test can drive it step by step and
// crash it anywhere: it takes store snapshots (through admission) and
// runs batches of hooks (step) that bring the kernel to the desired
// state, keeping the journal's rule (intent before effect) and the retry
// queue. The loop feeds it events and timers.
type core struct {
	run     hookFunc
	journal *journal
	queue   *retryQueue
	adm     *admission
	// desired holds the admitted remote leases of the last snapshot,
	// applied the versions added since the start and not removed since;
	// they share their versions with each other and the journal (intern).
	desired  leaseSet
	applied  map[netip.Prefix]*journalLease
	resync   map[netip.Prefix]bool // applied leases whose Add runs again
	parallel int
	log      *slog.Logger
	metrics  *metrics.Metrics
	// intent is the state of recording intent: its last error (nil: fine)
	// and when to try again.
	intent   intentState
	synced   bool // a snapshot came
	changed  bool // what status.json shows changed (take with takeChanged)
	interval retry.Backoff
	owners   interface{ Release(owner string) } // nil: no ownership table
	// progress, when set, is told after each unit of a batch how far its
	// phase ("remove", then "add") got; it runs in the calling goroutine.
	progress func(phase string, done, total int)
}

type intentState struct {
	err      error
	attempts int
	next     time.Time
}

func newCore(run hookFunc, j *journal, b retry.Backoff, parallel int, log *slog.Logger, m *metrics.Metrics) *core {
	return &core{
		run: run, journal: j, queue: newRetryQueue(b), adm: newAdmission(log, m),
		applied: map[netip.Prefix]*journalLease{},
		resync:  map[netip.Prefix]bool{}, parallel: max(parallel, 1), log: log, metrics: m, interval: b,
	}
}

// snapshot takes a full store snapshot, admitted under p, as the desired
// state. A subnet whose lease came, went or changed is retried at once.
func (c *core) snapshot(p leases.Policy, snap []leases.Lease, now time.Time) {
	admitted, changed := c.adm.admit(p, snap, c.incumbent, now)
	desired := make(leaseSet, 0, len(admitted))
	for _, l := range admitted {
		d := c.intern(l)
		if old, ok := c.desired.get(d.Subnet); !ok || !sameLease(old, d) {
			c.queue.forget(d.Subnet)
		}
		desired = append(desired, d)
	}
	desired.sort()
	for _, old := range c.desired {
		if _, ok := desired.get(old.Subnet); !ok {
			c.queue.forget(old.Subnet)
		}
	}
	c.desired, c.synced = desired, true
	c.changed = c.changed || changed
}

// incumbent is the version of subnet s admitted before, for admission:
// the desired one, else the applied one.
func (c *core) incumbent(s netip.Prefix) (leases.Lease, bool) {
	if v, ok := c.desired.get(s); ok {
		return v.lease(), true
	}
	if v, ok := c.applied[s]; ok {
		return v.lease(), true
	}
	return leases.Lease{}, false
}

// intern returns l's version as the core already holds it (desired,
// applied or in the journal), else a new one: a lease that stays the
// same from snapshot to snapshot is held once, whatever holds it.
func (c *core) intern(l leases.Lease) *journalLease {
	v := journalEntry(l)
	if d, ok := c.desired.get(v.Subnet); ok && *d == v {
		return d
	}
	if a, ok := c.applied[v.Subnet]; ok && *a == v {
		return a
	}
	if i := c.journal.find(v); i >= 0 {
		return c.journal.versions()[v.Subnet][i]
	}
	return &v
}

// resyncAll marks every applied lease for another Add.
func (c *core) resyncAll() {
	for s := range c.applied {
		c.resync[s] = true
	}
}

// stepResult sums up one step.
type stepResult struct {
	hooks, failed int
	subnets       int       // subnets that ran hooks
	retryAt       time.Time // the earliest retry still pending (zero: none)
}

// step runs one batch: every due Remove (of any subnet) first, then every
// due Add whose subnet has no Remove pending, once its version is in the
// journal. Each subnet's Removes run in order in one worker, up to
// parallel subnets at once; the Adds likewise. It stops early, recording
// nothing more, when ctx is done.
func (c *core) step(ctx context.Context, now time.Time) stepResult {
	var res stepResult
	if !c.synced { // without a snapshot, everything would look gone
		return res
	}
	for s := range c.resync {
		a, ok := c.applied[s]
		d, want := c.desired.get(s)
		if !ok || !want || !sameLease(a, d) {
			delete(c.resync, s)
		}
	}
	removes, _ := reconcile(c.desired, c.journal.versions(), c.applied, c.resync)
	var units [][]op // each a piece of removes or adds
	for i := 0; i < len(removes); {
		s, j := removes[i].v.Subnet, i+1
		for j < len(removes) && removes[j].v.Subnet == s {
			j++
		}
		if c.queue.due(s, now) {
			units = append(units, removes[i:j:j])
		}
		i = j
	}
	c.runUnits(ctx, "remove", units, now, &res)
	if ctx.Err() != nil {
		return res
	}

	pending, adds := reconcile(c.desired, c.journal.versions(), c.applied, c.resync)
	units = slices.Grow(units[:0], len(adds))
	ready := make([]*journalLease, 0, len(adds))
	for i, a := range adds {
		if !c.queue.due(a.v.Subnet, now) || heldBack(a, pending) {
			continue
		}
		units = append(units, adds[i:i+1:i+1])
		ready = append(ready, a.v)
	}
	if len(adds) == 0 && c.intent.err != nil { // nothing waits for intent any more
		c.intent = intentState{}
		c.changed = true
		c.metrics.JournalFailing(false)
	}
	if len(ready) > 0 && !c.recordIntent(ready, now) {
		units = nil
	}
	c.runUnits(ctx, "add", units, now, &res)
	res.retryAt = c.queue.next()
	if c.intent.err != nil {
		// The Adds held back by the journal are due by the queue, but
		// wait for the intent's own backoff: no turn may come sooner.
		res.retryAt = c.queue.nextAfter(now)
		if res.retryAt.IsZero() || c.intent.next.Before(res.retryAt) {
			res.retryAt = c.intent.next
		}
	}
	return res
}

// recordIntent puts the versions about to be added into the journal. If
// that fails no Add runs: it is tried again after a backoff, and status
// says why.
func (c *core) recordIntent(ls []*journalLease, now time.Time) bool {
	err := c.journal.intend(ls)
	if err == nil {
		if c.intent.err != nil {
			c.log.Info("journal: intent recorded again; Adds run")
			c.intent = intentState{}
			c.changed = true
			c.metrics.JournalFailing(false)
		}
		return true
	}
	c.intent.attempts++
	c.intent.err = err
	d := c.interval.Delay(c.intent.attempts)
	c.intent.next = now.Add(d)
	c.changed = true
	c.metrics.JournalFailing(true)
	c.log.Error("journal: cannot record intent, so no Add runs", "error", err, "adds", len(ls), "retry_in", d)
	return false
}

// outcome is what running one unit of ops did: the first done ops
// succeeded; err, if set, is the failure of ops[done].
type outcome struct {
	ops  []op
	done int
	err  error
}

// runUnits runs units (each a subnet's ops, in order, stopping at the
// first failure) with up to parallel at once; only the calling goroutine
// records outcomes (and tells progress).
func (c *core) runUnits(ctx context.Context, phase string, units [][]op, now time.Time, res *stepResult) {
	if len(units) == 0 {
		return
	}
	retried := make([]bool, len(units)) // read here: workers must not touch the queue
	for i, u := range units {
		retried[i] = c.queue.retrying(u[0].v.Subnet)
	}
	runOne := func(i int) outcome {
		u := units[i]
		o := outcome{ops: u}
		if retried[i] {
			c.metrics.HookRetried(u[0].kind)
		}
		for _, x := range u {
			if err := c.run(ctx, x.kind, x.v.lease()); err != nil {
				o.err = err
				return o
			}
			o.done++
		}
		return o
	}
	res.subnets += len(units)
	done := 0
	record := func(o outcome) {
		c.record(ctx, o, now, res)
		done++
		if c.progress != nil {
			c.progress(phase, done, len(units))
		}
	}
	n := min(c.parallel, len(units))
	if n <= 1 {
		for i := range units {
			if ctx.Err() != nil {
				return
			}
			record(runOne(i))
		}
		return
	}
	work := make(chan int)
	results := make(chan outcome)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for i := range work {
				results <- runOne(i)
			}
		})
	}
	go func() {
		defer close(work)
		for i := range units {
			if ctx.Err() != nil {
				return
			}
			work <- i
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	for o := range results {
		record(o)
	}
}

// record takes a unit's outcome into the state: journal, applied,
// resync and the retry queue.
func (c *core) record(ctx context.Context, o outcome, now time.Time, res *stepResult) {
	s := o.ops[0].v.Subnet
	res.hooks += o.done
	for _, x := range o.ops[:o.done] {
		c.log.Debug("hook applied", "hook", x.kind.String(), "subnet", s, "public_ip", x.v.PublicIP)
		if x.kind == hooks.SubnetRemove {
			if err := c.journal.forget(x.v); err != nil {
				c.log.Error("journal: a Remove will run again after a restart", "subnet", s, "error", err)
			}
			if c.owners != nil && !c.journal.hasSubnet(s) {
				c.owners.Release(s.String())
			}
			if a, ok := c.applied[s]; ok && sameLease(a, x.v) {
				delete(c.applied, s)
			}
			c.unapplySameNode(x.v)
		} else {
			c.applied[s] = x.v
			delete(c.resync, s)
		}
		c.changed = true
	}
	switch {
	case o.err != nil && ctx.Err() != nil:
		// interrupted by shutdown, not a hook failure
	case o.err != nil:
		res.hooks++
		res.failed++
		k := o.ops[o.done].kind
		// A failed Remove may have got half-way: its version is no longer
		// known to be in the kernel, and is added again if it comes back;
		// the same node's other leases may have lost something too.
		if a, ok := c.applied[s]; ok && sameLease(a, o.ops[o.done].v) {
			delete(c.applied, s)
		}
		if k == hooks.SubnetRemove {
			c.unapplySameNode(o.ops[o.done].v)
		}
		f := c.queue.fail(s, k, o.err, now)
		c.changed = true
		if f.conflict != "" {
			c.log.Error("hook stopped: its lease conflicts with what another owns; will retry", "hook", k.String(),
				"subnet", s, "conflict", f.conflict, "attempt", f.attempts, "retry_in", f.next.Sub(now), "error", o.err)
			return
		}
		c.log.Error("hook failed; will retry", "hook", k.String(), "subnet", s,
			"attempt", f.attempts, "retry_in", f.next.Sub(now), "error", o.err)
	default:
		if c.queue.forget(s) {
			c.changed = true
			c.log.Info("subnet recovered", "subnet", s)
		}
	}
}

// unapplySameNode makes the applied leases of r's node in other subnets
// run their Add again: a Remove of r that ran (or began) after their Add,
// say of a key that moved while its old Remove kept failing, may have
// undone it (`wg set ... peer KEY remove`).
func (c *core) unapplySameNode(r *journalLease) {
	for t, a := range c.applied {
		if sameNode(a, r) {
			delete(c.applied, t)
		}
	}
}

// inSync reports whether every admitted lease is applied and nothing is
// left to remove, fail or retry.
func (c *core) inSync() bool {
	if !c.synced || c.queue.len() > 0 || c.intent.err != nil {
		return false
	}
	// reconcile(c.desired, c.journal.versions(), c.applied, nil) finds
	// nothing to do, without making its lists.
	for s, vs := range c.journal.versions() {
		d, ok := c.desired.get(s)
		for _, v := range vs {
			if !ok || !sameLease(d, v) {
				return false
			}
		}
	}
	for _, d := range c.desired {
		if a, ok := c.applied[d.Subnet]; !ok || !sameLease(a, d) {
			return false
		}
	}
	return true
}

// takeChanged reports whether what status.json shows changed since the
// last call.
func (c *core) takeChanged() bool {
	ch := c.changed
	c.changed = false
	return ch
}

// journalProblem is what status.json's Journal says.
func (c *core) journalProblem() string {
	switch {
	case c.intent.err != nil:
		return "cannot record intent, so no Add runs: " + c.intent.err.Error()
	default:
		return c.journal.problem
	}
}
