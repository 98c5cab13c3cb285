package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestProbes(t *testing.T) {
	m := metrics.New(time.Minute, "", "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	code, _ := get(t, srv, "/healthz")
	assert.Equal(t, 200, code, "alive while starting")
	code, body := get(t, srv, "/readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "PostStartupCommand")

	m.Started()
	code, body = get(t, srv, "/readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "first snapshot")

	m.FirstSync()
	m.LoopTurned(time.Now())
	code, _ = get(t, srv, "/readyz")
	assert.Equal(t, 200, code)

	// A subnet failing for longer than the bound makes the node unready.
	m.Leases(metrics.LeaseCounts{Failing: 1}, nil, time.Now().Add(-metrics.DefaultFailingBound-time.Second))
	code, body = get(t, srv, "/readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "failing for")
	m.Leases(metrics.LeaseCounts{}, nil, time.Time{})
	code, _ = get(t, srv, "/readyz")
	assert.Equal(t, 200, code)

	// A journal that refuses intent makes the node unready, until it
	// takes it again.
	m.JournalFailing(true)
	code, body = get(t, srv, "/readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "journal cannot record intent")
	m.JournalFailing(false)
	code, _ = get(t, srv, "/readyz")
	assert.Equal(t, 200, code)

	// A loop that stopped turning is unhealthy.
	m.LoopTurned(time.Now().Add(-2 * time.Minute))
	code, body = get(t, srv, "/healthz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "no progress")
}

func TestExposition(t *testing.T) {
	m := metrics.New(time.Minute, "v1.2.3-test", "abc1234")
	m.HookRan(hooks.SubnetAdd, 3*time.Millisecond, nil)
	m.HookRan(hooks.SubnetAdd, time.Millisecond, errors.New("exit status 1"))
	m.CommandRan(hooks.SubnetAdd)
	m.StoreOp("etcd", "list", errors.New("unavailable"))
	m.Conflicts(map[string]int{"preexisting": 2})
	reloadAt := time.Now()
	m.Reloaded(reloadAt, true)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	code, body := get(t, srv, "/metrics")
	require.Equal(t, 200, code)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	val := func(name, label, value string) float64 {
		for _, mm := range fams[name].GetMetric() {
			for _, lp := range mm.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if c := mm.GetCounter(); c != nil {
						return c.GetValue()
					}
					if g := mm.GetGauge(); g != nil {
						return g.GetValue()
					}
					return float64(mm.GetHistogram().GetSampleCount())
				}
			}
		}
		return -1
	}
	assert.Equal(t, 2.0, val("flexhook_hook_runs_total", "hook", "SubnetAddCommand"))
	assert.Equal(t, 1.0, val("flexhook_hook_failures_total", "hook", "SubnetAddCommand"))
	assert.Equal(t, 0.0, val("flexhook_hook_failures_total", "hook", "ShutdownCommand"), "every hook shows from the start")
	assert.Equal(t, 2.0, val("flexhook_hook_duration_seconds", "hook", "SubnetAddCommand"))
	assert.Equal(t, 1.0, val("flexhook_commands_total", "hook", "SubnetAddCommand"))
	assert.Equal(t, 1.0, val("flexhook_store_operations_total", "result", "error"))
	assert.Equal(t, 2.0, val("flexhook_leases_conflicting", "reason", "preexisting"))
	assert.Equal(t, 0.0, val("flexhook_leases_conflicting", "reason", "other_lease"), "every reason shows")
	require.Contains(t, fams, "flexhook_build_info")
	labels := map[string]string{}
	for _, lp := range fams["flexhook_build_info"].GetMetric()[0].GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	assert.Equal(t, "v1.2.3-test", labels["version"], "the version cmd gives (main.version), not Go's module version")
	assert.Equal(t, "abc1234", labels["revision"], "the commit cmd gives (main.commit)")
	for _, r := range leases.Reasons { // every reason shows, at 0, from the start
		assert.Equal(t, 0.0, val("flexhook_leases_refused_current", "reason", string(r)), r)
		assert.Equal(t, 0.0, val("flexhook_leases_refused_total", "reason", string(r)), r)
	}
	assert.Equal(t, 1.0, val("flexhook_config_reloads_total", "result", "accepted"))
	assert.Equal(t, 0.0, val("flexhook_config_reloads_total", "result", "refused"))
	assert.InDelta(t, float64(reloadAt.Unix()), fams["flexhook_config_last_reload_timestamp_seconds"].GetMetric()[0].GetGauge().GetValue(), 1)
	assert.Contains(t, fams, "go_goroutines")
	for name := range fams {
		if strings.HasPrefix(name, "flexhook_") {
			for _, mm := range fams[name].GetMetric() {
				for _, lp := range mm.GetLabel() {
					assert.NotEqual(t, "subnet", lp.GetName(), "%s: no lease data in labels", name)
				}
			}
		}
	}
}

// Asked for OpenMetrics, /metrics serves it, and no two families share a
// name (a counter's family drops its _total: a gauge of that name would
// clash, as flexhook_leases_refused once did).
func TestOpenMetrics(t *testing.T) {
	m := metrics.New(time.Minute, "", "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/openmetrics-text")
	families := map[string]int{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]]++
		}
	}
	require.Contains(t, families, "flexhook_leases_refused", "the counter's family")
	for name, n := range families {
		assert.Equal(t, 1, n, "family %s is declared %d times", name, n)
	}
	assert.True(t, strings.HasSuffix(strings.TrimSpace(string(body)), "# EOF"))
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.HookRan(hooks.SubnetAdd, time.Second, nil) // must not panic
	m.Leases(metrics.LeaseCounts{}, nil, time.Time{})
	m.StoreOp("file", "list", nil)
}
