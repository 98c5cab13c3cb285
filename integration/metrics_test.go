//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
)

// metricsConfig routes like host-gw. PostStartupCommand waits (bounded)
// for a file "go" in the state dir, so the test sees the node before its
// start-up is done; SubnetAddCommand fails while "fail-add" exists.
const metricsConfig = `{
  "Network": "10.50.0.0/16",
  "Backend": {
    "Type": "extension",
    "PostStartupCommand": "i=0; while [ ! -e go ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done; test -e go",
    "SubnetAddCommand": "if [ -e fail-add ]; then echo refusing >&2; exit 3; fi; ip route replace $SUBNET via $PUBLIC_IP",
    "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"
  }
}`

const metricsPort = "9180"

// TestMetrics runs two host-gw nodes with --metrics-addr on their underlay
// address, reads /metrics, /healthz and /readyz from the hub, and checks
// that the probes and the counters follow the node through its start-up,
// a peer coming, a hook failing and a lease going.
func TestMetrics(t *testing.T) {
	bin := requireLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	_, err := lab.AddHubAddress(ctx)
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(metricsConfig), 0o600))
	args := func(i int) []string {
		return []string{"--config", cfg, "--metrics-addr", net.JoinHostPort(lab.Underlay(i).String(), metricsPort)}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.DialHub(ctx, network, addr)
		}}}
	get := func(i int, path string) (int, string, error) {
		url := "http://" + net.JoinHostPort(lab.Underlay(i).String(), metricsPort) + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	probe := func(i int, path string, want int) func() error {
		return func() error {
			code, body, err := get(i, path)
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("%s: %d %q, want %d", path, code, strings.TrimSpace(body), want)
			}
			return nil
		}
	}
	// value reads one series from node i's /metrics, parsed with the
	// Prometheus text parser.
	value := func(i int, name string, labels map[string]string) (float64, error) {
		code, body, err := get(i, "/metrics")
		if err != nil || code != 200 {
			return 0, fmt.Errorf("/metrics: %d %w", code, err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			return 0, err
		}
	next:
		for _, m := range fams[name].GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue next
				}
			}
			switch fams[name].GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), nil
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), nil
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), nil
			}
		}
		return 0, fmt.Errorf("no %s%v", name, labels)
	}
	reaches := func(i int, name string, labels map[string]string, want float64) func() error {
		return func() error {
			v, err := value(i, name, labels)
			if err != nil {
				return err
			}
			if v < want {
				return fmt.Errorf("%s%v = %v, want at least %v", name, labels, v, want)
			}
			return nil
		}
	}
	is := func(i int, name string, labels map[string]string, want float64) func() error {
		return func() error {
			v, err := value(i, name, labels)
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
			}
			return nil
		}
	}

	// Start-up: alive, not ready until PostStartupCommand is done and the
	// first snapshot applied. StartNode returns once subnet.env is
	// written, after PostStartupCommand: it waits beside the probes.
	started := make(chan error, 1)
	go func() { started <- lab.StartNode(ctx, 1, args(1)...) }()
	eventually(t, ctx, "node 1 /healthz", probe(1, "/healthz", 200))
	require.NoError(t, probe(1, "/readyz", 503)(), "ready before PostStartupCommand is done")
	_, body, err := get(1, "/readyz")
	require.NoError(t, err)
	assert.Contains(t, body, "PostStartupCommand")
	require.NoError(t, os.WriteFile(filepath.Join(lab.StateDir(1), "go"), nil, 0o600))
	require.NoError(t, <-started)
	eventually(t, ctx, "node 1 /readyz", probe(1, "/readyz", 200))
	eventually(t, ctx, "PostStartup counted", is(1, "flexhook_hook_runs_total", map[string]string{"hook": "PostStartupCommand"}, 1))
	eventually(t, ctx, "a store acquire", reaches(1, "flexhook_store_operations_total", map[string]string{"store": "file", "op": "acquire", "result": "ok"}, 1))
	eventually(t, ctx, "a last sync", reaches(1, "flexhook_last_sync_timestamp_seconds", nil, float64(time.Now().Add(-time.Hour).Unix())))

	// A peer comes: node 1 runs its Add (one command: ip).
	require.NoError(t, os.MkdirAll(lab.StateDir(2), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(lab.StateDir(2), "go"), nil, 0o600))
	require.NoError(t, lab.StartNode(ctx, 2, args(2)...))
	add := map[string]string{"hook": "SubnetAddCommand"}
	eventually(t, ctx, "node 1 applies node 2", is(1, "flexhook_leases", map[string]string{"state": "applied"}, 1))
	eventually(t, ctx, "Add counted", reaches(1, "flexhook_hook_runs_total", add, 1))
	eventually(t, ctx, "its command counted", reaches(1, "flexhook_commands_total", add, 1))
	eventually(t, ctx, "node 2 ready", probe(2, "/readyz", 200))

	// A hook fails: a third lease, written into the store, while Adds fail.
	require.NoError(t, os.WriteFile(filepath.Join(lab.StateDir(1), "fail-add"), nil, 0o600))
	fake := leases.Lease{Subnet: netip.MustParsePrefix("10.50.250.0/24"),
		Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.99"), BackendType: leases.BackendType}}
	writeLeaseFile(t, lab, fake)
	eventually(t, ctx, "the failure counted", reaches(1, "flexhook_hook_failures_total", add, 1))
	eventually(t, ctx, "failing gauge", is(1, "flexhook_leases", map[string]string{"state": "failing"}, 1))
	eventually(t, ctx, "retries", reaches(1, "flexhook_hook_retries_total", add, 1))
	require.NoError(t, probe(1, "/readyz", 200)(), "a failure younger than the bound keeps the node ready")

	// The lease goes: its Remove runs (with the data the failed Add had),
	// nothing fails any more.
	require.NoError(t, os.Remove(filepath.Join(lab.StoreDir(), "subnets", leases.SubnetKey(fake.Subnet, netip.Prefix{}))))
	eventually(t, ctx, "Remove counted", reaches(1, "flexhook_hook_runs_total", map[string]string{"hook": "SubnetRemoveCommand"}, 1))
	eventually(t, ctx, "nothing failing", is(1, "flexhook_leases", map[string]string{"state": "failing"}, 0))
	eventually(t, ctx, "node 2 still applied", is(1, "flexhook_leases", map[string]string{"state": "applied"}, 1))
	require.NoError(t, probe(1, "/healthz", 200)())
	_, body, err = get(1, "/metrics")
	require.NoError(t, err)
	assert.NotContains(t, body, "10.50.250.0", "no lease data in the metrics")
	assert.Contains(t, body, "flexhook_build_info{")
}

// writeLeaseFile puts a lease into the lab's file store, as another node
// would.
func writeLeaseFile(t *testing.T, lab *netlab.Lab, l leases.Lease) {
	t.Helper()
	dir := filepath.Join(lab.StoreDir(), "subnets")
	b, err := leases.MarshalAttrs(l.Attrs)
	require.NoError(t, err)
	tmp := filepath.Join(dir, ".tmp-metrics")
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(tmp, exp, exp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, leases.SubnetKey(l.Subnet, l.IPv6Subnet))))
}
