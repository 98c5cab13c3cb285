package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// loop is the watch-and-reconcile phase of Run: it wires the parts (the
// store's watch, the core with its journal and retry queue, the renewer,
// the status writer, subnet.env) to events and timers. Only the goroutine
// running loop.run touches its fields.
type loop struct {
	e        *Engine // hooks, the own lease, ShutdownCommand, config reloads
	core     *core
	log      *slog.Logger
	o        loopOptions
	own      leases.Lease
	status   *statusWriter
	renew    *renewer
	t        loopTimers
	lastSync time.Time // when every admitted lease was last applied
	dirty    bool      // status.json is out of date
	// mtuStale: hooks ran or the config changed since FLANNEL_MTU was
	// last worked out (refreshEnv, with the status flush).
	mtuStale bool
	batch    batchState
}

// batchState is the batch of hooks running now, for progress reports.
type batchState struct {
	start, reported time.Time // zero: no batch runs
	phase           string
	done, total     int
}

// loopTimers are the loop's own timers.
type loopTimers struct {
	retry        *time.Timer // fires at the earliest pending retry
	flush        *time.Timer // fires when status.json is due (flushNow)
	compact      *time.Timer // fires when the journal's rewrite is due (compactNow)
	flushArmed   bool
	compactArmed bool
	compacted    time.Time // the journal's last rewrite
}

// loopOptions are the engine options the loop needs, handed over by Run.
type loopOptions struct {
	readOnly       bool
	stateDir       string
	resyncInterval time.Duration
	backoff        retry.Backoff
	metrics        *metrics.Metrics
	keepOnStop     bool
	progressEvery  time.Duration
}

// statusEvery is the longest status.json goes unwritten.
const statusEvery = 10 * time.Second

// flushDelay is how long a changed status.json waits before it is
// handed to its writer, so that a stream of events costs one rewrite, not
// one per event. The journal is rewritten (its log folded in) only every
// compactEvery, or once its log holds compactLines lines, and when the
// loop stops: until then its log keeps a crash safe.
const (
	flushDelay   = 250 * time.Millisecond
	compactEvery = 30 * time.Second
	compactLines = 4096
)

// newLoop returns the watch loop over journal j.
func (e *Engine) newLoop(j *journal) *loop {
	run := func(ctx context.Context, k hooks.Kind, l leases.Lease) error {
		_, err := e.runHook(ctx, k, l, l.Attrs.BackendData+"\n")
		return err
	}
	b := e.backoff()
	c := newCore(run, j, b, e.o.parallel, e.log, e.o.metrics)
	if e.o.owners != nil {
		c.owners = e.o.owners
	}
	l := &loop{
		e:    e,
		core: c,
		log:  e.log,
		o: loopOptions{readOnly: e.o.readOnly, stateDir: e.o.stateDir, resyncInterval: e.o.timing.resyncInterval,
			backoff: b, metrics: e.o.metrics, keepOnStop: e.o.keepOnStop, progressEvery: e.o.timing.progressEvery},
		renew: newRenewer(e.store, e.o.timing.storeTimeout, e.o.timing.renewMargin, b, e.log, e.o.metrics),
		t:     loopTimers{retry: stoppedTimer(), flush: stoppedTimer(), compact: stoppedTimer(), compacted: time.Now()},
		dirty: true,
	}
	c.progress = l.progress
	return l
}

func (l *loop) run(ctx context.Context) error {
	e := l.e
	l.own, _ = e.Lease()
	if !l.o.readOnly {
		l.renew.schedule(l.own)
		l.status = startStatusWriter(l.o.stateDir, l.log)
	}
	l.writeStatus()

	wctx, stopWatch := context.WithCancel(ctx)
	snaps := make(chan []leases.Lease, 1)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		l.watch(wctx, snaps)
	}()
	// status.json is rewritten at least every statusEvery, so its
	// UpdatedAt shows the loop alive (during a partition too).
	heartbeat := time.NewTicker(statusEvery)
	defer heartbeat.Stop()
	var resync <-chan time.Time
	if d := l.o.resyncInterval; d > 0 {
		tk := time.NewTicker(d)
		defer tk.Stop()
		resync = tk.C
	}
	stop := func() {
		stopWatch()
		<-watchDone
		l.stopAll()
	}

	for {
		l.o.metrics.LoopTurned(time.Now())
		select {
		case <-ctx.Done():
			stop()
			if l.o.keepOnStop {
				l.log.Info("stopped; the backend and the routes stay for the next start (leave to remove them)",
					"subnet", l.own.Subnet)
				return nil
			}
			l.log.Info("shutting down", "subnet", l.own.Subnet)
			return e.shutdown(ctx, l.own)

		case <-e.leave:
			stop()
			l.log.Info("leaving the cluster", "subnet", l.own.Subnet)
			return l.leaveCluster(ctx, true)

		case snap := <-snaps:
			l.snapshot(ctx, newest(snap, snaps))
			l.reconcile(ctx)

		case <-l.t.retry.C:
			l.reconcile(ctx)

		case <-resync:
			l.core.resyncAll()
			l.log.Debug("resync: adding every applied lease again", "leases", len(l.core.resync))
			l.reconcile(ctx)

		case cfg := <-e.reload:
			e.swapConfig(cfg)
			l.mtuStale = true
			l.refreshEnv()
			l.writeStatus()

		case <-l.t.flush.C:
			l.flushNow()

		case <-l.t.compact.C:
			l.compactNow()

		case <-heartbeat.C:
			l.dirty = true
			l.mtuStale = true // a device's MTU may have been changed by hand
			l.refreshEnv()
			l.writeStatus()

		case <-l.renew.timer.C:
			l.renew.start(ctx, l.own)

		case r := <-l.renew.results:
			nl, ok, err := l.renew.done(ctx, r, l.own.Subnet)
			if err != nil {
				stop()
				return l.gone(ctx, err)
			}
			if ok {
				l.own = nl
				e.setOwn(nl)
				l.dirty = true // a new expiry for status.json
			}
			l.writeStatus()
		}
	}
}

// stopAll ends the loop's work once the watch has stopped: the journal
// and status are written, timers stopped, a renewal in flight (which ends
// with the context) waited for.
func (l *loop) stopAll() {
	l.compactNow()
	l.flushNow()
	if l.status != nil {
		l.status.close()
	}
	l.t.retry.Stop()
	l.renew.stop()
}

// newest returns the last snapshot waiting in snaps, or snap: only the
// newest full set matters.
func newest(snap []leases.Lease, snaps <-chan []leases.Lease) []leases.Lease {
	for {
		select {
		case snap = <-snaps:
		default:
			return snap
		}
	}
}

// watch runs store.Watch until ctx is done, restarting it with backoff if
// it fails.
func (l *loop) watch(ctx context.Context, out chan<- []leases.Lease) {
	_ = retry.Do(ctx, l.o.backoff, func(ctx context.Context) error {
		if err := l.e.store.Watch(ctx, out); err != nil || ctx.Err() != nil {
			return err
		}
		return errors.New("watch ended")
	}, func(_ int, err error, wait time.Duration) {
		l.log.Error("lease watch failed; restarting", "error", err, "retry_in", wait)
	}) // ends only with ctx
}

// snapshot takes a full set of leases as the new desired state. When the
// own lease is missing from it (or not ours any more), a Renew confirms
// whether it is gone; the renewal's outcome ends the loop if so.
func (l *loop) snapshot(ctx context.Context, snap []leases.Lease) {
	first := !l.core.synced
	l.core.snapshot(l.e.policy(l.own), snap, time.Now())
	if first {
		l.dirty = true
	}
	if l.o.readOnly || l.renew.failing {
		return
	}
	ownKey := leases.SubnetKey(l.own.Subnet, l.own.IPv6Subnet)
	for _, x := range snap {
		if x.Key == ownKey && x.Invalid == "" && x.Attrs.Owner() == l.own.Attrs.Owner() {
			return
		}
	}
	if !l.renew.busy {
		l.log.Warn("own lease missing from the store or not ours; renewing to confirm", "subnet", l.own.Subnet)
		l.renew.start(ctx, l.own)
	}
}

// gone handles the loss of the own lease: log, ShutdownCommand, error.
func (l *loop) gone(ctx context.Context, cause error) error {
	s := l.own.Subnet
	l.log.Error(fmt.Sprintf("lease for %s was deleted by someone else; shutting down", s), "subnet", s, "error", cause)
	err := fmt.Errorf("lease for %s was deleted by someone else: %w", s, cause)
	return errors.Join(err, l.leaveCluster(ctx, false))
}

// leaveCluster leaves nothing of the backend behind: SubnetRemoveCommand
// for every version of a remote lease that may be in the kernel (the
// journal's), ShutdownCommand, and with deleteOwn the own lease's
// deletion from the store. It goes on past failures and returns them
// all; it has the shutdown timeout even when ctx is done.
func (l *loop) leaveCluster(ctx context.Context, deleteOwn bool) error {
	e := l.e
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.timing.shutdownTimeout)
	defer cancel()
	var errs []error
	for _, vs := range l.core.journal.versions() { // forget replaces what it changes: vs stays
		for _, v := range vs {
			if _, err := e.runHook(sctx, hooks.SubnetRemove, v.lease(), v.BackendData+"\n"); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := l.core.journal.forget(v); err != nil {
				errs = append(errs, err)
			}
			if e.o.owners != nil {
				e.o.owners.Release(v.Subnet.String())
			}
		}
	}
	if err := l.core.journal.compact(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, e.shutdown(ctx, l.own))
	if deleteOwn && !l.o.readOnly {
		// Its own deadline: slow Removes must not leave the lease behind.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.timing.storeTimeout)
		defer dcancel()
		if err := l.deleteOwn(dctx); err != nil {
			errs = append(errs, fmt.Errorf("delete own lease %s: %w", l.own.Subnet, err))
		}
	}
	return errors.Join(errs...)
}

// deleteOwn deletes the own lease from the store while it is still this
// node's: one that expired during a partition may be another node's by
// now, and stays.
func (l *loop) deleteOwn(ctx context.Context) error {
	ls, err := l.e.store.List(ctx)
	if err != nil {
		return err
	}
	for _, x := range ls {
		if x.Invalid != "" || x.Subnet != l.own.Subnet {
			continue
		}
		if x.Attrs.Owner() != l.own.Attrs.Owner() {
			l.log.Warn("own lease is another node's by now; left in the store", "subnet", x.Subnet,
				"public_ip", x.Attrs.PublicIP)
			return nil
		}
		if err := l.e.store.Remove(ctx, l.own.Subnet); err != nil && !errors.Is(err, leases.ErrNotFound) {
			return err
		}
		return nil
	}
	return nil // already gone
}

// reconcile runs one batch of the core and takes in what it did.
func (l *loop) reconcile(ctx context.Context) {
	start := time.Now()
	l.batch = batchState{start: start, reported: start}
	res := l.core.step(ctx, start)
	l.batch = batchState{}
	if l.core.takeChanged() {
		l.dirty = true
	}
	if res.subnets > 0 {
		l.mtuStale = true
		if ctx.Err() == nil {
			l.log.Info("hooks batch done", "subnets", res.subnets, "hooks", res.hooks, "failed", res.failed,
				"applied", len(l.core.applied), "failing", l.core.queue.len(), "duration", time.Since(start))
		}
	}
	l.t.retry.Stop()
	if !res.retryAt.IsZero() {
		l.t.retry.Reset(max(time.Until(res.retryAt), 0))
	}
	l.observe()
	if l.core.journal.logN >= compactLines {
		l.compactNow()
	}
	l.scheduleFlush()
}

// progress reports a long batch while it runs: every progressEvery a
// log line with how far its phase got, and status.json rewritten (with
// the applied set so far and the batch's place), so neither the log nor
// `flexhook status` goes quiet while a thousand hooks run.
func (l *loop) progress(phase string, done, total int) {
	now := time.Now()
	if now.Sub(l.batch.reported) < l.o.progressEvery {
		return
	}
	l.batch.reported, l.batch.phase, l.batch.done, l.batch.total = now, phase, done, total
	l.log.Info("hooks batch in progress", "phase", phase, "done", done, "total", total,
		"applied", len(l.core.applied), "failing", l.core.queue.len(), "elapsed", now.Sub(l.batch.start).Round(time.Millisecond))
	l.dirty = true
	l.writeStatus()
}

// observe records the leases by state, the last full sync and readiness
// after a reconcile.
func (l *loop) observe() {
	now := time.Now()
	c := l.core
	if c.inSync() {
		l.lastSync = now
		l.o.metrics.Synced(now)
	}
	if c.synced {
		l.o.metrics.FirstSync()
	}
	l.o.metrics.Leases(metrics.LeaseCounts{Known: c.adm.known, Admitted: len(c.desired), Applied: len(c.applied),
		Refused: len(c.adm.refused), Failing: c.queue.len()}, c.adm.byReason(), c.queue.oldest())
	l.o.metrics.Conflicts(c.queue.conflicts())
}

// scheduleFlush arms the status timer when the status changed, and the
// compaction timer when the journal did.
func (l *loop) scheduleFlush() {
	if l.dirty && !l.t.flushArmed {
		l.t.flushArmed = true
		l.t.flush.Reset(flushDelay)
	}
	if (l.core.journal.dirty || l.core.journal.logN > 0) && !l.t.compactArmed {
		l.t.compactArmed = true
		l.t.compact.Reset(max(compactEvery-time.Since(l.t.compacted), 0))
	}
}

// flushNow hands status.json to its writer if it changed, after
// subnet.env's MTU is brought up to date.
func (l *loop) flushNow() {
	l.t.flushArmed = false
	l.t.flush.Stop()
	l.refreshEnv()
	l.writeStatus()
}

// refreshEnv works FLANNEL_MTU out again, when hooks ran or the config
// changed since, and rewrites subnet.env if it changed.
func (l *loop) refreshEnv() {
	if l.o.readOnly || !l.mtuStale {
		return
	}
	l.mtuStale = false
	changed, err := l.e.env.refresh(l.e.cfg, l.own)
	if err != nil {
		l.log.Error("rewrite subnet.env", "error", err)
	}
	if changed {
		l.dirty = true
	}
}

// compactNow rewrites the journal if it changed.
func (l *loop) compactNow() {
	l.t.compactArmed = false
	l.t.compact.Stop()
	if l.o.readOnly {
		return
	}
	if err := l.core.journal.compact(); err != nil {
		l.log.Error("journal: rewrite failed; its log keeps growing and stays safe", "error", err)
		return
	}
	l.t.compacted = time.Now()
}

func (l *loop) writeStatus() {
	if l.o.readOnly || !l.dirty {
		return
	}
	mtu, mtuSource := l.e.env.mtuNow()
	st := Status{
		Subnet:    l.own.Subnet,
		PublicIP:  l.own.Attrs.PublicIP,
		Applied:   sortedSubnets(l.core.applied),
		Failing:   l.core.queue.status(),
		UpdatedAt: time.Now().UTC(),
		MTU:       mtu,
		MTUSource: mtuSource,
		Journal:   l.core.journalProblem(),
		Pid:       os.Getpid(),
		Version:   l.e.o.version,
	}
	if !l.own.Expiration.IsZero() {
		st.LeaseExpiry = l.own.Expiration.UTC()
	}
	if !l.lastSync.IsZero() {
		st.LastSync = l.lastSync.UTC()
	}
	if b := l.batch; b.total > 0 {
		st.Batch = &BatchProgress{Phase: b.phase, Done: b.done, Total: b.total, Since: b.start.UTC()}
	}
	l.core.adm.status(&st)
	l.status.put(st)
	l.dirty = false
}
