//go:build integration

package kubeit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
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

// decodeObjects decodes every document of the YAML stream raw (read from
// name).
func decodeObjects(t *testing.T, name string, raw []byte) []runtime.Object {
	t.Helper()
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(js) == "null" {
			continue // comments only
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
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

// deployed is one rendered set of objects (the manifest, a chart render,
// a kustomize build) as created on the server.
type deployed struct {
	name  string // where it came from, for messages
	kinds []string
	ns    *corev1.Namespace // nil when the set has none (helm install)
	sa    *corev1.ServiceAccount
	cm    *corev1.ConfigMap
	cr    *rbacv1.ClusterRole
	crb   *rbacv1.ClusterRoleBinding
	ds    *appsv1.DaemonSet
}

// deploy creates every object of the YAML stream raw on the server, with
// strict field validation, in order. Without a Namespace in the stream it
// first creates namespace as deploy/README.md says (labelled for the
// privileged pod-security level).
func deploy(t *testing.T, ctx context.Context, s *kubeSuite, name string, raw []byte, namespace string) *deployed {
	t.Helper()
	objs := decodeObjects(t, name, raw)
	d := &deployed{name: name}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Namespace:
			d.ns = o
		case *corev1.ServiceAccount:
			d.sa = o
		case *corev1.ConfigMap:
			d.cm = o
		case *rbacv1.ClusterRole:
			d.cr = o
		case *rbacv1.ClusterRoleBinding:
			d.crb = o
		case *appsv1.DaemonSet:
			d.ds = o
		}
	}
	if d.ns == nil {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: namespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"},
		}}
		if _, err := s.a.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: namespace %s: %v", name, namespace, err)
		}
	}
	for _, obj := range objs {
		kind, err := create(ctx, s.a.cs, obj)
		if err != nil {
			t.Fatalf("the server refused %s's %s: %v", name, kind, err)
		}
		d.kinds = append(d.kinds, kind)
	}
	if d.sa == nil || d.cm == nil || d.cr == nil || d.crb == nil || d.ds == nil {
		t.Fatalf("%s: kinds %v: want a ServiceAccount, a ConfigMap, a ClusterRole, a ClusterRoleBinding and a DaemonSet", name, d.kinds)
	}
	return d
}

// want is what a rendered set must hold beyond what every set holds.
type want struct {
	network string // net-conf.json's Network
	preset  string // the preset its text is, Network aside
	netconf string // or its whole text (the chart's netConf)
	ipMasq  bool   // --ip-masq in the daemon's args
	image   string // flexhook's image
	// migrationLabel is the node label key flexhook's node affinity
	// requires "true" of ("": none).
	migrationLabel string
	metricsPort    int32 // --metrics-addr's port and the healthz port
	scrape         bool  // the prometheus.io annotations
}

// checkDeployed checks a set created by deploy: net-conf.json is the
// preset with only Network replaced and passes flexhook check, the
// DaemonSet runs check before run in kube mode with the flags the values
// ask for (and flexhook's flag parser takes every one), the xtables lock
// is mounted, the scrape annotations point at the metrics listener, and
// the service account may do what a kube subnet manager needs and no
// more. It returns a client acting as the set's service account.
func checkDeployed(t *testing.T, ctx context.Context, s *kubeSuite, d *deployed, w want) (corev1client.CoreV1Interface, string) {
	t.Helper()
	bin := os.Getenv("FLEXHOOK_BIN")

	// net-conf.json: the preset's text, byte for byte, but Network (or
	// the text given).
	netconf, exp := d.cm.Data["net-conf.json"], w.netconf
	if exp == "" {
		raw, err := presets.Get(w.preset)
		if err != nil {
			t.Fatal(err)
		}
		pre := `"Network": "10.50.0.0/16"`
		if bytes.Count(raw, []byte(pre)) != 1 {
			t.Fatalf("preset %s: want one %s", w.preset, pre)
		}
		exp = string(bytes.Replace(raw, []byte(pre), []byte(`"Network": "`+w.network+`"`), 1))
	}
	if netconf != exp {
		t.Errorf("%s: ConfigMap net-conf.json is not preset %s with Network %s (or the netConf given):\n%s\nwant:\n%s", d.name, w.preset, w.network, netconf, exp)
	}
	if _, err := hooks.Parse([]byte(netconf)); err != nil {
		t.Errorf("%s: ConfigMap net-conf.json: %v", d.name, err)
	}
	if bin != "" {
		path := filepath.Join(t.TempDir(), "net-conf.json")
		if err := os.WriteFile(path, []byte(netconf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, bin, "check", "--config", path).CombinedOutput(); err != nil {
			t.Errorf("%s: flexhook check on the ConfigMap's net-conf.json: %v\n%s", d.name, err, out)
		}
	}

	// The DaemonSet runs check before run, in kube mode, as the account,
	// with the ConfigMap.
	ds := d.ds
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != d.sa.Name || !spec.HostNetwork {
		t.Errorf("%s: DaemonSet: serviceAccountName %q (want %q) hostNetwork %v", d.name, spec.ServiceAccountName, d.sa.Name, spec.HostNetwork)
	}
	if len(spec.InitContainers) < 2 || !slices.Contains(spec.InitContainers[1].Args, "check") {
		t.Fatalf("%s: DaemonSet: no flexhook check init container: %+v", d.name, spec.InitContainers)
	}
	run := spec.Containers[0]
	for _, arg := range []string{"run", "--kube-subnet-mgr", "--subnet-file=/run/flannel/subnet.env", "--net-config-path=/etc/kube-flannel/net-conf.json"} {
		if !slices.Contains(run.Args, arg) {
			t.Errorf("%s: DaemonSet: %s not in %v", d.name, arg, run.Args)
		}
	}
	if got := slices.Contains(run.Args, "--ip-masq"); got != w.ipMasq {
		t.Errorf("%s: DaemonSet: --ip-masq in args %v, want %v: %v", d.name, got, w.ipMasq, run.Args)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
		t.Errorf("%s: DaemonSet: terminationGracePeriodSeconds %v: shorter than ShutdownCommand's minute", d.name, g)
	}
	if v := volume(spec, "flexhook-cfg"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != d.cm.Name {
		t.Errorf("%s: DaemonSet: volume flexhook-cfg %+v is not the ConfigMap %s", d.name, v, d.cm.Name)
	}
	for _, c := range []corev1.Container{spec.InitContainers[1], spec.InitContainers[2], run} {
		if c.Image != w.image {
			t.Errorf("%s: DaemonSet: container %s runs %q, want %q", d.name, c.Name, c.Image, w.image)
		}
	}
	if bin != "" {
		// Every flag the pod passes is one flexhook knows: -h after
		// them parses them all and prints the usage (exit 0); an unknown
		// one is a usage error (exit 2).
		for _, c := range []corev1.Container{spec.InitContainers[1], run} {
			args := append(expandEnv(c), "-h")
			if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
				t.Errorf("%s: DaemonSet: flexhook %v: %v\n%.300s", d.name, args, err, out)
			}
		}
	}

	// The xtables lock, as kube-flannel mounts it.
	if v := volume(spec, "xtables-lock"); v == nil || v.HostPath == nil || v.HostPath.Path != "/run/xtables.lock" ||
		v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathFileOrCreate {
		t.Errorf("%s: DaemonSet: no hostPath /run/xtables.lock (FileOrCreate) volume: %+v", d.name, v)
	}
	if !slices.ContainsFunc(run.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "xtables-lock" && m.MountPath == "/run/xtables.lock"
	}) {
		t.Errorf("%s: DaemonSet: xtables-lock not mounted at /run/xtables.lock: %+v", d.name, run.VolumeMounts)
	}

	// Metrics: the listener's port, the probes' port and, when asked,
	// the annotations Prometheus' pod discovery reads.
	port := fmt.Sprint(w.metricsPort)
	if !slices.Contains(run.Args, "--metrics-addr=$(HOST_IP):"+port) {
		t.Errorf("%s: DaemonSet: no --metrics-addr on port %s: %v", d.name, port, run.Args)
	}
	if len(run.Ports) != 1 || run.Ports[0].Name != "healthz" || run.Ports[0].ContainerPort != w.metricsPort {
		t.Errorf("%s: DaemonSet: ports %+v, want healthz %s", d.name, run.Ports, port)
	}
	ann := ds.Spec.Template.Annotations
	wantAnn := map[string]string{}
	if w.scrape {
		wantAnn = map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"}
	}
	for k, v := range wantAnn {
		if ann[k] != v {
			t.Errorf("%s: pod annotation %s = %q, want %q", d.name, k, ann[k], v)
		}
	}
	if !w.scrape && ann["prometheus.io/scrape"] != "" {
		t.Errorf("%s: pod annotations %v with scrape off", d.name, ann)
	}

	// The migration label, in the node affinity the DaemonSet controller
	// reads.
	var exprs []corev1.NodeSelectorRequirement
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			exprs = append(exprs, term.MatchExpressions...)
		}
	}
	hasLabel := slices.ContainsFunc(exprs, func(e corev1.NodeSelectorRequirement) bool {
		return e.Key == w.migrationLabel && e.Operator == corev1.NodeSelectorOpIn && slices.Equal(e.Values, []string{"true"})
	})
	if w.migrationLabel != "" && !hasLabel || w.migrationLabel == "" && len(exprs) != 1 {
		t.Errorf("%s: DaemonSet: node affinity %+v, want kubernetes.io/os and migration label %q", d.name, exprs, w.migrationLabel)
	}

	// RBAC: the manifest's least privilege, bound to the set's account.
	if !reflect.DeepEqual(d.cr.Rules, leastRules) {
		t.Errorf("%s: ClusterRole rules %+v, want %+v", d.name, d.cr.Rules, leastRules)
	}
	if d.crb.RoleRef.Name != d.cr.Name || len(d.crb.Subjects) != 1 ||
		d.crb.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: d.sa.Name, Namespace: d.sa.Namespace}) {
		t.Errorf("%s: ClusterRoleBinding %+v %+v does not bind %s to %s/%s", d.name, d.crb.RoleRef, d.crb.Subjects, d.cr.Name, d.sa.Namespace, d.sa.Name)
	}
	token := s.a.token(t, ctx, d.sa.Namespace, d.sa.Name)
	typed, err := corev1client.NewForConfig(s.a.as(token))
	if err != nil {
		t.Fatal(err)
	}
	checkLeastPrivilege(t, ctx, s, typed, d.sa.Namespace)
	return typed, token
}

// leastRules are what a kube subnet manager needs: read nodes, patch
// their status (annotations and NetworkUnavailable).
var leastRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
}

// volume returns the pod's volume name, or nil.
func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// expandEnv returns c's args without the flexhook command's path, with
// $(VAR) replaced by a value of the kind the kubelet would give it.
func expandEnv(c corev1.Container) []string {
	vals := map[string]string{"HOST_IP": "127.0.0.1", "NODE_NAME": "node-1"}
	out := make([]string, 0, len(c.Args))
	for _, a := range c.Args {
		for _, e := range c.Env {
			a = strings.ReplaceAll(a, "$("+e.Name+")", vals[e.Name])
		}
		out = append(out, a)
	}
	return out
}

// testManifest applies deploy/kube-flexhook.yml to the server, checks it
// as every rendered set (checkDeployed) with the chart's defaults, and
// leaves s.sa acting as its service account.
func testManifest(t *testing.T, ctx context.Context, s *kubeSuite) {
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	d := deploy(t, ctx, s, manifest, raw, "")
	// helm's install order: what the namespace holds before the
	// DaemonSet's pods need it.
	order := []string{"Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}
	if !slices.Equal(d.kinds, order) {
		t.Fatalf("manifest kinds %v, want %v", d.kinds, order)
	}
	if d.ns.Name != "kube-flexhook" || d.sa.Namespace != "kube-flexhook" || d.sa.Name != "flexhook" {
		t.Fatalf("manifest: namespace %s, service account %s/%s; the suite wants kube-flexhook/flexhook", d.ns.Name, d.sa.Namespace, d.sa.Name)
	}
	if d.ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("manifest: Namespace labels %v: the DaemonSet's pods need the privileged pod-security level", d.ns.Labels)
	}
	typed, token := checkDeployed(t, ctx, s, d, defaults)
	// The store gets flexhook's own client, as flexhook run makes it.
	api, err := kube.NewAPI(s.a.as(token))
	if err != nil {
		t.Fatal(err)
	}
	s.token, s.sa, s.saTyped = token, api, typed
	s.kubeconfig = s.a.kubeconfig(t, "loopback.kubeconfig", s.a.admin.Host, s.token)
}

// defaults is what the chart's default values render (and so
// deploy/kube-flexhook.yml).
var defaults = want{network: "10.244.0.0/16", preset: "vxlan-prod", ipMasq: true, image: "flexhook:0.1.0", metricsPort: 8081, scrape: true}

// checkLeastPrivilege checks, as a set's service account (typed), that it
// can do what a kube subnet manager needs and no more (the store tests,
// acting as the manifest's account, show the rest of what it needs).
func checkLeastPrivilege(t *testing.T, ctx context.Context, s *kubeSuite, typed corev1client.CoreV1Interface, ns string) {
	t.Helper()
	if _, err := s.a.cs.CoreV1().Nodes().Get(ctx, "guarded", metav1.GetOptions{}); err != nil {
		s.a.newNode(t, ctx, "guarded", []string{"10.50.90.0/24"}, nil)
	}
	if _, err := typed.Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list nodes as the service account: %v", err)
	}
	if _, err := typed.Nodes().PatchStatus(ctx, "guarded", []byte(`{"metadata":{"annotations":{"flexhook.test/rbac":"`+ns+`"}}}`)); err != nil {
		t.Errorf("patch a node's status as the service account: %v", err)
	}
	_, err := typed.Pods(ns).List(ctx, metav1.ListOptions{})
	forbidden(t, "list pods", err)
	_, err = typed.Secrets(ns).List(ctx, metav1.ListOptions{})
	forbidden(t, "list secrets", err)
	forbidden(t, "delete a node", typed.Nodes().Delete(ctx, "guarded", metav1.DeleteOptions{}))
	n, err := typed.Nodes().Get(ctx, "guarded", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node as the service account: %v", err)
	}
	n.Spec.Unschedulable = true
	_, err = typed.Nodes().Update(ctx, n, metav1.UpdateOptions{})
	forbidden(t, "update a node's spec", err)
	_, err = typed.Nodes().Patch(ctx, "guarded", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	forbidden(t, "patch a node (not its status)", err)
}

// testLeastPrivilege checks that the manifest's service account can do no
// more than a kube subnet manager needs (every other test acts as it and
// shows that it can do that much).
func testLeastPrivilege(t *testing.T, ctx context.Context, s *kubeSuite) {
	checkLeastPrivilege(t, ctx, s, s.saTyped, "kube-flexhook")
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
