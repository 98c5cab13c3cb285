package runner

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flexhook/flexhook/hooks"
	fhmetrics "github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner/shell"
)

// heldProfile, if set, is where BenchmarkSyncMemory writes a heap
// profile taken once the leases are applied, while the engine still
// runs: what it holds (go tool pprof -sample_index=inuse_space).
var heldProfile = flag.String("heldprofile", "", "write a heap profile of the synced engine to this file")

// memLeases is how many remote leases BenchmarkSyncMemory syncs: the
// convbench rss section's number (issue 24).
const memLeases = 10000

// BenchmarkSyncMemory measures what the engine holds per lease: an
// Engine (journal, status.json, ownership table and metrics, as
// `flexhook run` has them) syncs memLeases host-gw leases from an
// in-memory store ("mem": the engine alone) or the file store ("file":
// the engine and the file store's watch), through an executor that does
// what the fast path does for `ip route add|del $SUBNET via $PUBLIC_IP`
// with no kernel: it claims the route in the ownership table and
// succeeds. It reports, for one initial sync:
//
//   - live-B/lease: the heap still in use once every lease is applied
//     (after a GC), less the heap before the engine started;
//   - peak-MB: the most heap in use (live and garbage) seen during the
//     sync, sampled every millisecond: what VmHWM follows;
//   - peak-live-MB: the most heap a GC found live during the sync: the
//     next GC lets the heap grow to twice that (GOGC=100), so it sets
//     peak-MB;
//   - alloc-B/lease and allocs/lease: everything the sync allocated.
//
// Run it once: go test -run '^$' -bench SyncMemory -benchtime 1x ./runner
// (add -memprofile mem.out for what holds the memory).
func BenchmarkSyncMemory(b *testing.B) {
	for _, kind := range []string{"mem", "file"} {
		b.Run(kind, func(b *testing.B) {
			var r memResult
			for range b.N {
				r = syncMemory(b, kind, memLeases)
			}
			n := float64(memLeases)
			b.ReportMetric(float64(r.live)/n, "live-B/lease")
			b.ReportMetric(float64(r.peak)/(1<<20), "peak-MB")
			b.ReportMetric(float64(r.peakLive)/(1<<20), "peak-live-MB")
			b.ReportMetric(float64(r.alloc)/n, "alloc-B/lease")
			b.ReportMetric(float64(r.allocs)/n, "allocs/lease")
		})
	}
}

// memResult is what one sync of syncMemory cost.
type memResult struct {
	live, peak, peakLive, alloc, allocs uint64
}

// syncMemory runs an engine until it applied n leases of a store of
// kind ("mem" or "file") and measures it (see BenchmarkSyncMemory).
func syncMemory(b *testing.B, kind string, n int) memResult {
	b.Helper()
	b.StopTimer()
	dir := b.TempDir()
	stateDir := filepath.Join(dir, "state")
	var store leases.Store
	switch kind {
	case "mem":
		s := leasestest.New()
		for i := range n {
			s.Put(memLease(i))
		}
		store = s
	case "file":
		storeDir := filepath.Join(dir, "store")
		writeLeaseFiles(b, storeDir, n)
		// A re-list every 250ms: the daemon's sync of 10 000 leases takes
		// 20s, with a re-list every 5s (file.DefaultResync).
		s, err := file.New(storeDir, file.Logger(quietLog()), file.Resync(250*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		store = s
	}
	defer store.Close()

	cfg := memConfig(b)
	log := quietLog()
	m := fhmetrics.New(time.Minute, "bench", "")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		b.Fatal(err)
	}
	owners, err := openOwners(&osFS{dir: stateDir}, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	defer owners.Close()
	exec := &routeExec{owners: owners}
	e, err := New(cfg, m.Store(store, kind), exec, PublicIP(netip.MustParseAddr("192.0.2.1")), StateDir(stateDir),
		SubnetFile(filepath.Join(stateDir, "subnet.env")), Logger(log), Metrics(m), Ownership(owners), KeepOnStop(true))
	if err != nil {
		b.Fatal(err)
	}

	before := liveHeap()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.StartTimer()

	ctx, cancel := context.WithCancel(b.Context())
	stopPeak := samplePeak()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitApplied(b, stateDir, n, done)
	peak, peakLive := stopPeak()

	b.StopTimer()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	after := liveHeap()
	live := after - min(before, after)
	if *heldProfile != "" {
		writeHeapProfile(b, *heldProfile+"."+kind)
	}
	runtime.KeepAlive(e)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if got := exec.adds.Load(); got < int64(n) {
		b.Fatalf("%d Adds ran, want %d", got, n)
	}
	return memResult{live: live, peak: peak, peakLive: peakLive, alloc: ms1.TotalAlloc - ms0.TotalAlloc, allocs: ms1.Mallocs - ms0.Mallocs}
}

// memLease is the i-th remote lease, as convbench makes them.
func memLease(i int) leases.Lease {
	return leases.Lease{
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + i/256), byte(i % 256), 0}), 24),
		Attrs: leases.Attrs{PublicIP: netip.AddrFrom4([4]byte{172, 16, byte(1 + i/250), byte(1 + i%250)}),
			BackendType: leases.BackendType},
	}
}

// writeLeaseFiles fills a file store directory with n leases, each as
// another node's flexhook writes it.
func writeLeaseFiles(b *testing.B, dir string, n int) {
	b.Helper()
	sub := filepath.Join(dir, "subnets")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		b.Fatal(err)
	}
	exp := time.Now().Add(leases.DefaultTTL)
	for i := range n {
		l := memLease(i)
		v, err := leases.MarshalAttrs(l.Attrs)
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(sub, leases.SubnetKey(l.Subnet, l.IPv6Subnet))
		if err := os.WriteFile(p, v, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(p, exp, exp); err != nil {
			b.Fatal(err)
		}
	}
}

// memConfig is the host-gw preset on a Network wide enough for memLeases
// /24 leases.
func memConfig(b *testing.B) *hooks.Config {
	b.Helper()
	data, err := json.Marshal(map[string]any{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": map[string]string{
		"Type":                "extension",
		"SubnetAddCommand":    "ip route add $SUBNET via $PUBLIC_IP",
		"SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP",
	}})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := hooks.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// routeExec does a host-gw hook as the shell's fast path does it, with
// no kernel: the ownership table is asked for the route and told it was
// made (or deleted).
type routeExec struct {
	owners *Owners
	adds   atomic.Int64
}

func (x *routeExec) Run(_ context.Context, req shell.Request) (shell.Result, error) {
	var verb netcmd.Verb
	switch req.Hook.Kind {
	case hooks.SubnetAdd:
		verb = netcmd.Add
		x.adds.Add(1)
	case hooks.SubnetRemove:
		verb = netcmd.Del
	default:
		return shell.Result{}, nil
	}
	var subnet string
	for _, kv := range req.Env {
		if v, ok := strings.CutPrefix(kv, "SUBNET="); ok {
			subnet = v
		}
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return shell.Result{}, fmt.Errorf("SUBNET: %w", err)
	}
	obj := netcmd.RouteObject(p, 0, 0)
	if err := x.owners.Claim(req.Subnet, obj, verb); err != nil {
		return shell.Result{}, err
	}
	x.owners.Done(req.Subnet, obj, verb, true)
	return shell.Result{}, nil
}

// waitApplied waits until status.json shows n leases applied, written
// after the batch (not by its progress report) once the engine saw
// itself in sync: what follows a batch (the journal's rewrite) is done.
func waitApplied(b *testing.B, stateDir string, n int, done <-chan error) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute) // a hang guard
	for {
		st, err := ReadStatus(stateDir)
		if err == nil && len(st.Applied) >= n && st.Batch == nil && !st.LastSync.IsZero() {
			return
		}
		select {
		case err := <-done:
			b.Fatalf("engine stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatal(errors.New("leases not applied in time"))
		}
	}
}

func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// samplePeak samples the heap in use (objects, live or not yet
// collected) and the heap the last GC found live every millisecond until
// the returned function is called, which returns the most it saw of
// each.
func samplePeak() func() (inUse, live uint64) {
	stop := make(chan struct{})
	type result struct{ inUse, live uint64 }
	res := make(chan result)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
		var r result
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			r.inUse = max(r.inUse, s[0].Value.Uint64())
			r.live = max(r.live, s[1].Value.Uint64())
			select {
			case <-stop:
				res <- r
				return
			case <-t.C:
			}
		}
	}()
	return func() (uint64, uint64) {
		close(stop)
		r := <-res
		return r.inUse, r.live
	}
}
