package runner

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/flexhook/flexhook/leases"
)

// policy is the admission policy for the remote leases of a node holding
// own.
func (e *Engine) policy(own leases.Lease) leases.Policy {
	return leases.Policy{
		Range:      e.cfg.Range,
		Own:        own,
		PublicIP:   e.o.publicIP,
		PublicIPv6: e.o.publicIPv6,
		Shape:      e.o.shape,
	}
}

// refusal is a refused lease as the loop remembers it.
type refusal struct {
	leases.Refusal
	since time.Time
}

// admit runs lease admission (leases.Policy.Admit) over a store snapshot
// and returns the remote leases the hooks may see, by subnet. Leases that
// won an overlap before keep winning. Each refused lease is warned about
// once per reason (again only when its reason changes) and counted by
// reason; the current refusals go to status.json.
func (l *loop) admit(snap []leases.Lease) map[netip.Prefix]leases.Lease {
	incumbent := maps.Clone(l.applied)
	maps.Copy(incumbent, l.desired)
	a := l.e.policy(l.own).Admit(snap, incumbent)

	now := time.Now()
	refused := make(map[string]refusal, len(a.Refused))
	for _, r := range a.Refused {
		key := r.Lease.StoreKey()
		prev, seen := l.refused[key]
		if seen && prev.Reason == r.Reason {
			prev.Refusal = r
			refused[key] = prev
			continue
		}
		l.refusedTotal[r.Reason]++
		l.o.metrics.Refusal(r.Reason)
		l.log.Warn("lease refused", "key", r.Key(), "reason", string(r.Reason), "detail", r.Detail)
		refused[key] = refusal{Refusal: r, since: now}
	}
	for key, prev := range l.refused {
		if _, still := refused[key]; !still {
			l.log.Debug("lease no longer refused", "key", prev.Key(), "reason", string(prev.Reason))
		}
	}
	if !maps.EqualFunc(refused, l.refused, func(x, y refusal) bool { return x.Reason == y.Reason && x.Detail == y.Detail }) {
		l.dirty = true
	}
	l.refused = refused

	out := make(map[netip.Prefix]leases.Lease, len(a.Admitted))
	for _, x := range a.Admitted {
		out[x.Subnet] = x
	}
	return out
}

// refusedStatus lists the current refusals for status.json, by key.
func (l *loop) refusedStatus() []Refused {
	keys := slices.Sorted(maps.Keys(l.refused))
	if len(keys) > maxStatusRefused {
		keys = keys[:maxStatusRefused]
	}
	out := make([]Refused, 0, len(keys))
	for _, k := range keys {
		r := l.refused[k]
		out = append(out, Refused{Key: r.Key(), Reason: string(r.Reason), Detail: r.Detail, Since: r.since.UTC()})
	}
	return out
}

// maxStatusRefused bounds the refusals status.json lists one by one (the
// counts by reason cover all of them).
const maxStatusRefused = 10000
