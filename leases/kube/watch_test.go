package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flexhook/flexhook/leases"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	fakecorev1 "k8s.io/client-go/kubernetes/typed/core/v1/fake"
	clienttesting "k8s.io/client-go/testing"
)

// fakeCore is client-go's fake core/v1 client over an object tracker, as
// its fake clientset builds one, applying patches as the API server does
// (integration/kube runs the store on a real API server).
func fakeCore() fakeClient {
	o := clienttesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())
	f := &clienttesting.Fake{}
	f.AddReactor("*", "*", clienttesting.ObjectReaction(o))
	f.AddWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := action.(clienttesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := o.Watch(action.GetResource(), action.GetNamespace(), opts)
		return err == nil, w, err
	})
	return fakeClient{&fakecorev1.FakeCoreV1{Fake: f}}
}

// fakeClient is API on the fake. Like client-go's fake clientset, it tells
// the informer that it cannot serve watch-list requests.
type fakeClient struct{ c *fakecorev1.FakeCoreV1 }

func (fakeClient) IsWatchListSemanticsUnSupported() bool { return true }

func (f fakeClient) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	return f.c.Nodes().Get(ctx, name, metav1.GetOptions{})
}

func (f fakeClient) ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	return f.c.Nodes().List(ctx, opts)
}

func (f fakeClient) WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return f.c.Nodes().Watch(ctx, opts)
}

func (f fakeClient) PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error) {
	return f.c.Nodes().Patch(ctx, name, pt, data, metav1.PatchOptions{}, "status")
}

func (f fakeClient) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return f.c.Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

// TestWatchKeepsChangingNodesFromStarvingIt: a node that changes more often
// than the quiet time must not hold snapshots back until it stops. The
// writer stops as soon as a snapshot shows one of its changes; without
// the max wait none would come before the last of its 2000 changes.
func TestWatchKeepsChangingNodesFromStarvingIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := fakeCore()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "busy", Annotations: map[string]string{
			p + "kube-subnet-manager": "true", p + "backend-type": "extension", p + "public-ip": "192.0.2.1",
		}},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.50.1.0/24"}},
	}
	if _, err := cs.c.Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A quiet time no writer can keep up with would prove nothing: the
	// writer below changes the node every millisecond or so.
	st, err := New(ctx, Config{Client: cs}, Quiet(50*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := make(chan []leases.Lease, 64)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Watch(wctx, out) }()
	defer func() { stop(); <-done }()
	if first := <-out; len(first) != 1 || first[0].Attrs.BackendData != "" {
		t.Fatalf("first snapshot %+v", first)
	}

	changes := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for changes < 2000 {
		select {
		case snap := <-out:
			if len(snap) == 1 && snap[0].Attrs.BackendData != "" {
				t.Logf("a snapshot came after %d changes: %q", changes, snap[0].Attrs.BackendData)
				return
			}
		case <-tick.C:
			changes++
			n.Annotations[p+"backend-data"] = fmt.Sprintf(`"%d"`, changes)
			if _, err := cs.c.Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatalf("no snapshot while the node kept changing (%d changes)", changes)
}

// Two Nodes claiming one podCIDR are decided the same way whatever order
// the list has: the Node created first keeps it, then the lower name;
// this node's own Node always; the others are refused as duplicate_claim
// under node/NAME. (Before, both reached admission with one key, and
// which one won changed from run to run.)
func TestDuplicatePodCIDRs(t *testing.T) {
	a, err := NewAnnotations("flannel.alpha.coreos.com")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	claim := func(name, cidr, ip string, age time.Duration) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age)), Annotations: map[string]string{
				p + "kube-subnet-manager": "true", p + "backend-type": "extension", p + "public-ip": ip,
			}},
			Spec: corev1.NodeSpec{PodCIDRs: []string{cidr}},
		}
	}
	victim := claim("node-2", "10.50.2.0/24", "192.0.2.2", time.Hour)
	newcomer := claim("evil", "10.50.2.0/24", "192.0.2.77", time.Minute)
	twinA := claim("twin-a", "10.50.3.0/24", "192.0.2.3", time.Hour)
	twinB := claim("twin-b", "10.50.3.0/24", "192.0.2.33", time.Hour)
	self := claim("self", "10.50.4.0/24", "192.0.2.4", time.Minute)
	older := claim("older", "10.50.4.0/24", "192.0.2.44", time.Hour)
	all := []*corev1.Node{victim, newcomer, twinA, twinB, self, older}
	for _, order := range [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {1, 3, 5, 0, 2, 4}} {
		st := &Store{ann: a, cfg: Config{NodeName: "self"}}
		objs := make([]any, 0, len(all))
		for _, i := range order {
			objs = append(objs, a.slim(all[i]))
		}
		got := map[string]string{}
		for _, l := range st.leasesOf(objs) {
			got[l.Key] = string(l.Invalid) + " " + l.Attrs.PublicIP.String()
		}
		want := map[string]string{
			"10.50.2.0-24": " 192.0.2.2", "node/evil": "duplicate_claim 192.0.2.77",
			"10.50.3.0-24": " 192.0.2.3", "node/twin-b": "duplicate_claim 192.0.2.33",
			"10.50.4.0-24": " 192.0.2.4", "node/older": "duplicate_claim 192.0.2.44",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("order %v:\n got %v\nwant %v", order, got, want)
		}
	}
}
