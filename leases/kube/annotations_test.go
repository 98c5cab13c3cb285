package kube

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The rows of flanneld's Test_newAnnotations, and one it accepts only
// because its pattern is not anchored (an annotation key Kubernetes
// refuses anyway).
func TestNewAnnotations(t *testing.T) {
	for _, tc := range []struct{ prefix, backendType string }{
		{"flannel.alpha.coreos.com", "flannel.alpha.coreos.com/backend-type"},
		{"flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/backend-type"},
		{"flannel.alpha.coreos.com/prefix", "flannel.alpha.coreos.com/prefix-backend-type"},
		{"flannel.alpha.coreos.com/prefix-", "flannel.alpha.coreos.com/prefix-backend-type"},
		{"org.com", "org.com/backend-type"},
		{"org9.com", "org9.com/backend-type"},
		{"org.com/9", "org.com/9-backend-type"},
		{"org", ""},
		{"org/", ""},
		{"org/prefix", ""},
		{"org.COM", ""},
		{"org.com/PREFIX", ""},
		{"a.b/c/d", ""},
		{"Org.example.com", ""},
	} {
		a, err := NewAnnotations(tc.prefix)
		if tc.backendType == "" {
			if err == nil {
				t.Errorf("NewAnnotations(%q) = %q, want an error", tc.prefix, a.BackendType)
			} else if !strings.Contains(err.Error(), tc.prefix) {
				t.Errorf("NewAnnotations(%q): error %q does not name the prefix", tc.prefix, err)
			}
			continue
		}
		if err != nil || a.BackendType != tc.backendType {
			t.Errorf("NewAnnotations(%q) = %q, %v; want %q", tc.prefix, a.BackendType, err, tc.backendType)
		}
	}
}

func mustAnnotations(t *testing.T) Annotations {
	t.Helper()
	a, err := NewAnnotations(DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const p = DefaultPrefix + "/"

func TestPublished(t *testing.T) {
	a := mustAnnotations(t)
	v4 := netip.MustParseAddr("192.0.2.3")
	v6 := netip.MustParseAddr("2001:db8::3")
	mac := leases.Attrs{PublicIP: v4, BackendType: "extension", BackendData: "82:87:fe:a4:a9:55"}
	for _, tc := range []struct {
		name  string
		cur   map[string]string
		attrs leases.Attrs
		pre   bool              // a PreStartupCommand ran
		want  map[string]string // nil: nothing to patch
	}{
		{"fresh node", map[string]string{"other": "x"}, mac, true, map[string]string{
			p + "backend-type": "extension", p + "backend-data": `"82:87:fe:a4:a9:55"`,
			p + "public-ip": "192.0.2.3", p + "kube-subnet-manager": "true",
		}},
		{"no PreStartupCommand: an empty annotation", nil, leases.Attrs{PublicIP: v4, BackendType: "extension"}, false, map[string]string{
			p + "backend-type": "extension", p + "backend-data": "",
			p + "public-ip": "192.0.2.3", p + "kube-subnet-manager": "true",
		}},
		{"PreStartupCommand printed nothing", nil, leases.Attrs{PublicIP: v4, BackendType: "extension"}, true, map[string]string{
			p + "backend-type": "extension", p + "backend-data": `""`,
			p + "public-ip": "192.0.2.3", p + "kube-subnet-manager": "true",
		}},
		{"already published", map[string]string{
			p + "backend-type": "extension", p + "backend-data": `"82:87:fe:a4:a9:55"`,
			p + "public-ip": "192.0.2.3", p + "kube-subnet-manager": "true",
		}, mac, true, nil},
		{"overwrite wins", map[string]string{p + "public-ip-overwrite": "198.51.100.7"}, mac, true, map[string]string{
			p + "backend-type": "extension", p + "backend-data": `"82:87:fe:a4:a9:55"`,
			p + "public-ip": "198.51.100.7", p + "kube-subnet-manager": "true",
		}},
		{"dual stack", nil, leases.Attrs{PublicIP: v4, PublicIPv6: v6, BackendType: "extension", BackendData: `<&>`}, true, map[string]string{
			p + "backend-type": "extension", p + "backend-data": `"\u003c\u0026\u003e"`,
			p + "public-ip": "192.0.2.3", p + "kube-subnet-manager": "true",
			p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::3",
		}},
	} {
		got, err := a.Published(tc.cur, tc.attrs, tc.pre)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%s: Published = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func newNode(name string, cidrs []string, ann map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}, Spec: corev1.NodeSpec{PodCIDRs: cidrs}}
}

func TestLeaseOf(t *testing.T) {
	a := mustAnnotations(t)
	good := map[string]string{
		p + "kube-subnet-manager": "true", p + "backend-type": "extension",
		p + "backend-data": `"82:87:fe:a4:a9:55"`, p + "public-ip": "192.0.2.3", p + "public-ipv6": "2001:db8::3",
	}
	with := func(k, v string) map[string]string {
		m := maps.Clone(good)
		if v == "<none>" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	dual := []string{"10.50.3.0/24", "fd00:0:0:3::/64"}
	for _, tc := range []struct {
		name    string
		n       *corev1.Node
		dual    bool
		ok      bool
		key     string
		invalid leases.Reason
		data    string
	}{
		{"v4", newNode("a", []string{"10.50.3.0/24"}, good), false, true, "10.50.3.0-24", "", "82:87:fe:a4:a9:55"},
		{"podCIDR only", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a", Annotations: good}, Spec: corev1.NodeSpec{PodCIDR: "10.50.3.0/24"}}, false, true, "10.50.3.0-24", "", "82:87:fe:a4:a9:55"},
		{"dual stack off ignores v6", newNode("a", dual, good), false, true, "10.50.3.0-24", "", "82:87:fe:a4:a9:55"},
		{"dual stack", newNode("a", dual, good), true, true, "10.50.3.0-24&fd00:0:0:3::-64", "", "82:87:fe:a4:a9:55"},
		{"not managed", newNode("a", []string{"10.50.3.0/24"}, with(p+"kube-subnet-manager", "<none>")), false, false, "", "", ""},
		{"managed false", newNode("a", []string{"10.50.3.0/24"}, with(p+"kube-subnet-manager", "false")), false, false, "", "", ""},
		{"no podCIDR", newNode("a", nil, good), false, true, "node/a", leases.ReasonBadKey, ""},
		{"v6 only", newNode("a", []string{"fd00::/64"}, good), true, true, "node/a", leases.ReasonBadKey, ""},
		{"three podCIDRs", newNode("a", []string{"10.50.3.0/24", "fd00::/64", "10.50.4.0/24"}, good), false, true, "node/a", leases.ReasonBadKey, ""},
		{"bad podCIDR", newNode("a", []string{"10.50.3.0/33"}, good), false, true, "node/a", leases.ReasonBadKey, ""},
		{"bad public-ip", newNode("a", []string{"10.50.3.0/24"}, with(p+"public-ip", "192.0.2.3; reboot")), false, true, "10.50.3.0-24", leases.ReasonBadValue, ""},
		{"bad public-ipv6 with dual stack", newNode("a", dual, with(p+"public-ipv6", "x")), true, true, "10.50.3.0-24&fd00:0:0:3::-64", leases.ReasonBadValue, ""},
		{"backend-data not JSON", newNode("a", []string{"10.50.3.0/24"}, with(p+"backend-data", "$(reboot)")), false, true, "10.50.3.0-24", leases.ReasonBadValue, ""},
		{"vxlan object kept as text", newNode("a", []string{"10.50.3.0/24"}, with(p+"backend-data", `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`)), false, true, "10.50.3.0-24", "", `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`},
		{"empty backend-data", newNode("a", []string{"10.50.3.0/24"}, with(p+"backend-data", "")), false, true, "10.50.3.0-24", "", ""},
		{"huge backend-data", newNode("a", []string{"10.50.3.0/24"}, with(p+"backend-data", `"`+strings.Repeat("a", leases.MaxValueSize)+`"`)), false, true, "10.50.3.0-24", leases.ReasonBadValue, ""},
	} {
		l, ok := a.leaseOf(a.slim(tc.n), tc.dual)
		switch {
		case ok != tc.ok:
			t.Errorf("%s: ok = %v, want %v", tc.name, ok, tc.ok)
		case !ok:
		case l.Key != tc.key || l.Invalid != tc.invalid || l.Attrs.BackendData != tc.data:
			t.Errorf("%s: key %q invalid %q data %q (problem %q); want %q %q %q", tc.name, l.Key, l.Invalid, l.Attrs.BackendData, l.Problem, tc.key, tc.invalid, tc.data)
		case l.Invalid != "" && !strings.Contains(l.Problem, `"a"`):
			t.Errorf("%s: problem %q does not name the node", tc.name, l.Problem)
		}
	}
}

func TestFits(t *testing.T) {
	net := netip.MustParsePrefix("10.50.0.0/16")
	for _, tc := range []struct {
		cidr string
		bits int
		want string // "" for no error, else a part of it
	}{
		{"10.50.3.0/24", 24, ""},
		{"10.51.3.0/24", 24, "outside Network 10.50.0.0/16"},
		{"10.0.0.0/8", 8, "outside Network"},
		{"10.50.3.0/25", 24, "set SubnetLen to 25"},
	} {
		err := fits("n1", "", netip.MustParsePrefix(tc.cidr), net, tc.bits)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("fits(%s) = %v, want %q", tc.cidr, err, tc.want)
		}
	}
	if err := fits("n1", "IPv6", netip.Prefix{}, netip.MustParsePrefix("fd00::/48"), 64); err == nil || !strings.Contains(err.Error(), "no IPv6 podCIDR") {
		t.Errorf("missing IPv6 podCIDR: %v", err)
	}
}

// TestTrim: a Node as a kubelet keeps it (images, conditions, node info,
// labels, managed fields) is cached as a few hundred bytes that keep the
// fields leases are made of, and nothing else; a tombstone passes.
func TestTrim(t *testing.T) {
	a := mustAnnotations(t)
	n := newNode("worker-17", []string{"10.50.3.0/24", "fd00:0:0:3::/64"}, map[string]string{
		p + "kube-subnet-manager": "true", p + "backend-data": `"82:87:fe:a4:a9:55"`, p + "public-ip": "192.0.2.3",
		"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
	})
	n.UID, n.ResourceVersion = "u-17", "12345"
	n.CreationTimestamp = metav1.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n.Labels = map[string]string{"kubernetes.io/hostname": "worker-17", "kubernetes.io/os": "linux"}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
	n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	for i := range 40 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names: []string{fmt.Sprintf("registry.k8s.io/some/image-%d@sha256:%064d", i, i), fmt.Sprintf("registry.k8s.io/some/image-%d:v1.2.%d", i, i)}, SizeBytes: int64(i) << 20})
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"}}
	n.Status.NodeInfo = corev1.NodeSystemInfo{KernelVersion: "6.18", OSImage: "Debian GNU/Linux 13", KubeletVersion: "v1.37.2"}

	obj, err := a.trim(n)
	if err != nil {
		t.Fatal(err)
	}
	tn := obj.(*node)
	want := &node{name: "worker-17", resourceVersion: "12345", created: n.CreationTimestamp.Time, podCIDRs: n.Spec.PodCIDRs}
	want.ann[annSubnetKubeManaged], want.ann[annBackendData], want.ann[annPublicIP] = "true", `"82:87:fe:a4:a9:55"`, "192.0.2.3"
	want.has = 1<<annSubnetKubeManaged | 1<<annBackendData | 1<<annPublicIP
	if !reflect.DeepEqual(tn, want) {
		t.Errorf("trim =\n%+v\nwant\n%+v", tn, want)
	}
	if got, want := tn.annotations(a), map[string]string{p + "kube-subnet-manager": "true", p + "backend-data": `"82:87:fe:a4:a9:55"`, p + "public-ip": "192.0.2.3"}; !maps.Equal(got, want) {
		t.Errorf("annotations = %v, want %v", got, want)
	}
	// The informer keys and versions what it caches by its metadata.
	if key, err := cache.MetaNamespaceKeyFunc(obj); err != nil || key != "worker-17" {
		t.Errorf("key = %q, %v", key, err)
	}
	if m, err := meta.Accessor(obj); err != nil || m.GetResourceVersion() != "12345" {
		t.Errorf("accessor = %v, %v", m, err)
	}

	// What the cache holds per Node, measured as the informer makes it:
	// a Node decoded from protobuf, trimmed, the decoded Node dropped.
	raw, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const count = 2000
	kept := make([]any, count)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range kept {
		var d corev1.Node
		if err := d.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if kept[i], err = a.trim(&d); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perNode := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / count
	runtime.KeepAlive(kept)
	// A trimmed *corev1.Node with its annotation map was ~1.2 KB.
	if perNode > 640 {
		t.Errorf("the cache holds %d bytes per Node (%d of protobuf): want at most 640", perNode, len(raw))
	} else {
		t.Logf("the cache holds %d bytes per Node of %d bytes (protobuf)", perNode, len(raw))
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "worker-17", Obj: n}
	if got, err := a.trim(tomb); err != nil || !reflect.DeepEqual(got, tomb) {
		t.Errorf("trim(tombstone) = %v, %v", got, err)
	}
}
