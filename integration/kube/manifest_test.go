//go:build integration

package kubeit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases/kube"
	"github.com/flexhook/flexhook/presets"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

const manifest = "../../deploy/kube-flexhook.yml"

// manifestObjects decodes every document of the manifest.
func manifestObjects(t *testing.T) []runtime.Object {
	t.Helper()
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		if string(js) == "null" {
			continue // comments only
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		out = append(out, obj)
	}
}

// create creates obj on the server as the admin (kubectl apply would).
func create(ctx context.Context, cs kubernetes.Interface, obj runtime.Object) (string, error) {
	c := metav1.CreateOptions{FieldValidation: "Strict"} // unknown fields are errors, not dropped
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err := cs.CoreV1().Namespaces().Create(ctx, o, c)
		return "Namespace", err
	case *rbacv1.ClusterRole:
		_, err := cs.RbacV1().ClusterRoles().Create(ctx, o, c)
		return "ClusterRole", err
	case *rbacv1.ClusterRoleBinding:
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, o, c)
		return "ClusterRoleBinding", err
	case *corev1.ServiceAccount:
		_, err := cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, c)
		return "ServiceAccount", err
	case *corev1.ConfigMap:
		_, err := cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, c)
		return "ConfigMap", err
	case *appsv1.DaemonSet:
		_, err := cs.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, c)
		return "DaemonSet", err
	}
	return reflect.TypeOf(obj).String(), errUnknownKind
}

var errUnknownKind = errors.New("a kind the manifest test does not create")

// testManifest applies deploy/kube-flexhook.yml to the server, checks its
// net-conf.json (the vxlan-prod preset's hooks, passing flexhook check) and
// the DaemonSet's wiring, and leaves s.sa acting as its service account.
func testManifest(t *testing.T, ctx context.Context, s *kubeSuite) {
	var kinds []string
	var cm *corev1.ConfigMap
	var ds *appsv1.DaemonSet
	for _, obj := range manifestObjects(t) {
		kind, err := create(ctx, s.a.cs, obj)
		if err != nil {
			t.Fatalf("the server refused the manifest's %s: %v", kind, err)
		}
		kinds = append(kinds, kind)
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			cm = o
		case *appsv1.DaemonSet:
			ds = o
		}
	}
	want := []string{"Namespace", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "DaemonSet"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("manifest kinds %v, want %v", kinds, want)
	}

	// net-conf.json: the vxlan-prod preset's hooks (a rolling update loses
	// no traffic), checked clean.
	netconf := cm.Data["net-conf.json"]
	if _, err := hooks.Parse([]byte(netconf)); err != nil {
		t.Errorf("ConfigMap net-conf.json: %v", err)
	}
	raw, err := presets.Get("vxlan-prod")
	if err != nil {
		t.Fatal(err)
	}
	var got, pre map[string]any
	if err := json.Unmarshal([]byte(netconf), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &pre); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got["Backend"], pre["Backend"]) {
		t.Errorf("ConfigMap net-conf.json's Backend is not the vxlan-prod preset's:\n%v\n%v", got["Backend"], pre["Backend"])
	}
	if bin := os.Getenv("FLEXHOOK_BIN"); bin != "" {
		path := filepath.Join(t.TempDir(), "net-conf.json")
		if err := os.WriteFile(path, []byte(netconf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, bin, "check", "--config", path).CombinedOutput(); err != nil {
			t.Errorf("flexhook check on the ConfigMap's net-conf.json: %v\n%s", err, out)
		}
	}

	// The DaemonSet runs check before run, in kube mode, as the account.
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != "flexhook" || !spec.HostNetwork {
		t.Errorf("DaemonSet: serviceAccountName %q hostNetwork %v", spec.ServiceAccountName, spec.HostNetwork)
	}
	if len(spec.InitContainers) < 2 || !slices.Contains(spec.InitContainers[1].Args, "check") {
		t.Errorf("DaemonSet: no flexhook check init container: %+v", spec.InitContainers)
	}
	run := spec.Containers[0]
	for _, arg := range []string{"run", "--kube-subnet-mgr", "--subnet-file=/run/flannel/subnet.env"} {
		if !slices.Contains(run.Args, arg) {
			t.Errorf("DaemonSet: %s not in %v", arg, run.Args)
		}
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
		t.Errorf("DaemonSet: terminationGracePeriodSeconds %v: shorter than ShutdownCommand's minute", g)
	}

	s.token = s.a.token(t, ctx, "kube-flexhook", "flexhook")
	typed, err := corev1client.NewForConfig(s.a.as(s.token))
	if err != nil {
		t.Fatal(err)
	}
	// The store gets flexhook's own client, as flexhook run makes it.
	api, err := kube.NewAPI(s.a.as(s.token))
	if err != nil {
		t.Fatal(err)
	}
	s.sa, s.saTyped = api, typed
	s.kubeconfig = s.a.kubeconfig(t, "loopback.kubeconfig", s.a.admin.Host, s.token)
}

// testLeastPrivilege checks that the service account can do no more than
// a kube subnet manager needs (every other test acts as it and shows that
// it can do that much).
func testLeastPrivilege(t *testing.T, ctx context.Context, s *kubeSuite) {
	s.a.newNode(t, ctx, "guarded", []string{"10.50.90.0/24"}, nil)
	_, err := s.saTyped.Pods("kube-flexhook").List(ctx, metav1.ListOptions{})
	forbidden(t, "list pods", err)
	_, err = s.saTyped.Secrets("kube-flexhook").List(ctx, metav1.ListOptions{})
	forbidden(t, "list secrets", err)
	forbidden(t, "delete a node", s.saTyped.Nodes().Delete(ctx, "guarded", metav1.DeleteOptions{}))
	n, err := s.saTyped.Nodes().Get(ctx, "guarded", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node as the service account: %v", err)
	}
	n.Spec.Unschedulable = true
	_, err = s.saTyped.Nodes().Update(ctx, n, metav1.UpdateOptions{})
	forbidden(t, "update a node's spec", err)
	_, err = s.saTyped.Nodes().Patch(ctx, "guarded", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	forbidden(t, "patch a node (not its status)", err)
}

// testNodeNameFromPod: without NODE_NAME, the node's name is the pod's
// spec.nodeName, as flanneld finds it. The manifest gives NODE_NAME, so
// its account may not read pods; a role that may (here the admin) can.
func testNodeNameFromPod(t *testing.T, ctx context.Context, s *kubeSuite) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-flexhook-ds-x1", Namespace: "kube-flexhook"},
		Spec: corev1.PodSpec{
			NodeName: "pod-node", ServiceAccountName: "flexhook", AutomountServiceAccountToken: ptr(false),
			Containers: []corev1.Container{{Name: "kube-flexhook", Image: "flexhook:dev"}},
		},
	}
	if _, err := s.a.cs.CoreV1().Pods("kube-flexhook").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"POD_NAME": pod.Name, "POD_NAMESPACE": pod.Namespace}
	admin, err := kube.NewAPI(s.a.admin)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := kube.NodeName(ctx, admin, func(k string) string { return env[k] }); err != nil || name != "pod-node" {
		t.Errorf("NodeName from the pod = %q, %v; want pod-node", name, err)
	}
	_, err = kube.NodeName(ctx, s.sa, func(k string) string { return env[k] })
	forbidden(t, "read its pod", errors.Unwrap(err))
	env["NODE_NAME"] = "given"
	if name, err := kube.NodeName(ctx, s.sa, func(k string) string { return env[k] }); err != nil || name != "given" {
		t.Errorf("NodeName with NODE_NAME = %q, %v", name, err)
	}
}
