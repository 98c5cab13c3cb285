package kube

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
)

// The write path of the store (Acquire, Renew, Remove, the node calls) on
// client-go's object tracker, which applies strategic merge patches as the
// API server does; api_test.go runs the same calls over HTTP.

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

func attrs(ip, data string) leases.Attrs {
	return leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType, BackendData: data}
}

// published is what Acquire leaves for attrs("192.0.2.1", mac), with a
// PreStartupCommand.
var published = map[string]string{
	p + "backend-type": leases.BackendType, p + "backend-data": `"` + mac + `"`,
	p + "public-ip": "192.0.2.1", p + "kube-subnet-manager": "true",
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeStore is a store for cfg (Client and, when empty, NodeName "n1"
// filled in) on a fake API server holding nodes.
func fakeStore(t *testing.T, cfg Config, nodes ...*corev1.Node) (*Store, fakeClient) {
	t.Helper()
	cs := fakeCore()
	for _, n := range nodes {
		_, err := cs.c.Nodes().Create(testCtx(t), n, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	cs.c.ClearActions()
	cfg.Client = cs
	if cfg.NodeName == "" {
		cfg.NodeName = "n1"
	}
	st, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, cs
}

// get reads a Node back from the fake.
func (f fakeClient) get(t *testing.T, name string) *corev1.Node {
	t.Helper()
	n, err := f.c.Nodes().Get(testCtx(t), name, metav1.GetOptions{})
	require.NoError(t, err)
	return n
}

// ours returns the node's annotations with the default prefix.
func ours(n *corev1.Node) map[string]string {
	out := map[string]string{}
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, p) {
			out[k] = v
		}
	}
	return out
}

// patches returns the patch requests the store sent, as "node/subresource".
func (f fakeClient) patches() []string {
	var out []string
	for _, a := range f.c.Actions() {
		if pa, ok := a.(clienttesting.PatchActionImpl); ok {
			out = append(out, pa.GetName()+"/"+pa.GetSubresource()+" "+string(pa.GetPatchType()))
		}
	}
	return out
}

// fail makes every verb request on nodes fail with err.
func (f fakeClient) fail(verb string, err error) {
	f.c.PrependReactor(verb, "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, err
	})
}

var nodesGR = schema.GroupResource{Resource: "nodes"}

const smp = "n1/status " + string(types.StrategicMergePatchType)

func TestAcquire(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	dualAttrs := attrs("192.0.2.1", mac)
	dualAttrs.PublicIPv6 = v6
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(published)
		maps.Copy(m, extra)
		return m
	}
	for _, tc := range []struct {
		name    string
		n       *corev1.Node
		cfg     Config
		r       leases.Range
		a       leases.Attrs
		key     string            // the lease's
		want    map[string]string // the Node's annotations with prefix p after
		patched bool
	}{
		{"fresh node", newNode("n1", []string{"10.50.1.0/24"}, map[string]string{"other.example.com/x": "y"}),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, true},
		{"spec.podCIDR only", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDR: "10.50.1.0/24"}},
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, true},
		{"podCIDR not masked", newNode("n1", []string{"10.50.1.7/24"}, nil),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, true},
		{"already published: no patch", newNode("n1", []string{"10.50.1.0/24"}, published),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, false},
		{"stale annotations rewritten", newNode("n1", []string{"10.50.1.0/24"}, with(map[string]string{p + "public-ip": "192.0.2.99", p + "backend-data": `"00:00:00:00:00:01"`})),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, true},
		{"public-ip-overwrite published", newNode("n1", []string{"10.50.1.0/24"}, map[string]string{p + "public-ip-overwrite": "198.51.100.1"}),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24",
			with(map[string]string{p + "public-ip": "198.51.100.1", p + "public-ip-overwrite": "198.51.100.1"}), true},
		{"no PreStartupCommand, no data", newNode("n1", []string{"10.50.1.0/24"}, nil),
			Config{}, v4Range, attrs("192.0.2.1", ""), "10.50.1.0-24", with(map[string]string{p + "backend-data": ""}), true},
		{"PreStartupCommand printed nothing", newNode("n1", []string{"10.50.1.0/24"}, nil),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", ""), "10.50.1.0-24", with(map[string]string{p + "backend-data": `""`}), true},
		{"dual stack", newNode("n1", []string{"10.50.1.0/24", "fd50:0:0:1::/64"}, nil),
			Config{PreStartup: true, DualStack: true}, dualRange, dualAttrs, "10.50.1.0-24&fd50:0:0:1::-64",
			with(map[string]string{p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::1"}), true},
		{"dual stack, IPv6 podCIDR first", newNode("n1", []string{"fd50:0:0:1::/64", "10.50.1.0/24"}, nil),
			Config{PreStartup: true, DualStack: true}, dualRange, dualAttrs, "10.50.1.0-24&fd50:0:0:1::-64",
			with(map[string]string{p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::1"}), true},
		{"IPv6 podCIDR of a v4 network ignored", newNode("n1", []string{"10.50.1.0/24", "fd50:0:0:1::/64"}, nil),
			Config{PreStartup: true}, v4Range, attrs("192.0.2.1", mac), "10.50.1.0-24", published, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, cs := fakeStore(t, tc.cfg, tc.n)
			l, err := st.Acquire(testCtx(t), tc.r, tc.a)
			require.NoError(t, err)
			assert.Equal(t, tc.key, l.Key)
			v4, v6, err := leases.ParseSubnetKey(tc.key)
			require.NoError(t, err)
			assert.Equal(t, v4, l.Subnet)
			assert.Equal(t, v6, l.IPv6Subnet)
			assert.Equal(t, tc.a, l.Attrs, "the hooks get the node's own attrs, not an overwrite")
			n := cs.get(t, "n1")
			assert.Equal(t, tc.want, ours(n))
			for k, v := range tc.n.Annotations {
				if _, set := tc.want[k]; !set {
					assert.Equal(t, v, n.Annotations[k], "annotation %s kept", k)
				}
			}
			if tc.patched {
				assert.Equal(t, []string{smp}, cs.patches(), "one strategic merge patch through nodes/status")
			} else {
				assert.Empty(t, cs.patches())
			}

			// The store lists its own lease as acquired.
			ls, err := st.List(testCtx(t))
			require.NoError(t, err)
			require.Len(t, ls, 1)
			assert.Equal(t, l.Key, ls[0].Key)
			assert.Equal(t, tc.a, ls[0].Attrs)
			assert.Empty(t, ls[0].Invalid)
		})
	}
}

// A Node that does not fit the network is refused for good (retrying cannot
// fix it); one without a podCIDR yet, or missing, is retried. Nothing is
// written either way.
func TestAcquireRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cidrs     []string
		missing   bool // no Node at all
		r         leases.Range
		want      string
		permanent bool
	}{
		{"outside", []string{"10.99.1.0/24"}, false, v4Range, `podCIDR 10.99.1.0/24 of node "n1" is outside Network 10.50.0.0/16`, true},
		{"wider", []string{"10.50.0.0/23"}, false, v4Range, "set SubnetLen to 23 in net-conf.json", true},
		{"no IPv4", []string{"fd50:0:0:1::/64"}, false, v4Range, `node "n1" has no IPv4 podCIDR`, true},
		{"no IPv6", []string{"10.50.1.0/24"}, false, dualRange, `node "n1" has no IPv6 podCIDR, and IPv6Network is fd50::/56`, true},
		{"IPv6 outside", []string{"10.50.1.0/24", "fd99::/64"}, false, dualRange, "outside IPv6Network fd50::/56", true},
		{"IPv6 wider", []string{"10.50.1.0/24", "fd50::/60"}, false, dualRange, "set IPv6SubnetLen to 60", true},
		{"no Network", []string{"10.50.1.0/24"}, false, leases.Range{}, `node "n1": Network is not set`, true},
		{"no podCIDR yet", nil, false, v4Range, `node "n1" has no podCIDR`, false},
		{"no Node", nil, true, v4Range, `get node "n1": nodes "n1" not found`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nodes []*corev1.Node
			if !tc.missing {
				nodes = append(nodes, newNode("n1", tc.cidrs, map[string]string{"other.example.com/x": "y"}))
			}
			st, cs := fakeStore(t, Config{DualStack: tc.r.DualStack()}, nodes...)
			calls := 0
			now := func(time.Duration) <-chan time.Time {
				c := make(chan time.Time, 1)
				c <- time.Time{}
				return c
			}
			err := retry.Do(testCtx(t), retry.Backoff{Attempts: 3, After: now}, func(ctx context.Context) error {
				calls++
				_, err := st.Acquire(ctx, tc.r, attrs("192.0.2.1", mac))
				return err
			}, nil)
			require.ErrorContains(t, err, tc.want)
			if tc.permanent {
				assert.Equal(t, 1, calls, "a permanent error is not retried")
			} else {
				assert.Equal(t, 3, calls, "retried")
			}
			if tc.missing {
				assert.True(t, apierrors.IsNotFound(err), "the API's NotFound is wrapped: %v", err)
			}
			assert.Empty(t, cs.patches(), "a refused Acquire writes nothing")

			// Peek refuses the same way.
			_, err = st.Peek(testCtx(t), tc.r, attrs("192.0.2.1", mac))
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNoNodeName(t *testing.T) {
	cs := fakeCore()
	st, err := New(testCtx(t), Config{Client: cs})
	require.NoError(t, err)
	_, err = st.Acquire(testCtx(t), v4Range, attrs("192.0.2.1", mac))
	require.ErrorIs(t, err, ErrNoNodeName)
	_, err = st.Renew(testCtx(t), leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24")})
	require.ErrorIs(t, err, ErrNoNodeName)
	assert.NotErrorIs(t, err, leases.ErrLeaseGone)
	_, _, err = st.NodePublicIP(testCtx(t))
	require.ErrorIs(t, err, ErrNoNodeName)
	assert.Empty(t, cs.c.Actions(), "no API call without a node name")
}

// Peek is Acquire that writes nothing: a dry-run's own lease.
func TestPeekWritesNothing(t *testing.T) {
	st, cs := fakeStore(t, Config{DualStack: true}, newNode("n1", []string{"10.50.1.0/24", "fd50:0:0:1::/64"}, nil))
	a := attrs("192.0.2.1", mac)
	l, err := st.Peek(testCtx(t), dualRange, a)
	require.NoError(t, err)
	assert.Equal(t, "10.50.1.0-24&fd50:0:0:1::-64", l.Key)
	assert.Equal(t, netip.MustParsePrefix("fd50:0:0:1::/64"), l.IPv6Subnet)
	assert.Equal(t, a, l.Attrs)
	assert.Empty(t, cs.patches())
	assert.Empty(t, ours(cs.get(t, "n1")))
}

// Renew re-asserts the annotations of the lease, and says the lease is
// gone when its Node is, or its podCIDRs changed.
func TestRenew(t *testing.T) {
	v6 := netip.MustParsePrefix("fd50:0:0:1::/64")
	for _, tc := range []struct {
		name    string
		change  func(n *corev1.Node) // after Acquire; nil: delete the Node
		gone    string               // "": renewed; else a part of the ErrLeaseGone error
		patched bool
	}{
		{"nothing changed: no patch", func(*corev1.Node) {}, "", false},
		{"a kubelet's change: no patch", func(n *corev1.Node) { n.Annotations["node.alpha.kubernetes.io/ttl"] = "0" }, "", false},
		{"backend-data edited", func(n *corev1.Node) { n.Annotations[p+"backend-data"] = `"ee:ee:ee:ee:ee:ee"` }, "", true},
		{"public-ip edited", func(n *corev1.Node) { n.Annotations[p+"public-ip"] = "192.0.2.99" }, "", true},
		{"public-ipv6 removed", func(n *corev1.Node) { delete(n.Annotations, p+"public-ipv6") }, "", true},
		{"annotations taken off", func(n *corev1.Node) {
			for k := range ours(n) {
				delete(n.Annotations, k)
			}
		}, "", true},
		{"Node deleted", nil, `node "n1" was deleted`, false},
		{"podCIDR changed", func(n *corev1.Node) { n.Spec.PodCIDRs[0] = "10.50.9.0/24" },
			`node "n1" podCIDRs changed from 10.50.1.0-24&fd50:0:0:1::-64 to 10.50.9.0-24&fd50:0:0:1::-64`, false},
		{"IPv6 podCIDR changed", func(n *corev1.Node) { n.Spec.PodCIDRs[1] = "fd50:0:0:9::/64" }, "to 10.50.1.0-24&fd50:0:0:9::-64", false},
		{"IPv6 podCIDR removed", func(n *corev1.Node) { n.Spec.PodCIDRs = n.Spec.PodCIDRs[:1] }, "to 10.50.1.0-24", false},
		{"podCIDRs removed", func(n *corev1.Node) { n.Spec.PodCIDRs = nil }, `node "n1" has no podCIDR`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, cs := fakeStore(t, Config{DualStack: true, PreStartup: true}, newNode("n1", []string{"10.50.1.0/24", v6.String()}, nil))
			a := attrs("192.0.2.1", mac)
			a.PublicIPv6 = netip.MustParseAddr("2001:db8::1")
			l, err := st.Acquire(testCtx(t), dualRange, a)
			require.NoError(t, err)
			acquired := ours(cs.get(t, "n1"))
			if tc.change == nil {
				require.NoError(t, cs.c.Nodes().Delete(testCtx(t), "n1", metav1.DeleteOptions{}))
			} else {
				n := cs.get(t, "n1")
				tc.change(n)
				_, err := cs.c.Nodes().Update(testCtx(t), n, metav1.UpdateOptions{})
				require.NoError(t, err)
			}
			cs.c.ClearActions()

			got, err := st.Renew(testCtx(t), l)
			if tc.gone != "" {
				require.ErrorIs(t, err, leases.ErrLeaseGone)
				assert.ErrorContains(t, err, tc.gone)
				assert.Empty(t, cs.patches(), "a gone lease is not written back")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, l, got)
			assert.Equal(t, acquired, ours(cs.get(t, "n1")), "the annotations are as Acquire left them")
			if tc.patched {
				assert.Equal(t, []string{smp}, cs.patches())
			} else {
				assert.Empty(t, cs.patches())
			}
		})
	}
}

// Renew writes the attrs of the last Acquire; a store that acquired
// nothing (a restarted process) those of the lease it is given.
func TestRenewAttrs(t *testing.T) {
	n := newNode("n1", []string{"10.50.1.0/24"}, nil)
	l := leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), Key: "10.50.1.0-24", Attrs: attrs("192.0.2.7", "aa:aa:aa:aa:aa:aa")}

	st, cs := fakeStore(t, Config{PreStartup: true}, n)
	got, err := st.Renew(testCtx(t), l)
	require.NoError(t, err)
	assert.Equal(t, l.Attrs, got.Attrs)
	assert.Equal(t, map[string]string{
		p + "backend-type": leases.BackendType, p + "backend-data": `"aa:aa:aa:aa:aa:aa"`,
		p + "public-ip": "192.0.2.7", p + "kube-subnet-manager": "true",
	}, ours(cs.get(t, "n1")))

	st, cs = fakeStore(t, Config{PreStartup: true}, n)
	_, err = st.Acquire(testCtx(t), v4Range, attrs("192.0.2.1", mac))
	require.NoError(t, err)
	got, err = st.Renew(testCtx(t), l)
	require.NoError(t, err)
	assert.Equal(t, attrs("192.0.2.1", mac), got.Attrs)
	assert.Equal(t, published, ours(cs.get(t, "n1")))
}

// Remove takes the lease's annotations off the Node that holds the
// subnet, and no others: the operator's and other tools' stay, as does the
// Node.
func TestRemove(t *testing.T) {
	lease := func(ip string, extra map[string]string) map[string]string {
		m := maps.Clone(published)
		m[p+"public-ip"] = ip
		maps.Copy(m, extra)
		return m
	}
	operator := map[string]string{
		p + "node-public-ip": "192.0.2.2", p + "public-ip-overwrite": "198.51.100.2", "other.example.com/x": "y",
	}
	v6 := map[string]string{p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::2"}
	for _, tc := range []struct {
		name    string
		dual    bool
		nodes   []*corev1.Node
		subnet  string
		removed string            // the Node whose annotations go; "": ErrNotFound
		left    map[string]string // its annotations after
	}{
		{"another node's", false, []*corev1.Node{
			newNode("n1", []string{"10.50.1.0/24"}, published),
			newNode("n2", []string{"10.50.2.0/24"}, lease("198.51.100.2", operator)),
		}, "10.50.2.0/24", "n2", operator},
		{"dual stack", true, []*corev1.Node{
			newNode("n2", []string{"10.50.2.0/24", "fd50:0:0:2::/64"}, lease("192.0.2.2", v6)),
		}, "10.50.2.0/24", "n2", map[string]string{}},
		{"own Node first of two with the subnet", false, []*corev1.Node{
			newNode("n0", []string{"10.50.1.0/24"}, lease("192.0.2.10", nil)),
			newNode("n1", []string{"10.50.1.0/24"}, published),
			newNode("n3", []string{"10.50.1.0/24"}, lease("192.0.2.30", nil)),
		}, "10.50.1.0/24", "n1", map[string]string{}},
		{"garbled annotations: listed under the subnet, so removable", false, []*corev1.Node{
			newNode("n2", []string{"10.50.2.0/24"}, lease("192.0.2.2", map[string]string{p + "public-ip": "192.0.2.2; reboot", p + "backend-data": "$(reboot)"})),
		}, "10.50.2.0/24", "n2", map[string]string{}},
		{"no such subnet", false, []*corev1.Node{newNode("n1", []string{"10.50.1.0/24"}, published)}, "10.50.3.0/24", "", nil},
		{"not a lease: no kube-subnet-manager", false, []*corev1.Node{
			newNode("n2", []string{"10.50.2.0/24"}, map[string]string{p + "public-ip": "192.0.2.2"}),
		}, "10.50.2.0/24", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, cs := fakeStore(t, Config{DualStack: tc.dual}, tc.nodes...)
			err := st.Remove(testCtx(t), netip.MustParsePrefix(tc.subnet))
			if tc.removed == "" {
				require.ErrorIs(t, err, leases.ErrNotFound)
				assert.ErrorContains(t, err, tc.subnet)
				assert.Empty(t, cs.patches())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, []string{tc.removed + "/status " + string(types.StrategicMergePatchType)}, cs.patches())
			for _, n := range tc.nodes {
				got := cs.get(t, n.Name)
				if n.Name != tc.removed {
					assert.Equal(t, n.Annotations, got.Annotations, "node %s untouched", n.Name)
					continue
				}
				for k, v := range tc.left {
					assert.Equal(t, v, got.Annotations[k], "annotation %s kept", k)
				}
				assert.Len(t, got.Annotations, len(tc.left), "only the lease's annotations go: %v", got.Annotations)
				assert.Equal(t, n.Spec.PodCIDRs, got.Spec.PodCIDRs, "the Node stays")
			}
			gone := ""
			for _, n := range tc.nodes {
				if n.Name == tc.removed {
					gone = n.Annotations[p+"public-ip"]
				}
			}
			ls, err := st.List(testCtx(t))
			require.NoError(t, err)
			for _, l := range ls {
				assert.NotEqual(t, gone, l.Attrs.PublicIP.String(), "the removed lease is still listed: %+v", l)
			}
		})
	}
}

// Errors of the API server reach the caller wrapped: with the call and
// the node named, and the API status still there for apierrors.
func TestAPIErrors(t *testing.T) {
	conflict := apierrors.NewConflict(nodesGR, "n1", errors.New("the object has been modified"))
	internal := apierrors.NewInternalError(errors.New("etcd is down"))
	forbidden := apierrors.NewForbidden(nodesGR, "n1", errors.New("RBAC says no"))
	lease := leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), Key: "10.50.1.0-24", Attrs: attrs("192.0.2.1", mac)}
	acquire := func(ctx context.Context, s *Store) error {
		_, err := s.Acquire(ctx, v4Range, attrs("192.0.2.1", mac))
		return err
	}
	renew := func(ctx context.Context, s *Store) error {
		_, err := s.Renew(ctx, lease)
		return err
	}
	remove := func(ctx context.Context, s *Store) error { return s.Remove(ctx, lease.Subnet) }
	for _, tc := range []struct {
		name      string
		published bool // the Node has the lease's annotations
		verb      string
		err       error
		call      func(context.Context, *Store) error
		want      string
		is        func(error) bool
	}{
		{"Acquire patch conflict", false, "patch", conflict, acquire, `patch node "n1" annotations`, apierrors.IsConflict},
		{"Acquire get fails", false, "get", internal, acquire, `get node "n1"`, apierrors.IsInternalError},
		{"Renew patch forbidden", false, "patch", forbidden, renew, `patch node "n1" annotations`, apierrors.IsForbidden},
		{"Renew get fails: not gone", true, "get", internal, renew, `get node "n1"`, apierrors.IsInternalError},
		{"Remove patch conflict", true, "patch", conflict, remove, `patch node "n1" annotations`, apierrors.IsConflict},
		{"Remove list fails", true, "list", internal, remove, "list nodes", apierrors.IsInternalError},
		{"List fails", true, "list", forbidden, func(ctx context.Context, s *Store) error {
			_, err := s.List(ctx)
			return err
		}, "list nodes", apierrors.IsForbidden},
		{"SetNetworkAvailable forbidden", false, "patch", forbidden, func(ctx context.Context, s *Store) error {
			return s.SetNetworkAvailable(ctx)
		}, `set node "n1" NetworkUnavailable=False`, apierrors.IsForbidden},
		{"NodePublicIP get fails", false, "get", internal, func(ctx context.Context, s *Store) error {
			_, _, err := s.NodePublicIP(ctx)
			return err
		}, `get node "n1"`, apierrors.IsInternalError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ann map[string]string
			if tc.published {
				ann = published
			}
			st, cs := fakeStore(t, Config{PreStartup: true}, newNode("n1", []string{"10.50.1.0/24"}, ann))
			before := cs.get(t, "n1")
			cs.fail(tc.verb, tc.err)
			err := tc.call(testCtx(t), st)
			require.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, tc.err.Error())
			assert.True(t, tc.is(err), "the API status is wrapped: %v", err)
			assert.NotErrorIs(t, err, leases.ErrLeaseGone)
			if tc.verb != "get" {
				assert.Equal(t, before, cs.get(t, "n1"))
			}
		})
	}
}

// SetNetworkAvailable sets the NetworkUnavailable condition flanneld sets,
// and keeps the kubelet's conditions.
func TestSetNetworkAvailable(t *testing.T) {
	n := newNode("n1", []string{"10.50.1.0/24"}, nil)
	n.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: "NoRouteCreated"},
	}
	st, cs := fakeStore(t, Config{}, n)
	require.NoError(t, st.SetNetworkAvailable(testCtx(t)))
	assert.Equal(t, []string{smp}, cs.patches())
	got := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range cs.get(t, "n1").Status.Conditions {
		got[c.Type] = c
	}
	require.Len(t, got, 2)
	assert.Equal(t, "KubeletReady", got[corev1.NodeReady].Reason)
	c := got[corev1.NodeNetworkUnavailable]
	assert.Equal(t, corev1.ConditionFalse, c.Status)
	assert.Equal(t, "FlannelIsUp", c.Reason)
	assert.Equal(t, "Flannel is running on this node", c.Message)
	assert.False(t, c.LastTransitionTime.IsZero())
	assert.False(t, c.LastHeartbeatTime.IsZero())
}

func TestNodePublicIP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		v4, v6 string // "" for the zero Addr
		err    string
	}{
		{"none", nil, "", "", ""},
		{"both", map[string]string{p + "node-public-ip": "192.0.2.5", p + "node-public-ipv6": "2001:db8::5"}, "192.0.2.5", "2001:db8::5", ""},
		{"IPv6 only", map[string]string{p + "node-public-ipv6": "2001:db8::5"}, "", "2001:db8::5", ""},
		{"the published public-ip is not the node's choice", map[string]string{p + "public-ip": "192.0.2.5"}, "", "", ""},
		{"bad IPv4", map[string]string{p + "node-public-ip": "192.0.2.500"}, "", "", "annotation " + p + "node-public-ip"},
		{"bad IPv6", map[string]string{p + "node-public-ipv6": "2001:db8::g"}, "", "", "annotation " + p + "node-public-ipv6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := fakeStore(t, Config{}, newNode("n1", []string{"10.50.1.0/24"}, tc.ann))
			v4, v6, err := st.NodePublicIP(testCtx(t))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			addr := func(s string) netip.Addr {
				if s == "" {
					return netip.Addr{}
				}
				return netip.MustParseAddr(s)
			}
			assert.Equal(t, addr(tc.v4), v4)
			assert.Equal(t, addr(tc.v6), v6)
		})
	}
}

// The lease List gives for this node is the one Acquire returned while
// its annotations are as published; edited, the edit shows (the engine then
// renews). Other nodes' leases are as their annotations say.
func TestListOwnLease(t *testing.T) {
	st, cs := fakeStore(t, Config{PreStartup: true},
		newNode("n1", []string{"10.50.1.0/24"}, map[string]string{p + "public-ip-overwrite": "198.51.100.1"}),
		newNode("n2", []string{"10.50.2.0/24"}, map[string]string{p + "kube-subnet-manager": "true", p + "backend-type": leases.BackendType, p + "public-ip": "192.0.2.2"}),
		newNode("n3", []string{"10.50.3.0/24"}, nil))
	l, err := st.Acquire(testCtx(t), v4Range, attrs("192.0.2.1", mac))
	require.NoError(t, err)
	list := func() map[string]leases.Attrs {
		ls, err := st.List(testCtx(t))
		require.NoError(t, err)
		out := map[string]leases.Attrs{}
		for _, x := range ls {
			out[x.Key] = x.Attrs
		}
		return out
	}
	assert.Equal(t, map[string]leases.Attrs{
		"10.50.1.0-24": l.Attrs, // not the overwrite
		"10.50.2.0-24": attrs("192.0.2.2", ""),
	}, list())

	n := cs.get(t, "n1")
	n.Annotations[p+"backend-data"] = `"ee:ee:ee:ee:ee:ee"`
	_, err = cs.c.Nodes().Update(testCtx(t), n, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, attrs("198.51.100.1", "ee:ee:ee:ee:ee:ee"), list()["10.50.1.0-24"])
}

func TestNodeName(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-flannel", Name: "flexhook-abcde"}, Spec: corev1.PodSpec{NodeName: "n7"}}
	unscheduled := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-flannel", Name: "pending"}}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the node name, or with err a part of the error
		err  bool
	}{
		{"NODE_NAME", map[string]string{"NODE_NAME": "n5", "POD_NAME": "flexhook-abcde", "POD_NAMESPACE": "kube-flannel"}, "n5", false},
		{"the pod's node", map[string]string{"POD_NAME": "flexhook-abcde", "POD_NAMESPACE": "kube-flannel"}, "n7", false},
		{"no pod", map[string]string{"POD_NAME": "gone", "POD_NAMESPACE": "kube-flannel"}, `get pod kube-flannel/gone for its node name: pods "gone" not found`, true},
		{"unscheduled pod", map[string]string{"POD_NAME": "pending", "POD_NAMESPACE": "kube-flannel"}, "pod kube-flannel/pending has no spec.nodeName", true},
		{"no namespace", map[string]string{"POD_NAME": "flexhook-abcde"}, ErrNoNodeName.Error(), true},
		{"nothing", nil, ErrNoNodeName.Error(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fakeCore()
			for _, x := range []*corev1.Pod{pod, unscheduled} {
				_, err := cs.c.Pods(x.Namespace).Create(testCtx(t), x, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			got, err := NodeName(testCtx(t), cs, func(k string) string { return tc.env[k] })
			if tc.err {
				require.ErrorContains(t, err, tc.want)
				assert.Equal(t, tc.want == ErrNoNodeName.Error(), errors.Is(err, ErrNoNodeName))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestNewOptions(t *testing.T) {
	cs := fakeCore()
	for _, tc := range []struct {
		name string
		cfg  Config
		opts []Option
		want string // "": no error
	}{
		{"defaults", Config{Client: cs}, nil, ""},
		{"Logger(nil) is the default", Config{Client: cs}, []Option{Logger(nil)}, ""},
		{"Quiet(0, 0)", Config{Client: cs}, []Option{Quiet(0, 0)}, ""},
		{"no client", Config{}, nil, "kube store: no client"},
		{"bad prefix", Config{Client: cs, Prefix: "a/b/c"}, nil, `annotation prefix "a/b/c"`},
		{"negative quiet", Config{Client: cs}, []Option{Quiet(-time.Millisecond, time.Second)}, "want 0 <= quiet <= maxWait"},
		{"max below quiet", Config{Client: cs}, []Option{Quiet(time.Second, time.Millisecond)}, "want 0 <= quiet <= maxWait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := New(testCtx(t), tc.cfg, tc.opts...)
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, st.o.log)
			require.NoError(t, st.Close())
		})
	}
}

// A prefix other than flanneld's default names every annotation written.
func TestCustomPrefix(t *testing.T) {
	st, cs := fakeStore(t, Config{Prefix: "example.com/net", PreStartup: true}, newNode("n1", []string{"10.50.1.0/24"}, nil))
	_, err := st.Acquire(testCtx(t), v4Range, attrs("192.0.2.1", mac))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"example.com/net-backend-type": leases.BackendType, "example.com/net-backend-data": `"` + mac + `"`,
		"example.com/net-public-ip": "192.0.2.1", "example.com/net-kube-subnet-manager": "true",
	}, cs.get(t, "n1").Annotations)
	require.NoError(t, st.Remove(testCtx(t), netip.MustParsePrefix("10.50.1.0/24")))
	assert.Empty(t, cs.get(t, "n1").Annotations)
}
