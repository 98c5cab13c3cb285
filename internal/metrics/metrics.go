// Package metrics is flexhook's Prometheus instrumentation and its health
// endpoints: the collectors the engine, the shell and the stores update,
// and the handler behind --metrics-addr serving /metrics, /healthz and
// /readyz. Labels never carry lease data: hooks, store operations,
// refusal reasons and states are bounded sets.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
)

// Defaults of the health bounds.
const (
	// DefaultFailingBound is how long a subnet may keep failing before
	// /readyz says not ready.
	DefaultFailingBound = 5 * time.Minute
)

// Metrics holds the collectors and the health state of one daemon. A nil
// *Metrics is valid and records nothing.
type Metrics struct {
	reg *prometheus.Registry

	hookRuns     *prometheus.CounterVec
	hookFailures *prometheus.CounterVec
	hookDuration *prometheus.HistogramVec
	hookRetries  *prometheus.CounterVec
	commands     *prometheus.CounterVec
	leases       *prometheus.GaugeVec
	refused      *prometheus.GaugeVec
	refusals     *prometheus.CounterVec
	conflicts    *prometheus.GaugeVec
	storeOps     *prometheus.CounterVec
	lastSync     prometheus.Gauge
	renewals     *prometheus.CounterVec
	leaseExpiry  prometheus.Gauge
	reloads      *prometheus.CounterVec
	lastReload   prometheus.Gauge

	health health
}

// health is what /healthz and /readyz answer from.
type health struct {
	loopBound    time.Duration
	failingBound time.Duration
	loopTurn     atomic.Int64 // unix nanos of the watch loop's last turn; 0 before it runs
	started      atomic.Bool  // PostStartupCommand succeeded
	synced       atomic.Bool  // the first store snapshot was reconciled
	failingSince atomic.Int64 // unix nanos since the oldest failing subnet fails; 0 none
	journalBad   atomic.Bool  // intent cannot be recorded: no Add runs
}

// New returns the collectors, registered on a registry of their own with
// the Go and process collectors. loopBound is how long the watch loop may
// go without turning before /healthz fails (it waits while a hook runs:
// give it the hook timeout and some). version is flexhook's for the build
// info series; empty, the module version Go recorded in the binary.
// revision is the commit it was built from ("" when unknown).
func New(loopBound time.Duration, version, revision string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.health.loopBound = loopBound
	m.health.failingBound = DefaultFailingBound
	hook := []string{"hook"}
	m.hookRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_hook_runs_total",
		Help: "Hook runs, by hook."}, hook)
	m.hookFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_hook_failures_total",
		Help: "Hook runs that failed (non-zero status, timeout, too much output), by hook."}, hook)
	m.hookDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flexhook_hook_duration_seconds",
		Help:    "How long hook runs took, by hook.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120}}, hook)
	m.hookRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_hook_retries_total",
		Help: "Runs of a subnet's hook after it failed, by hook."}, hook)
	m.commands = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_commands_total",
		Help: "Commands (not builtins) hooks ran, by hook."}, hook)
	m.leases = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flexhook_leases",
		Help: "Remote leases by state: known (in the store, this node's excluded), admitted, applied, refused, failing."}, []string{"state"})
	// Not flexhook_leases_refused: the counter below is that family in
	// OpenMetrics (its _total is a suffix), and a gauge may not share it.
	m.refused = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flexhook_leases_refused_current",
		Help: "Remote leases lease admission refuses now, by reason."}, []string{"reason"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_leases_refused_total",
		Help: "Refusals since the start (a lease counts again when its reason changes), by reason."}, []string{"reason"})
	m.conflicts = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flexhook_leases_conflicting",
		Help: "Remote leases whose hooks are stopped because a kernel object they would change is not theirs, by reason (other_lease, node_object, preexisting)."}, []string{"reason"})
	m.storeOps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_store_operations_total",
		Help: "Lease store calls, by store, operation and result (ok, error)."}, []string{"store", "op", "result"})
	m.lastSync = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flexhook_last_sync_timestamp_seconds",
		Help: "When every admitted lease of the store was last applied (unix seconds)."})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_lease_renewals_total",
		Help: "Renewals of this node's lease, by result (ok, error)."}, []string{"result"})
	m.leaseExpiry = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flexhook_lease_expiry_timestamp_seconds",
		Help: "When this node's lease expires unless renewed (unix seconds)."})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flexhook_config_reloads_total",
		Help: "Config reloads (SIGHUP, the file changed), by result (accepted, refused)."}, []string{"result"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flexhook_config_last_reload_timestamp_seconds",
		Help: "When a config reload was last tried (unix seconds; 0: never)."})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flexhook_build_info",
		Help: "Always 1; the labels say which flexhook runs."}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(cmp.Or(version, moduleVersion()), cmp.Or(revision, "unknown"), runtime.Version()).Set(1)
	// The Go collector without its MemStats-like series: its
	// go_memstats_alloc_bytes gauge and go_memstats_alloc_bytes_total
	// counter are one family in OpenMetrics, which forbids that.
	m.reg.MustRegister(m.hookRuns, m.hookFailures, m.hookDuration, m.hookRetries, m.commands, m.leases,
		m.refused, m.refusals, m.conflicts, m.storeOps, m.lastSync, m.renewals, m.leaseExpiry, m.reloads, m.lastReload,
		build, collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled()), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every label set shows, at 0, from the start: a rate over a series
	// that appears only at its first event misses that event.
	for _, k := range hooks.Kinds {
		for _, v := range []*prometheus.CounterVec{m.hookRuns, m.hookFailures, m.hookRetries, m.commands} {
			v.WithLabelValues(k.String())
		}
		m.hookDuration.WithLabelValues(k.String())
	}
	for _, s := range []string{"known", "admitted", "applied", "refused", "failing"} {
		m.leases.WithLabelValues(s)
	}
	for _, r := range leases.Reasons {
		m.refused.WithLabelValues(string(r))
		m.refusals.WithLabelValues(string(r))
	}
	for _, r := range ConflictReasons {
		m.conflicts.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.renewals.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "refused"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// ConflictReasons are the reasons flexhook_leases_conflicting counts by.
var ConflictReasons = []string{"other_lease", "node_object", "preexisting"}

// Reloaded records a config reload tried at t, and whether it was accepted.
func (m *Metrics) Reloaded(t time.Time, accepted bool) {
	if m == nil {
		return
	}
	result := "refused"
	if accepted {
		result = "accepted"
	}
	m.reloads.WithLabelValues(result).Inc()
	m.lastReload.Set(float64(t.UnixNano()) / 1e9)
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Registry is where the collectors are registered (tests gather it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// HookRan records one hook run.
func (m *Metrics) HookRan(k hooks.Kind, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.hookRuns.WithLabelValues(k.String()).Inc()
	m.hookDuration.WithLabelValues(k.String()).Observe(d.Seconds())
	if err != nil {
		m.hookFailures.WithLabelValues(k.String()).Inc()
	}
}

// HookRetried records a run of a hook that failed before for its subnet.
func (m *Metrics) HookRetried(k hooks.Kind) {
	if m != nil {
		m.hookRetries.WithLabelValues(k.String()).Inc()
	}
}

// CommandRan records one command a hook ran.
func (m *Metrics) CommandRan(k hooks.Kind) {
	if m != nil {
		m.commands.WithLabelValues(k.String()).Inc()
	}
}

// LeaseCounts are the remote leases by state.
type LeaseCounts struct {
	Known, Admitted, Applied, Refused, Failing int
}

// Leases sets the lease gauges, the refusals by reason, and the oldest
// failure (zero: none) for /readyz.
func (m *Metrics) Leases(c LeaseCounts, refusedBy map[leases.Reason]int, oldestFailure time.Time) {
	if m == nil {
		return
	}
	for s, n := range map[string]int{"known": c.Known, "admitted": c.Admitted, "applied": c.Applied,
		"refused": c.Refused, "failing": c.Failing} {
		m.leases.WithLabelValues(s).Set(float64(n))
	}
	m.refused.Reset()
	for r, n := range refusedBy {
		m.refused.WithLabelValues(string(r)).Set(float64(n))
	}
	var since int64
	if !oldestFailure.IsZero() {
		since = oldestFailure.UnixNano()
	}
	m.health.failingSince.Store(since)
}

// Conflicts sets the conflicting leases by reason.
func (m *Metrics) Conflicts(by map[string]int) {
	if m == nil {
		return
	}
	for _, r := range ConflictReasons {
		m.conflicts.WithLabelValues(r).Set(float64(by[r]))
	}
}

// Refusal records a new refusal.
func (m *Metrics) Refusal(r leases.Reason) {
	if m != nil {
		m.refusals.WithLabelValues(string(r)).Inc()
	}
}

// Synced records that every admitted lease is applied now.
func (m *Metrics) Synced(t time.Time) {
	if m != nil {
		m.lastSync.Set(float64(t.UnixNano()) / 1e9)
	}
}

// FirstSync records that the first store snapshot was reconciled.
func (m *Metrics) FirstSync() {
	if m != nil {
		m.health.synced.Store(true)
	}
}

// Started records that PostStartupCommand succeeded.
func (m *Metrics) Started() {
	if m != nil {
		m.health.started.Store(true)
	}
}

// JournalFailing records whether the journal refuses intent (then no
// Add runs and /readyz says so).
func (m *Metrics) JournalFailing(bad bool) {
	if m != nil {
		m.health.journalBad.Store(bad)
	}
}

// LoopTurned records progress of the engine: a turn of the watch loop, or
// a hook starting or ending (a batch of hooks, each inside its timeout,
// is progress however long it takes).
func (m *Metrics) LoopTurned(t time.Time) {
	if m != nil {
		m.health.loopTurn.Store(t.UnixNano())
	}
}

// Renewed records a renewal of the own lease and its new expiry.
func (m *Metrics) Renewed(err error, expiry time.Time) {
	if m == nil {
		return
	}
	if err != nil {
		m.renewals.WithLabelValues("error").Inc()
		return
	}
	m.renewals.WithLabelValues("ok").Inc()
	m.LeaseExpires(expiry)
}

// LeaseExpires sets the own lease's expiry.
func (m *Metrics) LeaseExpires(t time.Time) {
	if m != nil && !t.IsZero() {
		m.leaseExpiry.Set(float64(t.UnixNano()) / 1e9)
	}
}

// StoreOp records one store call.
func (m *Metrics) StoreOp(store, op string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil && !errors.Is(err, context.Canceled) {
		result = "error"
	}
	m.storeOps.WithLabelValues(store, op, result).Inc()
}

// Healthy reports whether the process is alive: before the watch loop
// runs (start-up), always; then while the engine made progress (a loop
// turn, a hook started or ended) within the loop bound, so a long batch
// of hooks, each inside its timeout, is healthy, and a loop stuck past
// every timeout (a hook that could not be killed, a deadlock) is not.
func (m *Metrics) Healthy(now time.Time) (bool, string) {
	t := m.health.loopTurn.Load()
	if t == 0 {
		return true, "starting"
	}
	if since := now.Sub(time.Unix(0, t)); since > m.health.loopBound {
		return false, fmt.Sprintf("the engine has made no progress (no loop turn, no hook started or ended) for %s (bound %s)", since.Round(time.Second), m.health.loopBound)
	}
	return true, "ok"
}

// Ready reports whether the node is ready: PostStartupCommand succeeded,
// the first store snapshot was reconciled, and no subnet has been failing
// for longer than the failing bound.
func (m *Metrics) Ready(now time.Time) (bool, string) {
	switch {
	case !m.health.started.Load():
		return false, "PostStartupCommand has not succeeded yet"
	case !m.health.synced.Load():
		return false, "the first snapshot of the lease store is not applied yet"
	case m.health.journalBad.Load():
		return false, "the journal cannot record intent (state dir full or read-only?): no SubnetAddCommand runs"
	}
	if f := m.health.failingSince.Load(); f != 0 {
		if since := now.Sub(time.Unix(0, f)); since > m.health.failingBound {
			return false, fmt.Sprintf("a subnet's hook has been failing for %s (bound %s)", since.Round(time.Second), m.health.failingBound)
		}
	}
	return true, "ok"
}

// Handler serves /metrics (Prometheus text format), /healthz and /readyz
// (200 "ok", or 503 with the reason).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	probe := func(f func(time.Time) (bool, string)) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			ok, why := f(time.Now())
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			fmt.Fprintln(w, why)
		}
	}
	mux.Handle("/healthz", probe(m.Healthy))
	mux.Handle("/readyz", probe(m.Ready))
	return mux
}
