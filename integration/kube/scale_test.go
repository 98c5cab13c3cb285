//go:build integration

package kubeit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
	"github.com/flexhook/flexhook/leases/kube"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	apiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

// The scale test's knobs, from the environment (`make bench-kube` sets
// them; see the Makefile).
const (
	// scaleNodesEnv is how many kubelet-sized Nodes TestScale creates
	// (default defaultScaleNodes).
	scaleNodesEnv = "FLEXHOOK_SCALE_NODES"
	// scaleMemLimitEnv, when set, is the agent's GOMEMLIMIT (e.g. 40MiB).
	// The test process's own GOMEMLIMIT would bound the API server too.
	scaleMemLimitEnv = "FLEXHOOK_SCALE_GOMEMLIMIT"
	// defaultScaleNodes is issue 24's count: the whole test takes about
	// 30 s with it (2 cores, warm build cache).
	defaultScaleNodes = 5000
	// scaleHeartbeats is how many status-only Node updates the agent
	// sees after it converged.
	scaleHeartbeats = 2000
	// scaleWorkers is how many requests the test has in flight at once.
	scaleWorkers = 32
	// scaleFlanneldEnv, when set, is a flanneld binary (make flanneld
	// builds one from flannel's source) that TestScale runs after the
	// agent on the same API server and Nodes, with the same recipe, for
	// the time and VmHWM side by side. Unset, flanneld is not run.
	scaleFlanneldEnv = "FLEXHOOK_FLANNELD_BIN"
)

var (
	// scaleNetwork holds the Nodes' podCIDRs, /24s: 32768 of them.
	scaleNetwork = netip.MustParsePrefix("10.128.0.0/9")
	// scalePeers holds the Nodes' public IPs; the agent's eth0 gets
	// scaleAgentPeerAddr in it, so that each is on-link for host-gw's
	// `ip route add $SUBNET via $PUBLIC_IP`.
	scalePeers         = netip.MustParsePrefix("100.64.0.0/10")
	scaleAgentPeerAddr = netip.MustParsePrefix("100.127.255.254/10")
)

const scaleAgentNode = "scale-agent"

// TestScale is issue 24's scale test: a real kube-apiserver holding N
// Nodes of a kubelet's size (FLEXHOOK_SCALE_NODES, default 5000), and one `flexhook run --kube-subnet-mgr` with the
// host-gw recipe and default flags in a network namespace. It prints how
// long the agent took from its start until the N routes were in its
// namespace's kernel, and its peak RSS (VmHWM) then; it asserts only
// behaviour:
//   - every Node's route is in the kernel;
//   - 2000 status-only updates (kubelet heartbeats) run no hook and make
//     neither the agent nor a kube store in this process see a snapshot;
//   - after the API server is stopped and started again (same etcd), the
//     agent follows the Nodes again without running any hook for a Node
//     that did not change.
//
// It has an API server of its own: TestKube's serves with a loopback
// certificate and a token that a restart replaces, and its Nodes would
// be in the way.
func TestScale(t *testing.T) {
	bin := os.Getenv("FLEXHOOK_BIN")
	switch {
	case os.Geteuid() != 0:
		testutil.SkipOrFail(t, "the scale test's agent runs in a network namespace: needs root")
	case bin == "":
		testutil.SkipOrFail(t, "FLEXHOOK_BIN is not set (make integration-kube sets it)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.SkipOrFail(t, "ip: %v", err)
	}
	n := defaultScaleNodes
	if v := os.Getenv(scaleNodesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n+4 > 1<<(24-scaleNetwork.Bits()) {
			t.Fatalf("%s=%q: want a count of Nodes from 1 to %d", scaleNodesEnv, v, 1<<(24-scaleNetwork.Bits())-4)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	lab, err := netlab.New(ctx, t, netlab.Nodes(1), netlab.Flexhook(bin))
	if err != nil {
		t.Fatal(err)
	}
	hub, err := lab.AddHubAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv := startScaleServer(t, hub)
	addr := net.JoinHostPort(hub.String(), "6443")
	ln, err := lab.ListenHub(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := proxyTo(t, ln, srv.addr)
	kc := srv.kubeconfig(t, "https://"+addr)

	// The cluster: the agent's own Node, then n kubelet-sized ones, each
	// with a lease as flanneld publishes it.
	if _, err := srv.client().CoreV1().Nodes().Create(ctx, scaleNode(0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := createNodes(ctx, srv.client(), 1, n); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	sample, err := srv.client().CoreV1().Nodes().Get(ctx, scaleNodeName(1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(sample.Status.Images) < 40 || len(sample.Status.Conditions) < 5 {
		t.Fatalf("the API server kept %d images and %d conditions of a Node's status: the test measures nothing",
			len(sample.Status.Images), len(sample.Status.Conditions))
	}
	t.Logf("created %d Nodes of %d bytes (JSON, as the API server returns them) in %v", n, len(js), took.Round(time.Millisecond))

	ns := lab.Netns(1)
	if _, err := lab.Exec(ctx, 1, "ip", "addr", "add", scaleAgentPeerAddr.String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	cfg := hostGwConfig(t, scaleNetwork)
	metricsAddr := net.JoinHostPort(lab.Underlay(1).String(), "9180")
	memLimit := os.Getenv(scaleMemLimitEnv)
	if memLimit != "" {
		t.Setenv("GOMEMLIMIT", memLimit) // the agent inherits the environment; this process's runtime read its own at start
	}
	start := time.Now()
	err = lab.StartNode(ctx, 1, "--kube-subnet-mgr", "--kubeconfig-file", kc, "--node-name", scaleAgentNode,
		"--config", cfg, "--metrics-addr", metricsAddr)
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, lab.Logs(1))
	}
	if got, want := lab.Subnet(1), scaleSubnet(0); got != want {
		t.Fatalf("agent has subnet %s, want its podCIDR %s", got, want)
	}
	waitRoutes(t, ctx, ns, n, 8*time.Minute, agentWaiter(lab))
	routesIn := time.Since(start)
	pid := agentPid(t, ctx, lab, bin)
	mem := procStatus(t, pid)
	hwm := mem["VmHWM"]
	t.Logf("agent (pid %d): %d routes in %v, VmHWM %.1f MiB (GOMEMLIMIT %q); now VmRSS %.1f MiB: RssAnon %.1f, RssFile %.1f (file-backed: mostly its binary)",
		pid, n, routesIn.Round(time.Millisecond), hwm, memLimit, mem["VmRSS"], mem["RssAnon"], mem["RssFile"])
	line := fmt.Sprintf("scale: nodes=%d routes_in=%.2fs vmhwm=%.1fMiB", n, routesIn.Seconds(), hwm)
	if memLimit != "" {
		line += " gomemlimit=" + memLimit
	}
	fmt.Println(line)

	m := &agentMetrics{lab: lab, addr: metricsAddr}
	if got := m.all(t, ctx)[runsAdd]; got != float64(n) {
		t.Errorf("%v SubnetAdd runs for %d Nodes", got, n)
	}

	t.Run("Heartbeats", func(t *testing.T) { scaleHeartbeatsTest(t, ctx, srv, lab, m, pid, n) })
	t.Run("APIServerRestart", func(t *testing.T) { scaleRestartTest(t, ctx, srv, proxy, lab, m, n) })
	if fl := os.Getenv(scaleFlanneldEnv); fl != "" {
		t.Run("Flanneld", func(t *testing.T) { scaleFlanneldTest(t, ctx, srv, lab, kc, fl, n, routesIn, hwm) })
	} else {
		t.Logf("flanneld is not compared: %s is not set (make flanneld; make bench-kube sets it)", scaleFlanneldEnv)
	}
}

// scaleFlanneldNode is the Node flanneld runs as in the comparison.
const scaleFlanneldNode = "scale-flanneld"

// scaleFlanneldTest runs flanneld (bin) with --kube-subnet-mgr and the
// same host-gw recipe in a namespace of its own, on the same API server
// and Nodes the agent synced, and prints its time from start to every
// route in its kernel and its VmHWM beside the agent's (routesIn, hwm).
// flanneld's extension backend runs the recipe's ip route add once per
// lease. It asserts only that flanneld routes every lease.
func scaleFlanneldTest(t *testing.T, ctx context.Context, srv *scaleServer, lab *netlab.Lab, kc, bin string, n int, routesIn time.Duration, hwm float64) {
	i, err := lab.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns := lab.Netns(i)
	// An address in scalePeers makes every public IP on-link, as for the
	// agent (whose address this is not: both sit on the lab's bridge).
	peerAddr := netip.PrefixFrom(addAddr(scaleAgentPeerAddr.Addr(), ^uint32(0)), scaleAgentPeerAddr.Bits())
	if _, err := lab.Exec(ctx, i, "ip", "addr", "add", peerAddr.String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	self := scaleNode(0)
	self.Name, self.Labels["kubernetes.io/hostname"] = scaleFlanneldNode, scaleFlanneldNode
	// Subnets n+1 and n+2 are the Nodes the heartbeat and restart
	// tests add.
	self.Spec.PodCIDR, self.Spec.PodCIDRs = scaleSubnet(n+3).String(), []string{scaleSubnet(n + 3).String()}
	self.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: lab.Underlay(i).String()}}
	if _, err := srv.client().CoreV1().Nodes().Create(ctx, self, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// flanneld's forward rules go through nft: there is no iptables here.
	cfg := presetConfig(t, "host-gw", func(cfg map[string]any) {
		cfg["Network"] = scaleNetwork.String()
		cfg["EnableNFTables"] = true
	})
	dir := t.TempDir()
	logPath := filepath.Join(dir, "flanneld.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "--kube-subnet-mgr", "--kubeconfig-file", kc,
		"--net-config-path", cfg, "--iface", "eth0", "--subnet-file", filepath.Join(dir, "subnet.env"), "--ip-masq=false")
	cmd.Env = append(os.Environ(), "NODE_NAME="+scaleFlanneldNode)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// Every lease the agent routes, and the agent's own.
	want, err := peerRoutes(ctx, lab.Netns(1))
	if err != nil {
		t.Fatal(err)
	}
	want++
	waitRoutes(t, ctx, ns, want, 8*time.Minute, routeWaiter{
		stuck: func() string {
			select {
			case err := <-exited:
				exited <- err // for the deferred stop
				return fmt.Sprintf("flanneld exited (%v)", err)
			default:
				return ""
			}
		},
		logs: func() string { b, _ := os.ReadFile(logPath); return testutil.Tail(string(b), 30) },
	})
	took := time.Since(start)
	fhwm := procStatus(t, cmd.Process.Pid)["VmHWM"]
	t.Logf("flanneld (pid %d, %s): %d routes in %v, VmHWM %.1f MiB", cmd.Process.Pid, bin, want, took.Round(time.Millisecond), fhwm)
	fmt.Printf("scale: flanneld nodes=%d routes_in=%.2fs vmhwm=%.1fMiB\n", n, took.Seconds(), fhwm)
	fmt.Printf("scale: flexhook/flanneld time=%.2f vmhwm=%.2f\n", routesIn.Seconds()/took.Seconds(), hwm/fhwm)
}

// scaleHeartbeatsTest sends scaleHeartbeats status-only updates across
// the Nodes, then one Node that is a lease change (the sentinel): the
// watch delivers in order, so by the time the agent has the sentinel's
// route it has seen every heartbeat. Neither the agent (its hooks, its
// batches, its last sync) nor a kube store watching in this process
// sees anything but the sentinel.
func scaleHeartbeatsTest(t *testing.T, ctx context.Context, srv *scaleServer, lab *netlab.Lab, m *agentMetrics, pid, n int) {
	api, err := kube.NewAPI(srv.admin())
	if err != nil {
		t.Fatal(err)
	}
	st, err := kube.New(ctx, kube.Config{Client: api})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	snaps := make(chan []leases.Lease, 16)
	watched := make(chan error, 1)
	go func() { watched <- st.Watch(wctx, snaps) }()
	defer func() {
		stop()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
		st.Close()
	}()
	select {
	case first := <-snaps:
		if len(first) != n+1 {
			t.Fatalf("the store's first snapshot has %d leases, want %d", len(first), n+1)
		}
	case <-ctx.Done():
		t.Fatal("no first snapshot")
	}

	before := m.all(t, ctx)
	batches := strings.Count(lab.Logs(1), `msg="hooks batch done"`)
	cpu := cpuTime(t, pid)
	began := time.Now()
	if err := heartbeats(ctx, srv.client(), n, scaleHeartbeats); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d heartbeats sent in %v", scaleHeartbeats, time.Since(began).Round(time.Millisecond))
	after := m.all(t, ctx)
	for _, k := range []string{lastSync, runsAdd, runsRemove} {
		if before[k] != after[k] {
			t.Errorf("heartbeats changed %s: %v -> %v", k, before[k], after[k])
		}
	}

	sentinel := n + 1
	if _, err := srv.client().CoreV1().Nodes().Create(ctx, scaleNode(sentinel), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, ctx, lab.Netns(1), n+1, 2*time.Minute, agentWaiter(lab))
	t.Logf("agent CPU for %d heartbeats and one new Node: %v", scaleHeartbeats, cpuTime(t, pid)-cpu)
	final := m.all(t, ctx)
	if d := final[runsAdd] - before[runsAdd]; d != 1 {
		t.Errorf("SubnetAdd ran %v times for %d heartbeats and one new Node, want once", d, scaleHeartbeats)
	}
	if d := final[runsRemove] - before[runsRemove]; d != 0 {
		t.Errorf("SubnetRemove ran %v times", d)
	}
	if d := strings.Count(lab.Logs(1), `msg="hooks batch done"`) - batches; d != 1 {
		t.Errorf("%d hook batches for %d heartbeats and one new Node, want one", d, scaleHeartbeats)
	}
	// The store in this process: its next snapshot is the sentinel's.
	select {
	case snap := <-snaps:
		if _, ok := find(snap, scaleSubnet(sentinel).String()); !ok || len(snap) != n+2 {
			t.Errorf("the store sent a snapshot of %d leases without the new Node: a heartbeat made a snapshot", len(snap))
		}
	case <-time.After(time.Minute):
		t.Error("the store sent no snapshot for the new Node")
	}
}

// scaleRestartTest stops the API server and starts it again on the same
// etcd: the agent follows the Nodes again (a Node created after the
// restart gets its route) and runs no hook for the others.
func scaleRestartTest(t *testing.T, ctx context.Context, srv *scaleServer, proxy *cutProxy, lab *netlab.Lab, m *agentMetrics, n int) {
	before := m.all(t, ctx)
	batches := strings.Count(lab.Logs(1), `msg="hooks batch done"`)
	srv.stop(proxy.cut)
	if _, err := srv.client().CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
		t.Fatal("the stopped API server answers")
	}
	began := time.Now()
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server stopped and started again in %v", time.Since(began).Round(time.Millisecond))
	after := n + 2
	if _, err := srv.client().CoreV1().Nodes().Create(ctx, scaleNode(after), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, ctx, lab.Netns(1), n+2, 3*time.Minute, agentWaiter(lab))
	t.Logf("the agent had the route of a Node created after the restart %v after the restart", time.Since(began).Round(time.Millisecond))
	final := m.all(t, ctx)
	if d := final[runsAdd] - before[runsAdd]; d != 1 {
		t.Errorf("SubnetAdd ran %v times across the restart and one new Node, want once", d)
	}
	if d := final[runsRemove] - before[runsRemove]; d != 0 {
		t.Errorf("SubnetRemove ran %v times across the restart", d)
	}
	if d := strings.Count(lab.Logs(1), `msg="hooks batch done"`) - batches; d != 1 {
		t.Errorf("%d hook batches across the restart and one new Node, want one", d)
	}
	if !lab.Running(1) {
		t.Errorf("the agent stopped:\n%s", lab.Logs(1))
	}
}

// scaleServer is a kube-apiserver over an etcd of its own that can be
// stopped and started again as clients see a restart: the same address
// (behind proxyTo), serving certificate and token.
type scaleServer struct {
	t     *testing.T
	etcd  *etcdtest.Server
	flags []string
	ca    []byte // the serving certificate's CA, PEM
	token string // a system:masters token the restarts keep

	mu  sync.Mutex
	srv apiservertesting.TestServer // TearDownFn nil when stopped
	cs  kubernetes.Interface
}

// startScaleServer starts etcd and the API server, serving a certificate
// valid for hub (where the lab reaches it).
func startScaleServer(t *testing.T, hub netip.Addr) *scaleServer {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("flexhook-scale", []net.IP{net.IP(hub.AsSlice()), net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	s := &scaleServer{t: t, etcd: etcdtest.Start(t), ca: certPEM, token: hex.EncodeToString(rnd[:])}
	files := map[string][]byte{
		"serving.crt": certPEM,
		"serving.key": keyPEM,
		"tokens.csv":  fmt.Appendf(nil, "%s,flexhook-scale,flexhook-scale,\"system:masters\"\n", s.token),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.flags = []string{"--authorization-mode=RBAC",
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
	}
	t.Cleanup(func() { s.stop() })
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// start starts the API server. Its lifetime is the test's that started
// the scaleServer, also when a subtest calls it.
func (s *scaleServer) start() error {
	sc := storagebackend.NewDefaultConfig("/registry", nil)
	sc.Transport.ServerList = s.etcd.Endpoints
	opts := apiservertesting.NewDefaultTestServerOptions()
	opts.DisableInvariantChecks = true // its metrics are not what this test is about
	// No client certificates (tokens do): with them the server's peer
	// proxy wants the self-signed serving certificate that
	// --tls-cert-file replaces.
	opts.EnableCertAuth = false
	srv, err := apiservertesting.StartTestServer(s.t, opts, s.flags, sc)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	cs, err := kubernetes.NewForConfig(srv.ClientConfig)
	if err != nil {
		srv.TearDownFn()
		return fmt.Errorf("kube-apiserver client: %w", err)
	}
	s.mu.Lock()
	s.srv, s.cs = srv, cs
	s.mu.Unlock()
	return nil
}

// stop stops the API server (not etcd); a stopped one stays so. The
// server is gone for addr first, then the before funcs run (a proxy
// cuts its clients' connections, which a server would otherwise wait
// for a minute to end), then it stops.
func (s *scaleServer) stop(before ...func()) {
	s.mu.Lock()
	down := s.srv.TearDownFn
	s.srv.TearDownFn = nil
	s.mu.Unlock()
	if down == nil {
		return
	}
	for _, f := range before {
		f()
	}
	down()
}

// addr is the running server's host:port ("" when stopped).
func (s *scaleServer) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv.TearDownFn == nil {
		return ""
	}
	return strings.TrimPrefix(s.srv.ClientConfig.Host, "https://")
}

// client is the admin clientset of the server started last.
func (s *scaleServer) client() kubernetes.Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs
}

// admin is the admin config of the server started last (loopback).
func (s *scaleServer) admin() *rest.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rest.CopyConfig(s.srv.ClientConfig)
}

// kubeconfig writes a kubeconfig for server (through proxyTo) with the
// serving certificate's CA and the token, which outlive restarts.
func (s *scaleServer) kubeconfig(t *testing.T, server string) string {
	t.Helper()
	a := &apiServer{admin: s.admin(), dir: t.TempDir()}
	a.admin.TLSClientConfig.CAData, a.admin.TLSClientConfig.ServerName = s.ca, ""
	return a.kubeconfig(t, "scale.kubeconfig", server, s.token)
}

// cutProxy forwards the connections a listener accepts to an address
// that may change (an API server started again listens on another
// port), and can cut them all, as a server's end cuts its clients'.
type cutProxy struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// proxyTo forwards the connections ln accepts to target() (refused while
// it is "") until the test ends, which closes ln and cuts what is
// forwarded. When either side of a connection closes, so does the other.
func proxyTo(t *testing.T, ln net.Listener, target func() string) *cutProxy {
	t.Helper()
	p := &cutProxy{conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c, target())
		}
	}()
	return p
}

func (p *cutProxy) forward(c net.Conn, to string) {
	defer c.Close()
	if to == "" {
		return
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s, err := d.DialContext(ctx, "tcp", to)
	cancel()
	if err != nil {
		return
	}
	defer s.Close()
	p.mu.Lock()
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, s)
		p.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done // the deferred closes end the other copy
}

// cut closes every connection the proxy forwards now.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// hostGwConfig writes the host-gw preset with network as its Network.
func hostGwConfig(t *testing.T, network netip.Prefix) string {
	t.Helper()
	return presetConfig(t, "host-gw", func(cfg map[string]any) { cfg["Network"] = network.String() })
}

// scaleSubnet is Node i's podCIDR: the agent's (i = 0) is the Network's
// second /24, the first a SubnetMin allows.
func scaleSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(addAddr(scaleNetwork.Addr(), uint32(i+1)<<8), 24)
}

// scalePublicIP is Node i's InternalIP and flannel public-ip (i >= 1).
func scalePublicIP(i int) netip.Addr { return addAddr(scalePeers.Addr(), uint32(i)) }

func addAddr(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func scaleNodeName(i int) string {
	if i == 0 {
		return scaleAgentNode
	}
	return fmt.Sprintf("scale-node-%05d", i)
}

// scaleImages are the repositories of a Node's ~40 images, as a kubelet
// reports them: by digest and by tag.
var scaleImages = []string{
	"registry.k8s.io/kube-proxy", "registry.k8s.io/pause", "registry.k8s.io/coredns/coredns",
	"registry.k8s.io/metrics-server/metrics-server", "registry.k8s.io/ingress-nginx/controller",
	"registry.k8s.io/sig-storage/csi-node-driver-registrar", "registry.k8s.io/sig-storage/livenessprobe",
	"registry.k8s.io/sig-storage/csi-provisioner", "registry.k8s.io/sig-storage/csi-attacher",
	"registry.k8s.io/sig-storage/csi-resizer", "registry.k8s.io/sig-storage/csi-snapshotter",
	"registry.k8s.io/kube-state-metrics/kube-state-metrics", "registry.k8s.io/nfd/node-feature-discovery",
	"docker.io/flannel/flannel", "docker.io/flannel/flannel-cni-plugin", "quay.io/prometheus/node-exporter",
	"quay.io/prometheus/prometheus", "quay.io/prometheus-operator/prometheus-config-reloader",
	"quay.io/jetstack/cert-manager-controller", "quay.io/jetstack/cert-manager-webhook",
	"quay.io/jetstack/cert-manager-cainjector", "docker.io/grafana/grafana", "docker.io/grafana/loki",
	"docker.io/grafana/promtail", "docker.io/fluent/fluent-bit", "docker.io/library/nginx",
	"docker.io/library/redis", "docker.io/library/postgres", "docker.io/library/busybox",
	"docker.io/bitnami/kafka", "docker.io/bitnami/zookeeper", "docker.io/bitnami/rabbitmq",
	"ghcr.io/external-secrets/external-secrets", "ghcr.io/kyverno/kyverno", "ghcr.io/fluxcd/source-controller",
	"ghcr.io/fluxcd/kustomize-controller", "ghcr.io/fluxcd/helm-controller", "public.ecr.aws/aws-ec2/aws-node-termination-handler",
	"mcr.microsoft.com/oss/kubernetes/azure-cloud-node-manager", "gcr.io/k8s-staging-sig-storage/nfs-subdir-external-provisioner",
}

// scaleNode is Node i as a kubelet registers it and flanneld annotates
// it (i = 0: the agent's own Node, not yet annotated): labels,
// addresses, capacity, node info, ~40 images and the conditions, about
// 12 KB in JSON once the API server adds its managed fields.
func scaleNode(i int) *corev1.Node {
	name := scaleNodeName(i)
	ip := scalePublicIP(i)
	cidr := scaleSubnet(i).String()
	digest := func(parts ...any) string {
		h := make([]byte, 0, 64)
		for _, p := range parts {
			h = fmt.Appendf(h, "%v/", p)
		}
		return fmt.Sprintf("%x", sha256.Sum256(h))
	}
	id := digest(i)
	ann := map[string]string{
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		"csi.volume.kubernetes.io/nodeid":                        fmt.Sprintf(`{"ebs.csi.aws.com":"i-%s"}`, id[:17]),
	}
	if i > 0 {
		// The lease a node running the host-gw recipe publishes, flanneld
		// or flexhook: no PreStartupCommand, so no backend data (lease
		// admission refuses any: the recipe's hooks read none).
		ann[pfx+"kube-subnet-manager"] = "true"
		ann[pfx+"backend-type"] = "extension"
		ann[pfx+"backend-data"] = ""
		ann[pfx+"public-ip"] = ip.String()
	}
	zone := fmt.Sprintf("eu-west-1%c", 'a'+i%3)
	labels := map[string]string{
		"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
		"node.kubernetes.io/instance-type": "m6i.2xlarge", "beta.kubernetes.io/instance-type": "m6i.2xlarge",
		"topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": zone,
		"failure-domain.beta.kubernetes.io/region": "eu-west-1", "failure-domain.beta.kubernetes.io/zone": zone,
		"node-role.kubernetes.io/worker": "", "topology.ebs.csi.aws.com/zone": zone,
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32386524Ki"),
		corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("104845292Ki"),
		"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0"),
		"attachable-volumes-aws-ebs": resource.MustParse("25"),
	}
	alloc := res.DeepCopy()
	alloc[corev1.ResourceCPU], alloc[corev1.ResourceMemory] = resource.MustParse("7910m"), resource.MustParse("31371740Ki")
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	cond := func(typ corev1.NodeConditionType, status corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	images := make([]corev1.ContainerImage, len(scaleImages))
	for j, repo := range scaleImages {
		tag := fmt.Sprintf("v1.%d.%d", j%30, i%7)
		images[j] = corev1.ContainerImage{
			Names:     []string{repo + "@sha256:" + digest(repo, tag), repo + ":" + tag},
			SizeBytes: int64(4_000_000 + 1_000_003*j),
		}
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr},
			ProviderID: fmt.Sprintf("aws:///%s/i-%s", zone, id[:17])},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "FlannelIsUp", "Flannel is running on this node"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip.String()},
				{Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeInternalDNS, Address: name + ".eu-west-1.compute.internal"},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID: digest("machine", i)[:32], SystemUUID: digest("uuid", i)[:32], BootID: digest("boot", i)[:32],
				KernelVersion: "6.12.48+deb13-cloud-amd64", OSImage: "Debian GNU/Linux 13 (trixie)",
				ContainerRuntimeVersion: "containerd://2.1.4", KubeletVersion: "v1.37.2",
				OperatingSystem: "linux", Architecture: "amd64",
			},
			Images: images,
		},
	}
}

// createNodes creates Nodes from..from+n-1 with scaleWorkers requests in
// flight.
func createNodes(ctx context.Context, cs kubernetes.Interface, from, n int) error {
	return pool(ctx, n, func(ctx context.Context, k int) error {
		if _, err := cs.CoreV1().Nodes().Create(ctx, scaleNode(from+k), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", scaleNodeName(from+k), err)
		}
		return nil
	})
}

// heartbeats sends count status patches across Nodes 1..n as a kubelet
// sends them: every condition's lastHeartbeatTime, a new one each time.
func heartbeats(ctx context.Context, cs kubernetes.Interface, n, count int) error {
	base := time.Now().Truncate(time.Second)
	return pool(ctx, count, func(ctx context.Context, k int) error {
		at := metav1.NewTime(base.Add(time.Duration(k+1) * time.Second))
		var conds []map[string]any
		for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeReady} {
			conds = append(conds, map[string]any{"type": typ, "lastHeartbeatTime": at})
		}
		patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
		if err != nil {
			return err
		}
		name := scaleNodeName(1 + k%n)
		cur, err := cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil {
			return fmt.Errorf("heartbeat of %s: %w", name, err)
		}
		if c := condition(cur, corev1.NodeReady); c == nil || !c.LastHeartbeatTime.Equal(&at) {
			return fmt.Errorf("heartbeat of %s not applied: Ready is %+v", name, c)
		}
		return nil
	})
}

// pool runs fn(0..n-1) on scaleWorkers goroutines and returns the first
// error (the others stop at their next item).
func pool(ctx context.Context, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(scaleWorkers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				if err := fn(ctx, k); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// peerRoutes counts the routes in ns's main table to a subnet of
// scaleNetwork through a gateway: host-gw's routes to peers.
func peerRoutes(ctx context.Context, ns string) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-4", "route", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("ip -n %s route show: %w", ns, err)
	}
	count := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "via" {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil && scaleNetwork.Overlaps(p) {
			count++
		}
	}
	return count, nil
}

// routeWaiter is what routes are waited for: stuck says why waiting is
// pointless ("" while it is not, asked at every poll), logs is the tail
// of its log for a failure.
type routeWaiter struct {
	stuck func() string
	logs  func() string
}

// waitRoutes polls ns's kernel until it has want peer routes, failing
// after bound or as soon as w is stuck.
func waitRoutes(t *testing.T, ctx context.Context, ns string, want int, bound time.Duration, w routeWaiter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	got := 0
	for {
		var err error
		if got, err = peerRoutes(ctx, ns); err == nil && got == want {
			return
		}
		if why := w.stuck(); why != "" {
			t.Fatalf("%s with %d of %d routes in:\n%s", why, got, want, w.logs())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d routes in after %v:\n%s", got, want, bound, w.logs())
		case <-tick.C:
		}
	}
}

// agentWaiter is the lab's agent (node 1) as a routeWaiter: stuck when it
// exited or refuses leases.
func agentWaiter(lab *netlab.Lab) routeWaiter {
	return routeWaiter{
		stuck: func() string {
			switch {
			case !lab.Running(1):
				return "the agent exited"
			case strings.Contains(lab.Logs(1), `msg="lease refused"`):
				return "the agent refuses leases"
			}
			return ""
		},
		logs: func() string { return testutil.Tail(lab.Logs(1), 40) },
	}
}

// agentPid is the pid of the process in node 1's namespace that runs
// bin.
func agentPid(t *testing.T, ctx context.Context, lab *netlab.Lab, bin string) int {
	t.Helper()
	want, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := lab.Processes(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p netlab.Process) bool {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid))
		return err == nil && exe == want
	})
	if i < 0 {
		t.Fatalf("no process runs %s among %+v", want, ps)
	}
	return ps[i].Pid
}

// procStatus reads the sizes of /proc/PID/status (VmHWM, VmRSS,
// RssAnon, RssFile, ...) in MiB.
func procStatus(t *testing.T, pid int) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		v, kB := strings.CutSuffix(strings.TrimSpace(v), " kB")
		if !ok || !kB {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
		}
		out[k] = float64(n) / 1024
	}
	if _, ok := out["VmHWM"]; !ok {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	return out
}

// cpuTime is the user and system time pid used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th (fields 14 and 15 of proc(5)).
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// The agent's series the scale test reads.
const (
	runsAdd    = `flexhook_hook_runs_total{hook="SubnetAddCommand"}`
	runsRemove = `flexhook_hook_runs_total{hook="SubnetRemoveCommand"}`
	lastSync   = `flexhook_last_sync_timestamp_seconds`
)

// agentMetrics reads the agent's /metrics from the hub's namespace.
type agentMetrics struct {
	lab  *netlab.Lab
	addr string
}

// all returns every sample, by name and labels as the text format
// writes them (runsAdd), and fails t unless the three the test reads
// are there.
func (m *agentMetrics) all(t *testing.T, ctx context.Context) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return m.lab.DialHub(ctx, network, addr)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent metrics: %s, %v", resp.Status, err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			out[line[:i]] = v
		}
	}
	for _, k := range []string{runsAdd, runsRemove, lastSync} {
		if _, ok := out[k]; !ok {
			t.Fatalf("agent metrics have no %s", k)
		}
	}
	return out
}
