//go:build integration

package kubeit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flannelip "github.com/flannel-io/flannel/pkg/ip"
	flannellease "github.com/flannel-io/flannel/pkg/lease"
	flannelkube "github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

const pfx = kube.DefaultPrefix + "/"

// v4Range is the vxlan preset's network.
var v4Range = leases.Range{
	Network: netip.MustParsePrefix("10.50.0.0/16"), SubnetLen: 24,
	SubnetMin: netip.MustParseAddr("10.50.1.0"), SubnetMax: netip.MustParseAddr("10.50.255.0"),
}

var dualRange = func() leases.Range {
	r := v4Range
	r.IPv6Network, r.IPv6SubnetLen = netip.MustParsePrefix("fd50::/56"), 64
	r.IPv6SubnetMin, r.IPv6SubnetMax = netip.MustParseAddr("fd50:0:0:1::"), netip.MustParseAddr("fd50:0:0:ff::")
	return r
}()

const mac = "82:87:fe:a4:a9:55"

func attrs(ip string, data string) leases.Attrs {
	return leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType, BackendData: data}
}

// ours returns flexhook's annotations of a node (flanneld's prefix only).
func ours(n *corev1.Node) map[string]string {
	out := map[string]string{}
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, pfx) {
			out[k] = v
		}
	}
	return out
}

// kubeSuite holds what the store tests share: the server, the manifest's
// service account and a client acting as it.
type kubeSuite struct {
	a          *apiServer
	token      string
	sa         kube.API                     // the DaemonSet's identity, through flexhook's client
	saTyped    corev1client.CoreV1Interface // the same identity, client-go's typed client (for what the store never calls)
	kubeconfig string                       // the same identity, for flanneld and flexhook run
}

func (s *kubeSuite) store(t *testing.T, ctx context.Context, node string, dual bool) *kube.Store {
	t.Helper()
	return s.storeFor(t, ctx, kube.Config{NodeName: node, DualStack: dual})
}

// storeFor opens a store for cfg as the service account.
func (s *kubeSuite) storeFor(t *testing.T, ctx context.Context, cfg kube.Config) *kube.Store {
	t.Helper()
	cfg.Client = s.sa
	st, err := kube.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (s *kubeSuite) getNode(t *testing.T, ctx context.Context, name string) *corev1.Node {
	t.Helper()
	n, err := s.a.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKube runs every test that needs the API server on one server: a
// kube-apiserver costs seconds to start.
func TestKube(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := &kubeSuite{a: startAPIServer(t)}
	t.Run("Manifest", func(t *testing.T) { testManifest(t, ctx, s) })
	if s.sa == nil {
		t.Fatal("the manifest's service account is needed by the rest")
	}
	t.Run("LeastPrivilege", func(t *testing.T) { testLeastPrivilege(t, ctx, s) })
	t.Run("NodeNameFromPod", func(t *testing.T) { testNodeNameFromPod(t, ctx, s) })
	t.Run("AcquireFresh", func(t *testing.T) { testAcquireFresh(t, ctx, s) })
	t.Run("AcquireExisting", func(t *testing.T) { testAcquireExisting(t, ctx, s) })
	t.Run("AcquireRefused", func(t *testing.T) { testAcquireRefused(t, ctx, s) })
	t.Run("FlanneldParsed", func(t *testing.T) { testFlanneldParsed(t, ctx, s) })
	t.Run("ByteEqualFlanneld", func(t *testing.T) { testByteEqual(t, ctx, s) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, ctx, s) })
	t.Run("RenewRemove", func(t *testing.T) { testRenewRemove(t, ctx, s) })
	t.Run("Chart", func(t *testing.T) { testChart(t, ctx, s) })
	t.Run("Kustomize", func(t *testing.T) { testKustomize(t, ctx, s) })
	t.Run("Migration", func(t *testing.T) { testMigration(t, ctx, s) })
	t.Run("Lab", func(t *testing.T) { testLab(t, ctx, s) })
	t.Run("DualStackLab", func(t *testing.T) { testDualStackLab(t, ctx, s) })
}

func testAcquireFresh(t *testing.T, ctx context.Context, s *kubeSuite) {
	before := s.a.newNode(t, ctx, "fresh", []string{"10.50.1.0/24"}, map[string]string{"other.example.com/x": "y"})
	st := s.store(t, ctx, "fresh", false)
	// A dry-run's look first: the lease, and nothing written.
	peek, err := st.Peek(ctx, v4Range, attrs("192.0.2.11", mac))
	if err != nil || peek.Subnet != netip.MustParsePrefix("10.50.1.0/24") || peek.Attrs.BackendData != mac {
		t.Errorf("Peek = %+v, %v", peek, err)
	}
	if n := s.getNode(t, ctx, "fresh"); n.ResourceVersion != before.ResourceVersion {
		t.Errorf("Peek wrote to the Node: %v", n.Annotations)
	}
	l, err := st.Acquire(ctx, v4Range, attrs("192.0.2.11", mac))
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.50.1.0/24") || l.IPv6Subnet.IsValid() || l.Key != "10.50.1.0-24" {
		t.Errorf("lease %v %v %q", l.Subnet, l.IPv6Subnet, l.Key)
	}
	n := s.getNode(t, ctx, "fresh")
	want := map[string]string{
		pfx + "backend-type": "extension", pfx + "backend-data": `"` + mac + `"`,
		pfx + "public-ip": "192.0.2.11", pfx + "kube-subnet-manager": "true",
	}
	if got := ours(n); !maps.Equal(got, want) {
		t.Errorf("annotations %v, want %v", got, want)
	}
	if n.Annotations["other.example.com/x"] != "y" {
		t.Errorf("another annotation was lost: %v", n.Annotations)
	}
	// The own lease is in the store's list, under its subnet key.
	ls, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range ls {
		found = found || x.Key == l.Key && x.Attrs == l.Attrs
	}
	if !found {
		t.Errorf("own lease %+v not in List %+v", l, ls)
	}
}

func testAcquireExisting(t *testing.T, ctx context.Context, s *kubeSuite) {
	published := map[string]string{
		pfx + "backend-type": "extension", pfx + "backend-data": `"` + mac + `"`,
		pfx + "public-ip": "192.0.2.12", pfx + "kube-subnet-manager": "true",
	}
	before := s.a.newNode(t, ctx, "kept", []string{"10.50.2.0/24"}, published)
	if _, err := s.store(t, ctx, "kept", false).Acquire(ctx, v4Range, attrs("192.0.2.12", mac)); err != nil {
		t.Fatal(err)
	}
	if after := s.getNode(t, ctx, "kept"); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("annotations that were already right were patched (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}

	stale := maps.Clone(published)
	stale[pfx+"public-ip"] = "192.0.2.99"
	stale[pfx+"backend-data"] = `"00:00:00:00:00:01"`
	stale[pfx+"public-ip-overwrite"] = "198.51.100.12"
	s.a.newNode(t, ctx, "stale", []string{"10.50.3.0/24"}, stale)
	st := s.store(t, ctx, "stale", false)
	l, err := st.Acquire(ctx, v4Range, attrs("192.0.2.13", mac))
	if err != nil {
		t.Fatal(err)
	}
	got := ours(s.getNode(t, ctx, "stale"))
	if got[pfx+"backend-data"] != `"`+mac+`"` || got[pfx+"public-ip"] != "198.51.100.12" || got[pfx+"public-ip-overwrite"] != "198.51.100.12" {
		t.Errorf("stale annotations not rewritten (public-ip-overwrite wins): %v", got)
	}
	// The hooks get the node's own address, as flanneld gives them, and
	// the store lists the own lease as acquired: the engine's own lease.
	if l.Attrs != attrs("192.0.2.13", mac) {
		t.Errorf("lease attrs %+v: want the node's own public IP, not the overwrite", l.Attrs)
	}
	ls, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if own, ok := find(ls, "10.50.3.0/24"); !ok || own.Attrs != l.Attrs {
		t.Errorf("own lease listed as %+v, want %+v", own.Attrs, l.Attrs)
	}
	// Someone edits the annotations: the listed lease shows it (so the
	// engine renews), and Renew writes them back.
	n := s.getNode(t, ctx, "stale")
	n.Annotations[pfx+"backend-data"] = `"ee:ee:ee:ee:ee:ee"`
	if _, err := s.a.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ls, err = st.List(ctx); err != nil {
		t.Fatal(err)
	}
	if own, _ := find(ls, "10.50.3.0/24"); own.Attrs.BackendData != "ee:ee:ee:ee:ee:ee" {
		t.Errorf("an edited own lease listed as %+v", own.Attrs)
	}
	if _, err := st.Renew(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := ours(s.getNode(t, ctx, "stale")); got[pfx+"backend-data"] != `"`+mac+`"` {
		t.Errorf("Renew did not restore backend-data: %v", got)
	}
}

func testAcquireRefused(t *testing.T, ctx context.Context, s *kubeSuite) {
	for _, tc := range []struct {
		node      string
		cidrs     []string
		r         leases.Range
		want      string
		permanent bool
	}{
		{"outside", []string{"10.99.1.0/24"}, v4Range, `podCIDR 10.99.1.0/24 of node "outside" is outside Network 10.50.0.0/16`, true},
		{"wider", []string{"10.50.0.0/23"}, v4Range, "set SubnetLen to 23", true},
		{"no-v6", []string{"10.50.4.0/24"}, dualRange, "has no IPv6 podCIDR", true},
		{"v6-outside", []string{"10.50.5.0/24", "fd99::/64"}, dualRange, "outside IPv6Network fd50::/56", true},
		{"no-cidr", nil, v4Range, "has no podCIDR", false},
		{"missing", nil, v4Range, `"missing" not found`, false},
	} {
		if tc.node != "missing" {
			s.a.newNode(t, ctx, tc.node, tc.cidrs, nil)
		}
		st := s.store(t, ctx, tc.node, tc.r.DualStack())
		calls := 0
		err := retry.Do(ctx, retry.Backoff{Initial: time.Millisecond, Attempts: 3}, func(ctx context.Context) error {
			calls++
			_, err := st.Acquire(ctx, tc.r, attrs("192.0.2.14", mac))
			return err
		}, nil)
		switch {
		case err == nil || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: Acquire error %v, want %q", tc.node, err, tc.want)
		case tc.permanent != (calls == 1):
			t.Errorf("%s: Acquire tried %d times; permanent: %v", tc.node, calls, tc.permanent)
		}
		if tc.node == "missing" {
			continue
		}
		if got := ours(s.getNode(t, ctx, tc.node)); len(got) != 0 {
			t.Errorf("%s: a refused Acquire wrote annotations %v", tc.node, got)
		}
	}
}

// flanneld runs flanneld's own kube subnet manager (pkg/subnet/kube of
// flannel v0.28.10) for node with net-conf.json netconf, as the manifest's
// service account, and acquires a lease with attrs as flanneld's
// extension backend builds them.
func (s *kubeSuite) flanneld(t *testing.T, ctx context.Context, node, netconf string, attrs flannellease.LeaseAttrs) {
	t.Helper()
	t.Setenv("NODE_NAME", node) // flanneld reads it from the environment
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(netconf), 0o600); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel() // stops its informer
	sm, err := flannelkube.NewSubnetManager(fctx, "", s.kubeconfig, kube.DefaultPrefix, path, false)
	if err != nil {
		t.Fatalf("flanneld's kube subnet manager: %v", err)
	}
	if _, err := sm.AcquireLease(fctx, &attrs); err != nil {
		t.Fatalf("flanneld AcquireLease on %s: %v", node, err)
	}
}

// flannelData is flanneld's extension backend's BackendData for the
// PreStartupCommand output out (json.Marshal of the string), or none.
func flannelData(t *testing.T, out string, ran bool) json.RawMessage {
	if !ran {
		return []byte{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kubelet is the annotation every kubelet puts on its Node. flanneld's
// AcquireLease panics on a Node without annotations (a nil map), which a
// kubelet-registered Node never is; flexhook's store copes with one
// (testAcquireFresh's fresh Node has only another tool's).
func kubelet(more map[string]string) map[string]string {
	m := map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	maps.Copy(m, more)
	return m
}

const flannelNetConf = `{"Network": "10.50.0.0/16", "Backend": {"Type": "extension"}}`
const flannelDualNetConf = `{"Network": "10.50.0.0/16", "EnableIPv6": true, "IPv6Network": "fd50::/56", "Backend": {"Type": "extension"}}`

func testFlanneldParsed(t *testing.T, ctx context.Context, s *kubeSuite) {
	s.a.newNode(t, ctx, "flanneld", []string{"10.50.21.0/24"}, kubelet(nil))
	s.flanneld(t, ctx, "flanneld", flannelNetConf, flannellease.LeaseAttrs{
		PublicIP: flannelip.FromIP(net.ParseIP("192.0.2.21")), BackendType: "extension",
		BackendData: flannelData(t, "aa:bb:cc:dd:ee:21", true),
	})
	s.a.newNode(t, ctx, "reader", []string{"10.50.22.0/24"}, nil)
	st := s.store(t, ctx, "reader", false)
	own, err := st.Acquire(ctx, v4Range, attrs("192.0.2.22", mac))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := leases.Policy{Range: v4Range, Own: own, PublicIP: own.Attrs.PublicIP}
	var got *leases.Lease
	adm := p.Admit(ls, nil)
	for i, l := range adm.Admitted {
		if l.Subnet == netip.MustParsePrefix("10.50.21.0/24") {
			got = &adm.Admitted[i]
		}
	}
	if got == nil {
		t.Fatalf("flanneld's lease not admitted: %+v", adm)
	}
	want := attrs("192.0.2.21", "aa:bb:cc:dd:ee:21")
	if got.Attrs != want || got.Key != "10.50.21.0-24" {
		t.Errorf("flanneld's lease read as %+v %q, want %+v", got.Attrs, got.Key, want)
	}
}

// testByteEqual gives flanneld and flexhook the same node (pod CIDRs,
// annotations already there) and the same attributes, and compares what
// each leaves in the node's annotations, byte for byte.
func testByteEqual(t *testing.T, ctx context.Context, s *kubeSuite) {
	v6 := netip.MustParseAddr("2001:db8::31")
	for i, tc := range []struct {
		name    string
		data    string
		ran     bool // a PreStartupCommand ran
		v6      bool
		initial map[string]string
	}{
		{"vxlan MAC", mac, true, false, nil},
		{"no PreStartupCommand", "", false, false, nil},
		{"PreStartupCommand printed nothing", "", true, false, nil},
		{"data to escape", `{"k":"<&>"}`, true, false, nil},
		{"dual stack", mac, true, true, nil},
		{"public-ip-overwrite", mac, true, false, map[string]string{pfx + "public-ip-overwrite": "198.51.100.31"}},
		{"stale lease", mac, true, false, map[string]string{pfx + "public-ip": "192.0.2.99", pfx + "backend-data": `"x"`, pfx + "kube-subnet-manager": "true", pfx + "backend-type": "host-gw"}},
	} {
		cidrs := []string{fmt.Sprintf("10.50.%d.0/24", 40+i)}
		netconf, r := flannelNetConf, v4Range
		if tc.v6 {
			cidrs, netconf, r = append(cidrs, fmt.Sprintf("fd50:0:0:%x::/64", 0x40+i)), flannelDualNetConf, dualRange
		}
		fl, fh := fmt.Sprintf("fl-%d", i), fmt.Sprintf("fh-%d", i)
		s.a.newNode(t, ctx, fl, cidrs, kubelet(tc.initial))
		s.a.newNode(t, ctx, fh, cidrs, kubelet(tc.initial))

		fa := flannellease.LeaseAttrs{PublicIP: flannelip.FromIP(net.ParseIP("192.0.2.31")), BackendType: "extension", BackendData: flannelData(t, tc.data, tc.ran)}
		a := attrs("192.0.2.31", tc.data)
		if tc.v6 {
			fa.PublicIPv6 = flannelip.FromIP6(net.IP(v6.AsSlice()))
			a.PublicIPv6 = v6
		}
		s.flanneld(t, ctx, fl, netconf, fa)
		if _, err := s.storeFor(t, ctx, kube.Config{NodeName: fh, DualStack: tc.v6, PreStartup: tc.ran}).Acquire(ctx, r, a); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want, got := ours(s.getNode(t, ctx, fl)), ours(s.getNode(t, ctx, fh))
		if !maps.Equal(got, want) {
			t.Errorf("%s: flexhook wrote\n%v\nflanneld wrote\n%v", tc.name, got, want)
		}
		if len(want) < 4 {
			t.Errorf("%s: flanneld wrote only %v", tc.name, want)
		}
	}
}

// next waits for a snapshot that ok accepts.
func next(t *testing.T, ctx context.Context, ch <-chan []leases.Lease, what string, ok func([]leases.Lease) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last []leases.Lease
	for {
		select {
		case snap := <-ch:
			if ok(snap) {
				return
			}
			last = snap
		case <-ctx.Done():
			t.Fatalf("%s: no such snapshot; last %+v", what, last)
		}
	}
}

func find(snap []leases.Lease, subnet string) (leases.Lease, bool) {
	for _, l := range snap {
		if l.Subnet == netip.MustParsePrefix(subnet) {
			return l, true
		}
	}
	return leases.Lease{}, false
}

func testWatch(t *testing.T, ctx context.Context, s *kubeSuite) {
	s.a.newNode(t, ctx, "watcher", []string{"10.50.60.0/24"}, nil)
	st := s.store(t, ctx, "watcher", false)
	wctx, stop := context.WithCancel(ctx)
	ch := make(chan []leases.Lease, 16)
	done := make(chan error, 1)
	go func() { done <- st.Watch(wctx, ch) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	managed := map[string]string{
		pfx + "kube-subnet-manager": "true", pfx + "backend-type": "extension",
		pfx + "backend-data": `"aa:bb:cc:dd:ee:61"`, pfx + "public-ip": "192.0.2.61",
	}
	s.a.newNode(t, ctx, "w1", []string{"10.50.61.0/24"}, managed)
	s.a.newNode(t, ctx, "unmanaged", []string{"10.50.62.0/24"}, map[string]string{pfx + "public-ip": "192.0.2.62"})
	next(t, ctx, ch, "node added", func(snap []leases.Lease) bool {
		l, ok := find(snap, "10.50.61.0/24")
		_, un := find(snap, "10.50.62.0/24")
		if un {
			t.Errorf("a node without kube-subnet-manager is a lease: %+v", snap)
		}
		return ok && l.Attrs == attrs("192.0.2.61", "aa:bb:cc:dd:ee:61")
	})

	n := s.getNode(t, ctx, "w1")
	n.Annotations[pfx+"public-ip"] = "192.0.2.161"
	if _, err := s.a.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next(t, ctx, ch, "node updated", func(snap []leases.Lease) bool {
		l, ok := find(snap, "10.50.61.0/24")
		return ok && l.Attrs.PublicIP.String() == "192.0.2.161"
	})

	if err := s.a.cs.CoreV1().Nodes().Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next(t, ctx, ch, "node deleted", func(snap []leases.Lease) bool {
		_, ok := find(snap, "10.50.61.0/24")
		return !ok
	})
}

func testRenewRemove(t *testing.T, ctx context.Context, s *kubeSuite) {
	s.a.newNode(t, ctx, "renewer", []string{"10.50.70.0/24"}, nil)
	st := s.store(t, ctx, "renewer", false)
	l, err := st.Acquire(ctx, v4Range, attrs("192.0.2.70", mac))
	if err != nil {
		t.Fatal(err)
	}
	// Someone takes the annotations off: Renew puts them back.
	if err := st.Remove(ctx, l.Subnet); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	n := s.getNode(t, ctx, "renewer")
	if got := ours(n); len(got) != 0 {
		t.Errorf("Remove left %v", got)
	}
	if err := st.Remove(ctx, netip.MustParsePrefix("10.50.71.0/24")); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("Remove of no lease: %v, want ErrNotFound", err)
	}
	if _, err := st.Renew(ctx, l); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if got := ours(s.getNode(t, ctx, "renewer")); got[pfx+"public-ip"] != "192.0.2.70" || got[pfx+"kube-subnet-manager"] != "true" {
		t.Errorf("Renew did not re-assert the annotations: %v", got)
	}

	// The condition flanneld sets once it runs.
	if err := st.SetNetworkAvailable(ctx); err != nil {
		t.Fatalf("SetNetworkAvailable: %v", err)
	}
	cond := condition(s.getNode(t, ctx, "renewer"), corev1.NodeNetworkUnavailable)
	if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != "FlannelIsUp" {
		t.Errorf("NetworkUnavailable condition %+v", cond)
	}

	if err := s.a.cs.CoreV1().Nodes().Delete(ctx, "renewer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Renew(ctx, l); !errors.Is(err, leases.ErrLeaseGone) {
		t.Errorf("Renew after the Node was deleted: %v, want ErrLeaseGone", err)
	}
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// forbidden checks that err is the server's 403.
func forbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s as the service account: %v, want Forbidden", what, err)
	}
}
