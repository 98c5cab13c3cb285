package runner_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// metricValue is the value of the series name{labels} (counter, gauge,
// or a histogram's count), or -1 when it is absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// The engine's metrics move as leases come, fail, recover and are refused.
func TestEngineMetrics(t *testing.T) {
	hs := with(recorder, hooks.SubnetAdd, `read D
if test "$PUBLIC_IP" = 192.0.2.3 && ! test -e marker; then exit 3; fi
echo "add $SUBNET $PUBLIC_IP $D" >> events`)
	cfg := config(t, hs)
	s := leasestest.New()
	fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
	fakePeer(s, "10.50.3.0/24", "192.0.2.3", "b")
	fakePeer(s, "10.50.4.0/24", "127.0.0.1", "c") // refused: bad_public_ip
	m := metrics.New(time.Minute, "", "")
	reg := m.Registry()
	ok, why := m.Ready(time.Now())
	assert.False(t, ok)
	assert.Contains(t, why, "PostStartupCommand")

	dir := t.TempDir()
	n := start(t, cfg, metricsStore(m, s), dir, runner.Metrics(m))
	own := n.lease()
	n.waitEvent("add 10.50.2.0/24 192.0.2.2 a")
	v := func(name string, labels map[string]string) func() float64 {
		return func() float64 { return metricValue(t, reg, name, labels) }
	}
	add := map[string]string{"hook": "SubnetAddCommand"}
	eventually := func(what string, f func() float64, cond func(float64) bool) {
		t.Helper()
		require.Eventually(t, func() bool { return cond(f()) }, waitFor, tick, "%s: %v", what, f())
	}
	atLeast := func(n float64) func(float64) bool { return func(x float64) bool { return x >= n } }
	is := func(n float64) func(float64) bool { return func(x float64) bool { return x == n } }

	eventually("add failures", v("flexhook_hook_failures_total", add), atLeast(2))
	eventually("retries", v("flexhook_hook_retries_total", add), atLeast(1))
	eventually("applied", v("flexhook_leases", map[string]string{"state": "applied"}), is(1))
	eventually("failing", v("flexhook_leases", map[string]string{"state": "failing"}), is(1))
	eventually("refused", v("flexhook_leases_refused_current", map[string]string{"reason": string(leases.ReasonPublicIP)}), is(1))
	assert.Equal(t, 1.0, metricValue(t, reg, "flexhook_leases_refused_total", map[string]string{"reason": string(leases.ReasonPublicIP)}))
	assert.Equal(t, 3.0, metricValue(t, reg, "flexhook_leases", map[string]string{"state": "known"}))
	assert.Equal(t, 1.0, metricValue(t, reg, "flexhook_hook_runs_total", map[string]string{"hook": "PostStartupCommand"}))
	assert.GreaterOrEqual(t, metricValue(t, reg, "flexhook_hook_duration_seconds", add), 3.0)
	assert.Zero(t, metricValue(t, reg, "flexhook_last_sync_timestamp_seconds", nil), "no full sync while a lease fails")
	assert.GreaterOrEqual(t, metricValue(t, reg, "flexhook_store_operations_total", map[string]string{"store": "mem", "op": "acquire", "result": "ok"}), 1.0)
	assert.InDelta(t, float64(own.Expiration.Unix()), metricValue(t, reg, "flexhook_lease_expiry_timestamp_seconds", nil), 1)
	ok, why = m.Ready(time.Now())
	assert.True(t, ok, "a failure younger than the bound keeps the node ready: %s", why)
	ok, _ = m.Healthy(time.Now())
	assert.True(t, ok)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "marker"), nil, 0o600))
	n.waitEvent("add 10.50.3.0/24 192.0.2.3 b")
	eventually("applied after recovery", v("flexhook_leases", map[string]string{"state": "applied"}), is(2))
	eventually("last sync", v("flexhook_last_sync_timestamp_seconds", nil), atLeast(float64(time.Now().Add(-time.Minute).Unix())))

	s.Remove(t.Context(), netip.MustParsePrefix("10.50.2.0/24"))
	eventually("removes", v("flexhook_hook_runs_total", map[string]string{"hook": "SubnetRemoveCommand"}), atLeast(1))
	eventually("applied after removal", v("flexhook_leases", map[string]string{"state": "applied"}), is(1))
	require.NoError(t, n.stop())
	assert.Equal(t, 1.0, metricValue(t, reg, "flexhook_hook_runs_total", map[string]string{"hook": "ShutdownCommand"}))

	st, err := runner.ReadStatus(dir)
	require.NoError(t, err)
	assert.False(t, st.LastSync.IsZero(), "status.json has the last sync")
}

func metricsStore(m *metrics.Metrics, s leases.Store) leases.Store { return m.Store(s, "mem") }
