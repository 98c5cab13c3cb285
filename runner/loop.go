package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// failure is the retry state of one subnet whose hook failed.
type failure struct {
	hook     hooks.Kind
	err      error
	attempts int
	since    time.Time
	next     time.Time
}

// loop is the watch-and-reconcile phase of Run. Only the goroutine running
// loop.run touches its fields; hooks run one at a time, in that goroutine.
type loop struct {
	e       *Engine // hooks, the own lease, ShutdownCommand, config reloads
	store   leases.Store
	log     *slog.Logger
	o       loopOptions
	own     leases.Lease
	desired map[netip.Prefix]leases.Lease // remote leases of the last snapshot
	applied map[netip.Prefix]leases.Lease // remote leases whose Add succeeded
	// reapply: on the first snapshot, journal leases still in the store
	// unchanged are dropped from applied so they are added again: the
	// kernel, not the journal, is the truth (a reboot, a device rebuilt
	// by PreStartup, state changed behind our back). Adds converge
	// through replace-existing. Changed ones stay, so their old data gets
	// its Remove first; gone ones get their Remove.
	reapply bool
	// attempted are leases whose Add failed (and may have got half-way):
	// if such a lease is removed or changed, its Remove runs with the data
	// the Add had. They are journaled with the applied ones.
	attempted map[netip.Prefix]leases.Lease
	// journalDirty: applied or attempted changed since the journal was
	// written; it is written once per batch of hooks.
	journalDirty bool
	failing      map[netip.Prefix]*failure
	// refused are the leases admission refuses now, by store key;
	// refusedTotal counts refusals by reason since the start.
	refused      map[string]refusal
	refusedTotal map[leases.Reason]int
	retry        *time.Timer // fires at the earliest failing[*].next
	flush        *time.Timer // fires when status.json is due (flushNow)
	flushArmed   bool
	compact      *time.Timer // fires when the journal's rewrite is due (compactNow)
	compactArmed bool
	logLines     int       // leases appended to the journal's log since its last rewrite
	compacted    time.Time // the journal's last rewrite
	status       *statusWriter
	known        int         // remote entries in the last snapshot
	gotSnapshot  bool        // a snapshot came from the store
	lastSync     time.Time   // when every admitted lease was last applied
	renew        *time.Timer // fires when the own lease is due for renewal
	renewB       retry.Sequence
	renewing     bool // a failed renewal waits for its retry
	// renewal runs in its own goroutine, bounded by the store timeout, so
	// that hooks, retries and status go on while the store is slow or
	// partitioned; its outcome comes back on renewed.
	// resyncDue are applied leases whose SubnetAdd runs again (every
	// --resync-interval) to repair state changed behind our back; one
	// leaves the set when its Add succeeds.
	resyncDue   map[netip.Prefix]bool
	resyncTimer *time.Ticker
	renewed     chan renewResult
	inFlight    sync.WaitGroup
	renewBusy   bool
	dirty       bool // status.json is out of date
	// mtuStale: hooks ran or the config changed since FLANNEL_MTU was
	// last worked out (refreshEnv, with the status flush).
	mtuStale bool
}

// loopOptions are the engine options the loop needs, handed over by Run.
type loopOptions struct {
	readOnly       bool
	stateDir       string
	renewMargin    time.Duration
	storeTimeout   time.Duration
	resyncInterval time.Duration
	backoff        retry.Backoff
	parallel       int // subnets whose hooks run at once (1: serial)
	metrics        *metrics.Metrics
}

// statusEvery is the longest status.json goes unwritten.
const statusEvery = 10 * time.Second

type renewResult struct {
	lease leases.Lease
	err   error
}

func (l *loop) run(ctx context.Context) error {
	e := l.e
	l.own, _ = e.Lease()
	l.renewB = retry.Sequence{Backoff: l.o.backoff}
	l.compacted = time.Now()
	if !l.o.readOnly {
		l.scheduleRenew()
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
	l.renewed = make(chan renewResult, 1)
	l.resyncDue = map[netip.Prefix]bool{}
	// status.json is rewritten at least every statusEvery, so its
	// UpdatedAt shows the loop alive (during a partition too).
	heartbeat := time.NewTicker(statusEvery)
	defer heartbeat.Stop()
	resync := l.startResync()
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
			l.log.Info("shutting down", "subnet", l.own.Subnet)
			return e.shutdown(ctx, l.own)

		case snap := <-snaps:
			l.snapshot(ctx, newest(snap, snaps))
			l.reconcile(ctx)

		case <-l.retry.C:
			l.reconcile(ctx)

		case <-resync:
			l.resyncAll(ctx)

		case cfg := <-e.reload:
			e.swapConfig(cfg)
			l.mtuStale = true
			l.refreshEnv()
			l.writeStatus()

		case <-l.flush.C:
			l.flushNow()

		case <-l.compact.C:
			l.compactNow()

		case <-heartbeat.C:
			l.dirty = true
			l.mtuStale = true // a device's MTU may have been changed by hand
			l.refreshEnv()
			l.writeStatus()

		case <-l.renew.C:
			l.startRenew(ctx)

		case r := <-l.renewed:
			if err := l.renewDone(ctx, r); err != nil {
				stop()
				return l.gone(ctx, err)
			}
			l.writeStatus()
		}
	}
}

// startResync starts the --resync-interval ticker, if any; its channel
// is nil otherwise.
func (l *loop) startResync() <-chan time.Time {
	if d := l.o.resyncInterval; d > 0 {
		l.resyncTimer = time.NewTicker(d)
		return l.resyncTimer.C
	}
	return nil
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
	l.retry.Stop()
	l.renew.Stop()
	if l.resyncTimer != nil {
		l.resyncTimer.Stop()
	}
	l.inFlight.Wait()
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

// resyncAll runs SubnetAddCommand again for every applied lease.
func (l *loop) resyncAll(ctx context.Context) {
	for sn := range l.applied {
		l.resyncDue[sn] = true
	}
	l.log.Debug("resync: adding every applied lease again", "leases", len(l.resyncDue))
	l.reconcile(ctx)
}

// watch runs store.Watch until ctx is done, restarting it with backoff if
// it fails.
func (l *loop) watch(ctx context.Context, out chan<- []leases.Lease) {
	_ = retry.Do(ctx, l.o.backoff, func(ctx context.Context) error {
		if err := l.store.Watch(ctx, out); err != nil || ctx.Err() != nil {
			return err
		}
		return errors.New("watch ended")
	}, func(_ int, err error, wait time.Duration) {
		l.log.Error("lease watch failed; restarting", "error", err, "retry_in", wait)
	}) // ends only with ctx
}

// snapshot takes a full set of leases as the new desired state. When the
// own lease is missing from it (or not ours any more), a Renew confirms
// whether it is gone; renewDone then ends the loop if so.
func (l *loop) snapshot(ctx context.Context, snap []leases.Lease) {
	l.desired = l.admit(snap)
	l.known, l.gotSnapshot = 0, true
	for _, x := range snap {
		if x.Attrs.PublicIP != l.own.Attrs.PublicIP || x.Subnet != l.own.Subnet {
			l.known++
		}
	}
	if l.reapply {
		l.reapply = false
		for sn, a := range l.applied {
			if d, ok := l.desired[sn]; ok && sameLease(d, a) {
				delete(l.applied, sn)
			}
		}
		l.journalDirty = true
		l.saveJournal()
	}
	if l.o.readOnly || l.renewing {
		return
	}
	ownKey := leases.SubnetKey(l.own.Subnet, l.own.IPv6Subnet)
	for _, x := range snap {
		if x.Key == ownKey && x.Invalid == "" && x.Attrs.Owner() == l.own.Attrs.Owner() {
			return
		}
	}
	if !l.renewBusy {
		l.log.Warn("own lease missing from the store or not ours; renewing to confirm", "subnet", l.own.Subnet)
		l.startRenew(ctx)
	}
}

// startRenew renews the own lease in the background, with the store
// timeout as its deadline; renewDone takes the outcome.
func (l *loop) startRenew(ctx context.Context) {
	if l.renewBusy {
		return
	}
	l.renewBusy = true
	own := l.own
	l.inFlight.Add(1)
	go func() {
		defer l.inFlight.Done()
		rctx, cancel := context.WithTimeout(ctx, l.o.storeTimeout)
		defer cancel()
		nl, err := l.store.Renew(rctx, own)
		l.renewed <- renewResult{nl, err} // buffered: one renewal at a time
	}()
}

// renewDone handles a renewal's outcome. It returns an error only when the
// lease is gone; other failures (a timeout too) are logged with their cause
// once per backoff step and retried.
func (l *loop) renewDone(ctx context.Context, r renewResult) error {
	l.renewBusy = false
	nl, err := r.lease, r.err
	switch {
	case err == nil:
		l.o.metrics.Renewed(nil, nl.Expiration)
		l.own = nl
		l.e.setOwn(nl)
		l.renewB.Reset()
		l.renewing = false
		l.log.Debug("lease renewed", "subnet", nl.Subnet, "expires", nl.Expiration)
		l.scheduleRenew()
		return nil
	case errors.Is(err, leases.ErrLeaseGone):
		return err
	case ctx.Err() != nil:
		return nil
	}
	l.o.metrics.Renewed(err, time.Time{})
	d := l.renewB.Next()
	l.renewing = true
	l.log.Error("renew lease failed; retrying", "subnet", l.own.Subnet, "error", err, "retry_in", d)
	l.renew.Reset(d)
	return nil
}

// scheduleRenew arms the renewal timer at Expiration − RenewMargin (or
// halfway to the expiration when the margin is longer than what is left).
func (l *loop) scheduleRenew() {
	exp := l.own.Expiration
	if exp.IsZero() {
		exp = time.Now().Add(leases.DefaultTTL)
	}
	d := time.Until(exp.Add(-l.o.renewMargin))
	if d <= 0 {
		d = time.Until(exp) / 2
	}
	l.renew.Reset(max(d, l.o.backoff.Initial))
}

// gone handles the loss of the own lease: log, ShutdownCommand, error.
func (l *loop) gone(ctx context.Context, cause error) error {
	s := l.own.Subnet
	l.log.Error(fmt.Sprintf("lease for %s was deleted by someone else; shutting down", s), "subnet", s, "error", cause)
	err := fmt.Errorf("lease for %s was deleted by someone else: %w", s, cause)
	return errors.Join(err, l.e.shutdown(ctx, l.own))
}

// reconcile runs the hooks that bring the applied set to the desired one,
// subnet by subnet in address order. A subnet waiting for its retry is
// skipped until its timer fires; it does not hold up the others.
func (l *loop) reconcile(ctx context.Context) {
	todo := diff(l.desired, l.applied)
	for s, a := range l.attempted {
		if _, done := l.applied[s]; done {
			continue
		}
		d, wanted := l.desired[s]
		switch {
		case !wanted: // removed while its Add was failing
			todo[s] = []op{{hooks.SubnetRemove, a}}
		case !sameLease(d, a): // changed: undo what the failed Add set up, and retry at once
			todo[s] = []op{{hooks.SubnetRemove, a}, {hooks.SubnetAdd, d}}
			if f := l.failing[s]; f != nil && f.hook == hooks.SubnetAdd {
				delete(l.failing, s)
				l.dirty = true
			}
		}
	}
	for s := range l.resyncDue {
		d, wanted := l.desired[s]
		a, done := l.applied[s]
		if _, busy := todo[s]; busy || !wanted || !done || !sameLease(d, a) {
			delete(l.resyncDue, s) // the diff handles it
			continue
		}
		todo[s] = []op{{hooks.SubnetAdd, d}}
	}
	// Write ahead: before a batch runs, the journal holds every lease it
	// may add, so that a crash after an Add, before the journal is written
	// again, cannot lose the lease's Remove. The new ones are appended to
	// the journal's log (one small synced write); the journal itself is
	// rewritten later (flush).
	var ahead []leases.Lease
	for s, ops := range todo {
		if _, done := l.applied[s]; done {
			continue // the old version, in the journal, is what a Remove needs
		}
		for _, o := range ops {
			if o.kind == hooks.SubnetAdd {
				if a, ok := l.attempted[s]; !ok || !sameLease(a, o.lease) {
					l.attempted[s] = o.lease
					l.journalDirty = true
					ahead = append(ahead, o.lease)
				}
			}
		}
	}
	l.writeAhead(ahead)
	for s := range l.failing {
		if _, ok := todo[s]; !ok { // back in sync (e.g. the lease went away)
			delete(l.failing, s)
			l.dirty = true
		}
	}
	l.runBatch(ctx, todo)
	l.armRetry()
	l.observe()
	l.scheduleFlush()
}

// observe records the leases by state, the last full sync and readiness
// after a reconcile.
func (l *loop) observe() {
	now := time.Now()
	if l.gotSnapshot && len(l.failing) == 0 && len(l.applied) == len(l.desired) {
		inSync := true
		for s, d := range l.desired {
			if a, ok := l.applied[s]; !ok || !sameLease(a, d) {
				inSync = false
				break
			}
		}
		if inSync {
			l.lastSync = now
			l.o.metrics.Synced(now)
		}
	}
	if l.gotSnapshot {
		l.o.metrics.FirstSync()
	}
	byReason := map[leases.Reason]int{}
	for _, r := range l.refused {
		byReason[r.Reason]++
	}
	var oldest time.Time
	for _, f := range l.failing {
		if oldest.IsZero() || f.since.Before(oldest) {
			oldest = f.since
		}
	}
	l.o.metrics.Leases(metrics.LeaseCounts{Known: l.known, Admitted: len(l.desired), Applied: len(l.applied),
		Refused: len(l.refused), Failing: len(l.failing)}, byReason, oldest)
}

// flushDelay is how long a changed status.json waits before it is
// handed to its writer, so that a stream of events costs one rewrite, not
// one per event. The journal is rewritten (its log folded in) only every
// compactEvery, or once its log holds compactLines leases, and when the
// loop stops: until then its log keeps a crash safe, and a Remove not yet
// in the journal only runs once more after a restart, which converges.
const (
	flushDelay   = 250 * time.Millisecond
	compactEvery = 30 * time.Second
	compactLines = 4096
)

// scheduleFlush arms the status timer when the status changed, and the
// compaction timer when the journal did.
func (l *loop) scheduleFlush() {
	if l.dirty && !l.flushArmed {
		l.flushArmed = true
		l.flush.Reset(flushDelay)
	}
	if l.journalDirty && !l.compactArmed {
		l.compactArmed = true
		l.compact.Reset(max(compactEvery-time.Since(l.compacted), 0))
	}
}

// flushNow hands status.json to its writer if it changed, after
// subnet.env's MTU is brought up to date.
func (l *loop) flushNow() {
	l.flushArmed = false
	l.flush.Stop()
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
	l.compactArmed = false
	l.compact.Stop()
	l.saveJournal()
}

// writeAhead appends leases whose Add is about to run to the journal's
// log.
func (l *loop) writeAhead(ls []leases.Lease) {
	if l.o.readOnly || len(ls) == 0 {
		return
	}
	if err := appendJournalLog(l.o.stateDir, ls); err != nil {
		l.log.Error("journal write-ahead failed; writing the whole journal", "error", err)
		l.saveJournal()
		return
	}
	if l.logLines += len(ls); l.logLines >= compactLines {
		l.compactNow()
	}
}

// outcome is what running one subnet's ops did: the first done ops
// succeeded; err, if set, is the failure of ops[done].
type outcome struct {
	subnet netip.Prefix
	ops    []op
	done   int
	err    error
}

// runBatch runs the ops of every subnet in todo that is not waiting for
// its retry, in address order, with up to Parallel subnets at a time.
// Each subnet's ops run in order in one worker; only the loop's goroutine
// records outcomes. It logs one summary line per batch.
func (l *loop) runBatch(ctx context.Context, todo map[netip.Prefix][]op) {
	now := time.Now()
	var due []netip.Prefix
	for _, s := range sortedSubnets(todo) {
		if f := l.failing[s]; f != nil && now.Before(f.next) {
			continue
		}
		due = append(due, s)
	}
	if len(due) == 0 {
		return
	}
	l.mtuStale = true
	retried := make(map[netip.Prefix]bool, len(l.failing)) // read here: workers must not touch l.failing
	for _, s := range due {
		retried[s] = l.failing[s] != nil
	}
	var hooksRun, failed int
	record := func(o outcome) {
		hooksRun += o.done
		if o.err != nil {
			hooksRun++
			failed++
		}
		l.record(ctx, o)
	}
	if n := min(l.o.parallel, len(due)); n <= 1 {
		for _, s := range due {
			if ctx.Err() != nil {
				break
			}
			record(l.runOps(ctx, s, todo[s], retried[s]))
		}
	} else {
		work := make(chan netip.Prefix)
		results := make(chan outcome)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range work {
					results <- l.runOps(ctx, s, todo[s], retried[s])
				}
			}()
		}
		go func() {
			defer close(work)
			for _, s := range due {
				if ctx.Err() != nil {
					return
				}
				work <- s
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
	if ctx.Err() != nil {
		return
	}
	l.log.Info("hooks batch done", "subnets", len(due), "hooks", hooksRun, "failed", failed,
		"applied", len(l.applied), "failing", len(l.failing), "duration", time.Since(now))
}

// runOps runs ops for subnet s in order, stopping at the first failure.
// It touches no loop state, so workers may run it concurrently.
func (l *loop) runOps(ctx context.Context, s netip.Prefix, ops []op, retry bool) outcome {
	o := outcome{subnet: s, ops: ops}
	if retry && len(ops) > 0 {
		l.o.metrics.HookRetried(ops[0].kind)
	}
	for _, op := range ops {
		stdin := op.lease.Attrs.BackendData + "\n"
		if _, err := l.e.runHook(ctx, op.kind, op.lease, stdin); err != nil {
			o.err = err
			return o
		}
		l.log.Debug("hook applied", "hook", op.kind.String(), "subnet", s, "public_ip", op.lease.Attrs.PublicIP)
		o.done++
	}
	return o
}

// record takes a subnet's outcome into the loop's state: applied,
// attempted, resync and failing.
func (l *loop) record(ctx context.Context, o outcome) {
	s := o.subnet
	for _, op := range o.ops[:o.done] {
		if op.kind == hooks.SubnetRemove {
			delete(l.applied, s)
		} else {
			l.applied[s] = op.lease
		}
		delete(l.attempted, s)
		if op.kind == hooks.SubnetAdd {
			delete(l.resyncDue, s)
		}
		l.dirty = true
		l.journalDirty = true
	}
	switch {
	case o.err != nil && ctx.Err() != nil:
		// interrupted by shutdown, not a hook failure
	case o.err != nil:
		l.fail(s, o.ops[o.done].kind, o.err)
	default:
		if _, ok := l.failing[s]; ok {
			delete(l.failing, s)
			l.log.Info("subnet recovered", "subnet", s)
		}
	}
}

func (l *loop) fail(s netip.Prefix, k hooks.Kind, err error) {
	now := time.Now()
	f := l.failing[s]
	if f == nil {
		f = &failure{since: now}
		l.failing[s] = f
	}
	f.attempts++
	f.hook, f.err = k, err
	d := l.o.backoff.Delay(f.attempts)
	f.next = now.Add(d)
	l.dirty = true
	l.log.Error("hook failed; will retry", "hook", k.String(), "subnet", s,
		"attempt", f.attempts, "retry_in", d, "error", err)
}

// armRetry sets the retry timer to the earliest pending retry.
func (l *loop) armRetry() {
	var first time.Time
	for _, f := range l.failing {
		if first.IsZero() || f.next.Before(first) {
			first = f.next
		}
	}
	if first.IsZero() {
		l.retry.Stop()
		return
	}
	l.retry.Reset(max(time.Until(first), 0))
}

// saveJournal writes the journal when applied or attempted changed: the
// leases whose Add ran (or began), each of which needs a Remove once it is
// gone. It runs once per batch of hooks; a crash between a hook and the
// write is safe, since Adds and Removes converge when run again.
func (l *loop) saveJournal() {
	if l.o.readOnly || !l.journalDirty {
		return
	}
	j := l.applied
	if len(l.attempted) > 0 {
		j = maps.Clone(l.applied)
		for s, a := range l.attempted {
			if _, ok := j[s]; !ok {
				j[s] = a
			}
		}
	}
	if err := saveJournal(l.o.stateDir, j); err != nil {
		l.log.Error("save journal", "error", err)
		return
	}
	l.journalDirty = false
	l.logLines, l.compacted = 0, time.Now()
}

func (l *loop) writeStatus() {
	if l.o.readOnly || !l.dirty {
		return
	}
	mtu, mtuSource := l.e.env.mtuNow()
	st := Status{
		MTU:       mtu,
		MTUSource: mtuSource,
		Subnet:    l.own.Subnet,
		PublicIP:  l.own.Attrs.PublicIP,
		Applied:   sortedSubnets(l.applied),
		Failing:   []Failure{},
		UpdatedAt: time.Now().UTC(),
		Refused:   l.refusedStatus(),
	}
	if !l.lastSync.IsZero() {
		st.LastSync = l.lastSync.UTC()
	}
	if len(l.refused) > 0 {
		st.RefusedNow = map[string]int{}
		for _, r := range l.refused {
			st.RefusedNow[string(r.Reason)]++
		}
	}
	if len(l.refusedTotal) > 0 {
		st.RefusedTotal = map[string]int{}
		for r, n := range l.refusedTotal {
			st.RefusedTotal[string(r)] = n
		}
	}
	for _, s := range sortedSubnets(l.failing) {
		f := l.failing[s]
		st.Failing = append(st.Failing, Failure{
			Subnet: s, Hook: f.hook.String(), Error: f.err.Error(),
			Attempts: f.attempts, Since: f.since.UTC(), NextRetry: f.next.UTC(),
		})
	}
	l.status.put(st)
	l.dirty = false
}

// statusWriter writes status.json in its own goroutine, so that the loop
// never waits on the disk for it; a newer status replaces one not yet
// written.
type statusWriter struct {
	ch   chan Status
	done chan struct{}
}

func startStatusWriter(dir string, log *slog.Logger) *statusWriter {
	w := &statusWriter{ch: make(chan Status, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for st := range w.ch {
			if err := saveStatus(dir, st); err != nil {
				log.Error("write status", "error", err)
			}
		}
	}()
	return w
}

// put hands st over (the loop is the only sender).
func (w *statusWriter) put(st Status) {
	select {
	case <-w.ch: // an older status not yet written
	default:
	}
	w.ch <- st
}

// close writes what is pending and ends the goroutine.
func (w *statusWriter) close() {
	close(w.ch)
	<-w.done
}
