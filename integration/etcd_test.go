//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// The etcd a lab's nodes share runs in the lab's hub namespace, listening
// on the hub's underlay address, as a child process: this test binary
// started again with etcdDirEnv set (TestMain calls runEtcdChild), so a
// test can SIGKILL it and start it again on the same data dir and ports.
const (
	etcdDirEnv  = "FHIT_ETCD_DATA_DIR"
	etcdHostEnv = "FHIT_ETCD_HOST"
	etcdReady   = "fhit-etcd-ready"
	etcdPrefix  = "/coreos.com/network"
	// outage is how long etcd stays down, or a node cut off from it.
	outage = 10 * time.Second
)

// runEtcdChild serves etcd until SIGTERM when this process was started as
// a lab's etcd, and then exits; otherwise it returns at once.
func runEtcdChild() {
	dir := os.Getenv(etcdDirEnv)
	if dir == "" {
		return
	}
	if err := serveEtcd(dir, os.Getenv(etcdHostEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "lab etcd: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveEtcd(dir, host string) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	cfg := embed.NewConfig()
	cfg.Name = "fhlab"
	cfg.Dir = dir
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	// A single member elects itself at once with short raft timings.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	curl := url.URL{Scheme: "http", Host: net.JoinHostPort(host, "2379")}
	purl := url.URL{Scheme: "http", Host: "127.0.0.1:2380"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println(etcdReady)
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}

// labEtcd is the etcd child of one lab.
type labEtcd struct {
	t        *testing.T
	lab      *netlab.Lab
	self     string
	host     netip.Addr
	dir      string
	logPath  string
	Endpoint string // http://192.0.2.1:2379, reachable from every node

	cmd  *exec.Cmd
	done chan struct{}
}

// startLabEtcd gives the hub its underlay address and starts etcd there.
// It is killed when the test ends (Close would kill it too).
func startLabEtcd(t *testing.T, ctx context.Context, lab *netlab.Lab) *labEtcd {
	t.Helper()
	host, err := lab.AddHubAddress(ctx)
	require.NoError(t, err)
	self, err := os.Executable()
	require.NoError(t, err)
	work := t.TempDir()
	e := &labEtcd{
		t: t, lab: lab, self: self, host: host,
		dir:      filepath.Join(work, "data"),
		logPath:  filepath.Join(work, "etcd.log"),
		Endpoint: "http://" + net.JoinHostPort(host.String(), "2379"),
	}
	t.Cleanup(func() {
		e.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(e.logPath)
			t.Logf("lab etcd log:\n%s", b)
		}
	})
	e.Start(ctx)
	return e
}

// Start starts etcd (again) and waits until it serves.
func (e *labEtcd) Start(ctx context.Context) {
	e.t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(e.t, err)
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", e.lab.HubNetns(), e.self)
	cmd.Env = append(os.Environ(), etcdDirEnv+"="+e.dir, etcdHostEnv+"="+e.host.String())
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	require.NoError(e.t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(e.t, cmd.Start())
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if sc.Text() == etcdReady && !signalled {
				signalled = true
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	e.cmd, e.done = cmd, done
	select {
	case <-ready:
		e.t.Logf("lab etcd serving on %s, pid %d", e.Endpoint, cmd.Process.Pid)
	case <-done:
		e.t.Fatalf("lab etcd exited before serving: %v", cmd.ProcessState)
	case <-time.After(30 * time.Second):
		e.t.Fatal("lab etcd not serving after 30s")
	case <-ctx.Done():
		e.t.Fatal(ctx.Err())
	}
}

// Kill SIGKILLs etcd (no clean shutdown) and waits until it is gone.
func (e *labEtcd) Kill() {
	if e.cmd == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	<-e.done
}

// Client is an etcd client for the test itself, dialling from the hub.
func (e *labEtcd) Client(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return e.lab.DialHub(ctx, "tcp", addr)
		})},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newLab makes a lab of nodes running bin, checked at the end for
// leftovers (after Close, which New registers).
func newLab(t *testing.T, ctx context.Context, bin string, nodes int, opts ...netlab.Option) *netlab.Lab {
	t.Helper()
	var lab *netlab.Lab
	// Registered before New registers Close, so it runs after Close.
	t.Cleanup(func() {
		if lab != nil {
			require.Empty(t, lab.Leftovers(), "lab left things behind")
		}
	})
	lab, err := netlab.New(ctx, t, append([]netlab.Option{netlab.Nodes(nodes), netlab.Flexhook(bin)}, opts...)...)
	require.NoError(t, err)
	return lab
}

// flexhookOn runs the flexhook binary in node i's namespace (the lab's
// etcd is reachable only on the underlay).
func flexhookOn(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, bin string, args ...string) string {
	t.Helper()
	out, err := lab.Exec(ctx, i, append([]string{bin}, args...)...)
	require.NoError(t, err, "%s", out)
	return string(out)
}

// applied reads the remote subnets node i's flexhook has applied, from its
// status.json.
func applied(lab *netlab.Lab, i int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(lab.StateDir(i), "status.json"))
	if err != nil {
		return nil, err
	}
	var st struct{ Applied []string }
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return st.Applied, nil
}

// requireApplied waits until node i has applied every subnet in has and
// none in hasNot.
func requireApplied(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, has, hasNot []netip.Prefix) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("node %d applies %v and drops %v", i, has, hasNot), func() error {
		got, err := applied(lab, i)
		if err != nil {
			return err
		}
		for _, s := range has {
			if !slices.Contains(got, s.String()) {
				return fmt.Errorf("applied %v lacks %s", got, s)
			}
		}
		for _, s := range hasNot {
			if slices.Contains(got, s.String()) {
				return fmt.Errorf("applied %v still has %s", got, s)
			}
		}
		return nil
	})
}

// logSince is node i's log after offset (a length of an earlier Logs).
func logSince(lab *netlab.Lab, i, offset int) string {
	l := lab.Logs(i)
	if offset > len(l) {
		return ""
	}
	return l[offset:]
}

// TestEtcdVxlan runs the vxlan preset with the lab's etcd as the store:
// a mesh of three, a fourth node joining, one leaving, and an etcd outage
// (SIGKILL, 10 s) during which a node boots and another stops: the nodes
// keep running and every change made around the outage is applied.
func TestEtcdVxlan(t *testing.T) {
	bin := requireLab(t, "bridge", "arp")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 3)
	etcd := startLabEtcd(t, ctx, lab)
	vx := presetNamed(t, "vxlan")
	args := []string{"--preset", "vxlan", "--trace", "--etcd-endpoints", etcd.Endpoint}
	for i := 1; i <= 3; i++ {
		require.NoError(t, lab.StartNode(ctx, i, args...))
	}
	require.Len(t, map[netip.Prefix]bool{lab.Subnet(1): true, lab.Subnet(2): true, lab.Subnet(3): true}, 3,
		"nodes must get distinct subnets")

	t.Log("step 1: three nodes reach each other over flannel-vxlan")
	before := deviceStats(t, ctx, lab, vx, []int{1, 2, 3})
	requireMesh(t, ctx, lab, "etcd: after start", []int{1, 2, 3})
	vx.proveOverlay(t, ctx, lab, []int{1, 2, 3}, before)

	t.Log("step 2: flexhook leases lists them from etcd with VTEP MAC and TTL")
	out := flexhookOn(t, ctx, lab, 1, bin, "leases", "--etcd-endpoints", etcd.Endpoint)
	for i := 1; i <= 3; i++ {
		mac, err := linkAddress(ctx, lab, i, "flannel-vxlan")
		require.NoError(t, err)
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(lab.Subnet(i).String())+`\s+`+regexp.QuoteMeta(lab.Underlay(i).String())+
			`\s+`+regexp.QuoteMeta(mac)+`\s+(23h5\dm|24h00m)$`, out)
	}

	t.Log("step 3: a fourth node joins and is reachable from all")
	four, err := lab.AddNode(ctx)
	require.NoError(t, err)
	require.NoError(t, lab.StartNode(ctx, four, args...))
	before = deviceStats(t, ctx, lab, vx, []int{1, 2, 3, four})
	requireMesh(t, ctx, lab, "etcd: after node 4 joined", []int{1, 2, 3, four})
	vx.proveOverlay(t, ctx, lab, []int{1, 2, 3, four}, before)

	t.Log("step 4: node 3 leaves (flexhook leave): ShutdownCommand, its lease deleted, the others drop it")
	sub3 := lab.Subnet(3)
	require.NoError(t, lab.LeaveNode(ctx, 3))
	requireShutdownRan(t, ctx, lab, vx, 3)
	for _, i := range []int{1, 2, four} {
		requireApplied(t, ctx, lab, i, nil, []netip.Prefix{sub3})
	}
	require.NotContains(t, flexhookOn(t, ctx, lab, 1, bin, "leases", "--etcd-endpoints", etcd.Endpoint), sub3.String())

	t.Log("step 5: etcd killed for 10s; meanwhile node 5 boots and node 4 stops")
	etcd.Kill()
	down := time.Now()
	five, err := lab.AddNode(ctx)
	require.NoError(t, err)
	started := make(chan error, 1)
	go func() { started <- lab.StartNode(ctx, five, args...) }()
	sub4 := lab.Subnet(four)
	// A stop is a restart: node 4 exits 0 and keeps its backend.
	require.NoError(t, lab.StopNode(ctx, four), "a node stops cleanly while etcd is down")
	eventually(t, ctx, "node 5 retries etcd", func() error {
		if !strings.Contains(lab.Logs(five), "etcd not reachable; retrying") {
			return fmt.Errorf("no retry logged")
		}
		return nil
	})
	time.Sleep(time.Until(down.Add(outage))) // the outage itself, not a wait for a result
	require.True(t, lab.Running(1) && lab.Running(2), "nodes must outlive an etcd outage")
	etcd.Start(ctx)

	t.Log("step 6: etcd is back: node 5 gets its lease, node 4's is removed, all applied")
	select {
	case err := <-started:
		require.NoError(t, err, "node 5 must start once etcd is back")
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	require.Contains(t, lab.Logs(five), "etcd reachable")
	require.Equal(t, "removed "+sub4.String()+"\n",
		flexhookOn(t, ctx, lab, four, bin, "leases", "remove", sub4.String(), "--etcd-endpoints", etcd.Endpoint))
	for _, i := range []int{1, 2} {
		requireApplied(t, ctx, lab, i, []netip.Prefix{lab.Subnet(five)}, []netip.Prefix{sub4, sub3})
	}
	requireApplied(t, ctx, lab, five, []netip.Prefix{lab.Subnet(1), lab.Subnet(2)}, []netip.Prefix{sub4, sub3})
	before = deviceStats(t, ctx, lab, vx, []int{1, 2, five})
	requireMesh(t, ctx, lab, "etcd: after the outage", []int{1, 2, five})
	vx.proveOverlay(t, ctx, lab, []int{1, 2, five}, before)

	for _, i := range []int{1, 2, five} {
		require.NoError(t, lab.LeaveNode(ctx, i))
		requireShutdownRan(t, ctx, lab, vx, i)
	}
	require.NoError(t, lab.Close())
}

// cut partitions node i from etcd: its packets to etcd are rejected,
// etcd's to it dropped, and its open connections to etcd killed. The
// rules live in the node's namespace and go with it.
func cut(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, etcdAddr netip.Addr) {
	t.Helper()
	a := etcdAddr.String()
	for _, rule := range [][]string{
		{"add", "table", "inet", "fhit-cut"},
		{"add", "chain", "inet", "fhit-cut", "out", "{", "type", "filter", "hook", "output", "priority", "0", ";", "}"},
		{"add", "chain", "inet", "fhit-cut", "in", "{", "type", "filter", "hook", "input", "priority", "0", ";", "}"},
		{"add", "rule", "inet", "fhit-cut", "out", "ip", "daddr", a, "tcp", "dport", "2379", "reject", "with", "tcp", "reset"},
		{"add", "rule", "inet", "fhit-cut", "in", "ip", "saddr", a, "tcp", "sport", "2379", "drop"},
	} {
		out, err := lab.Exec(ctx, i, append([]string{"nft"}, rule...)...)
		require.NoError(t, err, "%s", out)
	}
	// Kill the open connections (without kernel socket-destroy support
	// the rules break them at the client's next keepalive) and wait until
	// none is left, so nothing etcd sends from now on reaches the node.
	_, _ = lab.Exec(ctx, i, "ss", "-K", "dst", a, "dport", "=", "2379")
	eventually(t, ctx, fmt.Sprintf("node %d has no connection to etcd", i), func() error {
		out, err := lab.Exec(ctx, i, "ss", "-Htn", "state", "established", "dst", a, "dport", "=", "2379")
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("still connected: %s", s)
		}
		return nil
	})
}

func heal(t *testing.T, ctx context.Context, lab *netlab.Lab, i int) {
	t.Helper()
	out, err := lab.Exec(ctx, i, "nft", "delete", "table", "inet", "fhit-cut")
	require.NoError(t, err, "%s", out)
}

// routeTo returns node i's route to subnet, if any.
func routeTo(ctx context.Context, lab *netlab.Lab, i int, subnet netip.Prefix) (netlab.Route, bool, error) {
	rs, err := lab.Routes(ctx, i)
	if err != nil {
		return netlab.Route{}, false, err
	}
	for _, r := range rs {
		if r.Dst == subnet.String() {
			return r, true, nil
		}
	}
	return netlab.Route{}, false, nil
}

// requireRoutes waits until node i routes add via gw on eth0 and has no
// route to gone.
func requireRoutes(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, add netip.Prefix, gw netip.Addr, gone netip.Prefix) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("node %d routes %s via %s and not %s", i, add, gw, gone), func() error {
		r, ok, err := routeTo(ctx, lab, i, add)
		if err != nil {
			return err
		}
		if want := (netlab.Route{Dst: add.String(), Gateway: gw.String(), Dev: "eth0"}); !ok || r != want {
			return fmt.Errorf("route to %s: %+v, want %+v", add, r, want)
		}
		if _, ok, err := routeTo(ctx, lab, i, gone); err != nil || ok {
			return fmt.Errorf("still a route to %s (%w)", gone, err)
		}
		return nil
	})
}

var hookApplied = regexp.MustCompile(`msg="hook applied" hook=(\w+) subnet=(\S+)`)

// TestEtcdPartition cuts one host-gw node off from etcd while a node
// joins and another leaves, and compacts etcd's history: the cut-off node
// keeps running with its old routes until the partition heals, then lists
// again and runs exactly the missing SubnetAdd and SubnetRemove. The
// nodes read the config from <prefix>/config in etcd.
func TestEtcdPartition(t *testing.T) {
	bin := requireLab(t, "nft", "ss")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 3)
	etcd := startLabEtcd(t, ctx, lab)
	conf, err := exec.CommandContext(ctx, bin, "presets", "host-gw").Output()
	require.NoError(t, err)
	ec := etcd.Client(t)
	_, err = ec.Put(ctx, etcdPrefix+"/config", string(conf))
	require.NoError(t, err)
	hg := presetNamed(t, "host-gw")
	args := []string{"--trace", "--log-level", "debug", "--etcd-endpoints", etcd.Endpoint} // no --preset: the config is etcd's
	for i := 1; i <= 3; i++ {
		require.NoError(t, lab.StartNode(ctx, i, args...))
	}
	require.Contains(t, lab.Logs(1), "config="+etcdPrefix+"/config")
	requireMesh(t, ctx, lab, "etcd host-gw: after start", []int{1, 2, 3})
	hg.proveOverlay(t, ctx, lab, []int{1, 2, 3}, nil)

	t.Log("step 1: node 1 cut off from etcd")
	cutAt := len(lab.Logs(1))
	cut(t, ctx, lab, 1, etcd.host)
	cutTime := time.Now()

	t.Log("step 2: meanwhile node 4 joins and node 3 leaves")
	four, err := lab.AddNode(ctx)
	require.NoError(t, err)
	require.NoError(t, lab.StartNode(ctx, four, args...))
	sub3, sub4 := lab.Subnet(3), lab.Subnet(four)
	require.NoError(t, lab.StopNode(ctx, 3))
	flexhookOn(t, ctx, lab, 3, bin, "leases", "remove", sub3.String(), "--etcd-endpoints", etcd.Endpoint)
	requireRoutes(t, ctx, lab, 2, sub4, lab.Underlay(four), sub3)
	_, has4, err := routeTo(ctx, lab, 1, sub4)
	require.NoError(t, err)
	_, has3, err := routeTo(ctx, lab, 1, sub3)
	require.NoError(t, err)
	require.True(t, has3 && !has4, "node 1 changed its routes while cut off: the partition leaked")
	// etcd forgets the history node 1 missed: it cannot resume its watch
	// and must list again and diff.
	rev, err := ec.Get(ctx, etcdPrefix+"/config")
	require.NoError(t, err)
	_, err = ec.Compact(ctx, rev.Header.Revision)
	require.NoError(t, err)
	time.Sleep(time.Until(cutTime.Add(outage))) // the partition itself, not a wait for a result
	require.True(t, lab.Running(1), "a node cut off from etcd must keep running")

	t.Log("step 3: healed: node 1 runs exactly the missing Add and Remove")
	heal(t, ctx, lab, 1)
	requireRoutes(t, ctx, lab, 1, sub4, lab.Underlay(four), sub3)
	requireMesh(t, ctx, lab, "etcd host-gw: after the partition healed", []int{1, 2, four})
	hg.proveOverlay(t, ctx, lab, []int{1, 2, four}, nil)
	require.Regexp(t, `lease watch interrupted, listing again.*compacted`, logSince(lab, 1, cutAt),
		"node 1 must have listed again after the compaction")
	var got []string
	for _, m := range hookApplied.FindAllStringSubmatch(logSince(lab, 1, cutAt), -1) {
		got = append(got, m[1]+" "+m[2])
	}
	require.ElementsMatch(t, []string{"SubnetAddCommand " + sub4.String(), "SubnetRemoveCommand " + sub3.String()}, got,
		"hooks node 1 ran since it was cut off")

	for _, i := range []int{1, 2, four} {
		require.NoError(t, lab.StopNode(ctx, i))
	}
	require.NoError(t, lab.Close())
}

// longOutage is the partition of TestEtcdLongPartition.
const longOutage = 30 * time.Second

// TestEtcdLongPartition cuts node 1 off from etcd for 30 s while its lease
// is due for renewal every ~10 s and an Add keeps failing: status.json
// keeps being written, the failing Add keeps being retried, each failed
// renewal is logged with its cause; after the heal the lease is renewed,
// the missed change is applied and nothing is lost.
func TestEtcdLongPartition(t *testing.T) {
	bin := requireLab(t, "nft", "ss")
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	etcd := startLabEtcd(t, ctx, lab)
	// host-gw, but node 1's Add for node 2 fails while its state dir holds
	// the file fail-192.0.2.12.
	conf := `{"Network": "10.50.0.0/16", "Backend": {"Type": "extension",
		"SubnetAddCommand": "ip route replace $SUBNET via $PUBLIC_IP && test ! -e fail-$PUBLIC_IP",
		"SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"}}`
	ec := etcd.Client(t)
	_, err := ec.Put(ctx, etcdPrefix+"/config", conf)
	require.NoError(t, err)
	failFile := filepath.Join(lab.StateDir(1), "fail-"+lab.Underlay(2).String())
	require.NoError(t, os.WriteFile(failFile, nil, 0o600))
	// A 2 min lease renewed 110 s before it ends: every ~10 s.
	args := []string{"--etcd-endpoints", etcd.Endpoint, "--lease-ttl", "120s", "--subnet-lease-renew-margin", "110s"}
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StartNode(ctx, i, args...))
	}
	sub2 := lab.Subnet(2).Masked()
	failing := func() (runner.Status, int) {
		st, err := runner.ReadStatus(lab.StateDir(1))
		require.NoError(t, err)
		for _, f := range st.Failing {
			if f.Subnet == sub2 {
				return st, f.Attempts
			}
		}
		return st, 0
	}
	eventually(t, ctx, "node 1's Add for node 2 fails", func() error {
		if _, n := failing(); n == 0 {
			return fmt.Errorf("not failing yet")
		}
		return nil
	})

	t.Log("cut node 1 off from etcd for 30 s")
	cutAt := len(lab.Logs(1))
	cut(t, ctx, lab, 1, etcd.host)
	cutTime := time.Now()
	_, attemptsAtCut := failing()
	three, err := lab.AddNode(ctx)
	require.NoError(t, err)
	require.NoError(t, lab.StartNode(ctx, three, args...))
	sub3 := lab.Subnet(three).Masked()
	time.Sleep(time.Until(cutTime.Add(longOutage))) // the partition itself, not a wait for a result
	st, attempts := failing()
	require.True(t, lab.Running(1), "a node cut off from etcd keeps running")
	require.True(t, st.UpdatedAt.After(cutTime.Add(longOutage/2)), "status.json was last written at %s, the cut was at %s", st.UpdatedAt, cutTime)
	require.Greater(t, attempts, attemptsAtCut, "the failing Add was retried during the partition")
	logs := logSince(lab, 1, cutAt)
	require.Regexp(t, `msg="renew lease failed; retrying".*error=`, logs, "a failed renewal is logged with its cause")
	_, has3, err := routeTo(ctx, lab, 1, sub3)
	require.NoError(t, err)
	require.False(t, has3, "node 1 saw node 3 join while cut off: the partition leaked")

	t.Log("heal: the lease is renewed and nothing is lost")
	heal(t, ctx, lab, 1)
	require.NoError(t, os.Remove(failFile))
	requireRoutes(t, ctx, lab, 1, sub3, lab.Underlay(three), netip.Prefix{})
	healAt := len(lab.Logs(1))
	// The failing Add retries with its backoff (up to 2 min) since the
	// cause went away.
	eventuallyWithin(t, ctx, bulkTimeout, "node 1 has both peers applied and nothing failing", func() error {
		st, err := runner.ReadStatus(lab.StateDir(1))
		if err != nil {
			return err
		}
		if len(st.Failing) > 0 || len(st.Applied) != 2 {
			return fmt.Errorf("applied %v, failing %v", st.Applied, st.Failing)
		}
		return nil
	})
	requireMesh(t, ctx, lab, "after the long partition", []int{1, 2, three})
	key := etcdPrefix + "/subnets/" + leases.SubnetKey(lab.Subnet(1).Masked(), netip.Prefix{})
	eventually(t, ctx, "node 1 renews its lease again", func() error {
		resp, err := ec.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			return fmt.Errorf("get %s: %w", key, err)
		}
		ttl, err := ec.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
		if err != nil {
			return err
		}
		if ttl.TTL < 100 {
			return fmt.Errorf("TTL %d s left: not renewed since the heal", ttl.TTL)
		}
		return nil
	})
	require.NotContains(t, logSince(lab, 1, healAt), "was deleted by someone else")
	for _, i := range []int{1, 2, three} {
		require.NoError(t, lab.StopNode(ctx, i))
	}
	require.NoError(t, lab.Close())
}
