package runner

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
)

// policy is the admission policy for the remote leases of a node holding
// own.
func (e *Engine) policy(own leases.Lease) leases.Policy {
	return leases.Policy{
		Range:      e.cfg.Range,
		Own:        own,
		PublicIP:   e.o.node.publicIP,
		PublicIPv6: e.o.node.publicIPv6,
		Shape:      e.o.shape,
		NodeAddrs:  e.o.node.nodeAddrs,
	}
}

// refusal is a refused lease as admission remembers it.
type refusal struct {
	leases.Refusal
	since time.Time
}

// admission runs lease admission (leases.Policy.Admit) over each store
// snapshot and remembers the refusals: each refused lease is warned
// about once per reason (again only when its reason changes) and counted
// by reason; the current ones go to status.json.
type admission struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	refused map[string]refusal // by store key
	total   map[leases.Reason]int
	known   int // remote entries of the last snapshot
}

func newAdmission(log *slog.Logger, m *metrics.Metrics) *admission {
	return &admission{log: log, metrics: m, refused: map[string]refusal{}, total: map[leases.Reason]int{}}
}

// admit returns the remote leases of snap the hooks may see, sorted by
// subnet. Leases incumbent finds (admitted before) that won an overlap
// before keep winning. changed says whether the refusals changed.
func (a *admission) admit(p leases.Policy, snap []leases.Lease, incumbent func(netip.Prefix) (leases.Lease, bool),
	now time.Time) (admitted []leases.Lease, changed bool) {
	a.known = 0
	for _, x := range snap {
		if x.Attrs.PublicIP != p.Own.Attrs.PublicIP || x.Subnet != p.Own.Subnet {
			a.known++
		}
	}
	res := p.AdmitFunc(snap, incumbent)
	refused := make(map[string]refusal, len(res.Refused))
	for _, r := range res.Refused {
		key := r.Lease.StoreKey()
		prev, seen := a.refused[key]
		if seen && prev.Reason == r.Reason {
			prev.Refusal = r
			refused[key] = prev
			continue
		}
		a.total[r.Reason]++
		a.metrics.Refusal(r.Reason)
		a.log.Warn("lease refused", "key", r.Key(), "reason", string(r.Reason), "detail", r.Detail)
		refused[key] = refusal{Refusal: r, since: now}
	}
	for key, prev := range a.refused {
		if _, still := refused[key]; !still {
			a.log.Debug("lease no longer refused", "key", prev.Key(), "reason", string(prev.Reason))
		}
	}
	changed = !maps.EqualFunc(refused, a.refused, func(x, y refusal) bool { return x.Reason == y.Reason && x.Detail == y.Detail })
	a.refused = refused
	return res.Admitted, changed
}

// byReason counts the current refusals by reason.
func (a *admission) byReason() map[leases.Reason]int {
	out := map[leases.Reason]int{}
	for _, r := range a.refused {
		out[r.Reason]++
	}
	return out
}

// status fills status.json's refusal fields.
func (a *admission) status(st *Status) {
	keys := slices.Sorted(maps.Keys(a.refused))
	if len(keys) > maxStatusRefused {
		keys = keys[:maxStatusRefused]
	}
	st.Refused = make([]Refused, 0, len(keys))
	for _, k := range keys {
		r := a.refused[k]
		st.Refused = append(st.Refused, Refused{Key: r.Key(), Reason: string(r.Reason), Detail: r.Detail, Since: r.since.UTC()})
	}
	if len(a.refused) > 0 {
		st.RefusedNow = map[string]int{}
		for r, n := range a.byReason() {
			st.RefusedNow[string(r)] = n
		}
	}
	if len(a.total) > 0 {
		st.RefusedTotal = map[string]int{}
		for r, n := range a.total {
			st.RefusedTotal[string(r)] = n
		}
	}
}

// maxStatusRefused bounds the refusals status.json lists one by one (the
// counts by reason cover all of them).
const maxStatusRefused = 10000
