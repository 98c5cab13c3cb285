//go:build integration

package kubeit

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/daemon"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/flexhook/flexhook/presets"
)

// The Kubernetes kit: the Helm chart is the one source; the manifest and
// the kustomize base are the chart rendered with flatValues, and
// TestKubeDeployFiles fails when they drift from it (-update rewrites
// them).
const (
	chartDir      = "../../deploy/helm/flexhook"
	kustomizeBase = "../../deploy/kustomize/base"
	baseManifest  = kustomizeBase + "/kube-flexhook.yml"
	migrateDir    = "../../deploy/kustomize/overlays/migrate"
	flannelPatch  = "../../deploy/migrate/kube-flannel-ds.patch.json"
)

var update = flag.Bool("update", false, "rewrite deploy/kube-flexhook.yml and the kustomize base from the chart")

// The release the manifest is rendered as: the chart's defaults, the
// Namespace included (kubectl apply has no --create-namespace).
const (
	flatRelease   = "flexhook"
	flatNamespace = "kube-flexhook"
)

var flatValues = map[string]any{"createNamespace": true}

// manifestHeader heads deploy/kube-flexhook.yml and the kustomize base.
const manifestHeader = `# flexhook as a drop-in for kube-flannel's flanneld (--kube-subnet-mgr):
# the node's subnet is its spec.podCIDRs and its lease is kept in node
# annotations in flanneld's format, so flanneld and flexhook nodes can be
# mixed while a cluster moves over (deploy/README.md: the steps). The
# net-conf.json below is flexhook's vxlan-prod preset (a rolling update
# loses no traffic) on kube-flannel's default Network; edit its Network
# to the cluster's --cluster-cidr, or install the chart with
# --set network=CIDR.
#
# Generated, do not edit: the Helm chart deploy/helm/flexhook with its
# default values, as
#   helm template flexhook deploy/helm/flexhook --namespace kube-flexhook --set createNamespace=true
# prints it. Edit the chart, then rewrite this file and its copy in
# deploy/kustomize/base with
#   cd integration/kube && go test -tags integration -run TestKubeDeployFiles -update
#
# The image is flexhook:<the chart's appVersion> (make image builds it,
# deploy/IMAGE.md): load it on the nodes or push it to your registry
# and set the three flexhook image: lines below.
`

// renderChart renders the chart as helm template does (helm's engine,
// its values coalescing and values.schema.json, its install order) for
// release in namespace with vals over the chart's values.
func renderChart(release, namespace string, vals map[string]any) ([]byte, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, nil, false)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sort: %w", err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart has %d hooks: kubectl apply of the manifest would not run them", len(hooks))
	}
	var b bytes.Buffer
	for _, m := range manifests {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, m.Content)
	}
	// helm template prints the release's manifest trimmed.
	return append(bytes.TrimSpace(b.Bytes()), '\n'), nil
}

// kustomizeBuild builds the kustomization in dir as kubectl apply -k
// does (krusty, on disk, files under the root only).
func kustomizeBuild(dir string) ([]byte, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// TestKubeDeployFiles needs no server: the manifest and the kustomize
// base are the chart's render, and the chart's copies of the presets are
// the presets package's files.
func TestKubeDeployFiles(t *testing.T) {
	r, err := renderChart(flatRelease, flatNamespace, flatValues)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(manifestHeader), r...)
	for _, path := range []string{manifest, baseManifest} {
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not the chart's render (edit the chart, then run this test with -update):\n%s", path, firstDiff(got, want))
		}
	}

	entries, err := os.ReadDir(filepath.Join(chartDir, "presets"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	slices.Sort(names)
	if !slices.Equal(names, presets.Names()) {
		t.Errorf("chart presets/ holds %v, the presets package %v", names, presets.Names())
	}
	for _, name := range presets.Names() {
		got, err := os.ReadFile(filepath.Join(chartDir, "presets", name+".json"))
		if err != nil {
			t.Error(err)
			continue
		}
		if exp, _ := presets.Get(name); !bytes.Equal(got, exp) {
			t.Errorf("chart presets/%s.json differs from presets/%s.json: cp presets/*.json deploy/helm/flexhook/presets/", name, name)
		}
	}

	// kubectl apply -k of the base gives the manifest's objects.
	k, err := kustomizeBuild(kustomizeBase)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := objectKeys(t, "kustomize base", k), objectKeys(t, manifest, want); !slices.Equal(a, b) {
		t.Errorf("kustomize base builds %v, the manifest holds %v", a, b)
	}
}

// objectKeys returns kind/namespace/name of every object in raw, sorted.
func objectKeys(t *testing.T, name string, raw []byte) []string {
	t.Helper()
	var keys []string
	for _, obj := range decodeObjects(t, name, raw) {
		m, err := meta.Accessor(obj)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fmt.Sprintf("%T/%s/%s", obj, m.GetNamespace(), m.GetName()))
	}
	slices.Sort(keys)
	return keys
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  have %q\n  want %q", i+1, gl, wl)
		}
	}
	return "(equal lines, different bytes)"
}

// TestKubeChartValues: values the schema or the templates refuse fail the
// render with a message that names the value, instead of rendering
// something that breaks on the node.
func TestKubeChartValues(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"ipmasq": false}, "ipmasq"}, // a typo of ipMasq
		{map[string]any{"network": "10.244.0.0"}, "network"},
		{map[string]any{"preset": "udp"}, "preset"},
		{map[string]any{"netConf": map[string]any{"Network": "10.1.0.0/16"}}, "netConf"},
		{map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{map[string]any{"metrics": map[string]any{"port": 0}}, "port"},
		{map[string]any{"migrationNodeLabel": "flexhook.io/migrate=true"}, "migrationNodeLabel"},
	} {
		_, err := renderChart("flexhook", "kube-flexhook", tc.vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %v: error %v, want one naming %s", tc.vals, err, tc.want)
		}
	}
}

// chartCase is one helm install: its values and what they must render.
type chartCase struct {
	release string // also its namespace
	vals    map[string]any
	want    want
}

var chartCases = []chartCase{
	// helm install with the defaults (the namespace made beforehand).
	{release: "flexhook-chart", want: defaults},
	// Every value changed.
	{release: "flexhook-custom", vals: map[string]any{
		"network": "10.60.0.0/16", "preset": "wireguard-prod", "ipMasq": false, "createNamespace": true,
		"image":              map[string]any{"repository": "registry.example.com/net/flexhook", "tag": "v9.9.9", "pullPolicy": "Always"},
		"migrationNodeLabel": "flexhook.io/migrate",
		"tolerations":        []any{map[string]any{"operator": "Exists"}},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "50m", "memory": "32Mi"},
			"limits":   map[string]any{"memory": "256Mi"},
		},
		"metrics": map[string]any{"port": 9101, "scrape": false},
	}, want: want{
		network: "10.60.0.0/16", preset: "wireguard-prod", image: "registry.example.com/net/flexhook:v9.9.9",
		migrationLabel: "flexhook.io/migrate", metricsPort: 9101,
	}},
	// A net-conf.json of the operator's own, as flanneld ran it.
	{release: "flexhook-own", vals: map[string]any{"netConf": ownNetConf, "network": "10.99.0.0/16"}, want: want{
		netconf: ownNetConf, ipMasq: true, image: "flexhook:0.1.0", metricsPort: 8081, scrape: true,
	}},
	{release: "flexhook-hostgw", vals: map[string]any{"preset": "host-gw", "network": "172.20.0.0/14"}, want: want{
		network: "172.20.0.0/14", preset: "host-gw", ipMasq: true, image: "flexhook:0.1.0", metricsPort: 8081, scrape: true,
	}},
}

// ownNetConf is an extension config as an operator writes it for
// flanneld: host-gw style hooks, on a Network of its own.
const ownNetConf = `{
  "Network": "10.70.0.0/16",
  "Backend": {
    "Type": "extension",
    "SubnetAddCommand": "ip route replace $SUBNET via $PUBLIC_IP",
    "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"
  }
}
`

// testChart renders the chart for each case, creates what it renders on
// the server with strict validation, each in a namespace of its own (the
// cluster-scoped objects are named after the release), and checks it.
func testChart(t *testing.T, ctx context.Context, s *kubeSuite) {
	for _, tc := range chartCases {
		t.Run(tc.release, func(t *testing.T) {
			raw, err := renderChart(tc.release, tc.release, tc.vals)
			if err != nil {
				t.Fatal(err)
			}
			d := deploy(t, ctx, s, "chart "+tc.release, raw, tc.release)
			if (d.ns != nil) != (tc.vals["createNamespace"] == true) {
				t.Errorf("Namespace rendered: %v, createNamespace %v", d.ns != nil, tc.vals["createNamespace"])
			}
			checkDeployed(t, ctx, s, d, tc.want)
			ds := d.ds.Spec.Template.Spec
			if tc.release == "flexhook-custom" {
				run := ds.Containers[0]
				if run.ImagePullPolicy != corev1.PullAlways || run.Resources.Limits.Memory().String() != "256Mi" ||
					run.Resources.Requests.Cpu().String() != "50m" {
					t.Errorf("custom values: pullPolicy %s, resources %+v", run.ImagePullPolicy, run.Resources)
				}
				if len(ds.Tolerations) != 1 || ds.Tolerations[0] != (corev1.Toleration{Operator: corev1.TolerationOpExists}) {
					t.Errorf("custom values: tolerations %+v", ds.Tolerations)
				}
			}
		})
	}
}

// testKustomize builds the kustomize base and the example overlay, each
// under a scratch overlay that moves it to a namespace of its own (and
// suffixes the cluster-scoped names), creates the result on the server
// with strict validation, and checks it as the manifest. The migrate
// overlay's DaemonSet is the chart's with migrationNodeLabel set, the
// image aside.
func testKustomize(t *testing.T, ctx context.Context, s *kubeSuite) {
	for _, tc := range []struct {
		dir, ns string
		want    want
	}{
		{kustomizeBase, "flexhook-kustomize", defaults},
		{migrateDir, "flexhook-migrate", func() want {
			w := defaults
			w.image, w.migrationLabel, w.network = "registry.example.com/flexhook:0.1.0", "flexhook.io/migrate", "10.42.0.0/16"
			return w
		}()},
	} {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) {
			raw := kustomizeIn(t, tc.dir, tc.ns)
			d := deploy(t, ctx, s, "kustomize "+tc.dir, raw, tc.ns)
			if d.ns == nil || d.ns.Name != tc.ns || d.sa.Namespace != tc.ns {
				t.Fatalf("kustomize namespace: %v, service account in %s, want %s", d.ns, d.sa.Namespace, tc.ns)
			}
			checkDeployed(t, ctx, s, d, tc.want)
			if tc.dir != migrateDir {
				return
			}
			vals := map[string]any{"migrationNodeLabel": tc.want.migrationLabel, "network": tc.want.network,
				"image": map[string]any{"repository": "registry.example.com/flexhook"}}
			chart, err := renderChart(flatRelease, flatNamespace, vals)
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range decodeObjects(t, "chart", chart) {
				if ds, ok := obj.(*appsv1.DaemonSet); ok {
					// The scratch overlay's suffix aside.
					got := *d.ds.Spec.Template.Spec.DeepCopy()
					got.ServiceAccountName = ds.Spec.Template.Spec.ServiceAccountName
					if v := volume(got, "flexhook-cfg"); v != nil && v.ConfigMap != nil {
						v.ConfigMap.Name = "kube-flexhook-cfg"
					}
					if !equalJSON(t, got, ds.Spec.Template.Spec) {
						t.Errorf("the migrate overlay's pod spec differs from the chart's with migrationNodeLabel=%s", tc.want.migrationLabel)
					}
				}
			}
		})
	}
}

// kustomizeIn builds dir under a scratch overlay that sets namespace and
// a name suffix of its own: dir's objects, moved, as a user's overlay
// would move them.
func kustomizeIn(t *testing.T, dir, namespace string) []byte {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	rel, err := filepath.Rel(scratch, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("namespace: %s\nnameSuffix: -%s\nresources:\n- %s\n", namespace, namespace, rel)
	if err := os.WriteFile(filepath.Join(scratch, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := kustomizeBuild(scratch)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return raw
}

// testMigration: kube-flannel's own manifest (from the flannel module)
// and flexhook's chart with the migration label, on one server: no name
// collides, neither DaemonSet's selector takes the other's pods, and once
// kube-flannel-ds has deploy/migrate/kube-flannel-ds.patch.json the
// DaemonSet controller's own predicate runs exactly one of them on each
// node, flexhook on the labelled ones. Without the patch a labelled node
// would run both.
func testMigration(t *testing.T, ctx context.Context, s *kubeSuite) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/flannel-io/flannel").Output()
	if err != nil {
		t.Fatalf("go list the flannel module: %v", err)
	}
	kf := filepath.Join(strings.TrimSpace(string(out)), "Documentation", "kube-flannel.yml")
	raw, err := os.ReadFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	var flannel *appsv1.DaemonSet
	for _, obj := range decodeObjects(t, kf, raw) {
		if kind, err := create(ctx, s.a.cs, obj); err != nil {
			t.Fatalf("kube-flannel.yml's %s: %v", kind, err)
		}
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			flannel = ds
		}
	}
	release := "flexhook-custom" // testChart's, with migrationNodeLabel
	ours, err := s.a.cs.AppsV1().DaemonSets(release).Get(ctx, "kube-flexhook-ds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]*appsv1.DaemonSet{{flannel, ours}, {ours, flannel}} {
		sel, err := metav1.LabelSelectorAsSelector(pair[0].Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labels.Set(pair[1].Spec.Template.Labels)) {
			t.Errorf("%s's selector %v takes %s's pods", pair[0].Name, sel, pair[1].Name)
		}
	}

	moved := s.a.newNode(t, ctx, "migrate-moved", nil, nil)
	moved.Labels = map[string]string{"kubernetes.io/os": "linux", "flexhook.io/migrate": "true"}
	moved.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}
	if moved, err = s.a.cs.CoreV1().Nodes().Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kept := s.a.newNode(t, ctx, "migrate-kept", nil, nil)
	kept.Labels = map[string]string{"kubernetes.io/os": "linux"}
	if kept, err = s.a.cs.CoreV1().Nodes().Update(ctx, kept, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []string{"migrate-moved", "migrate-kept"} {
			_ = s.a.cs.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	})
	runs := func(n *corev1.Node, ds *appsv1.DaemonSet) bool {
		run, _ := daemon.NodeShouldRunDaemonPod(klog.Background(), n, ds)
		return run
	}
	if !runs(moved, flannel) || !runs(moved, ours) {
		t.Fatalf("before the patch a labelled node should run both (the reason for the patch): flanneld %v flexhook %v", runs(moved, flannel), runs(moved, ours))
	}

	patch, err := os.ReadFile(flannelPatch)
	if err != nil {
		t.Fatal(err)
	}
	flannel, err = s.a.cs.AppsV1().DaemonSets(flannel.Namespace).Patch(ctx, flannel.Name, types.JSONPatchType, patch,
		metav1.PatchOptions{FieldValidation: "Strict"})
	if err != nil {
		t.Fatalf("kubectl patch --type json --patch-file %s: %v", flannelPatch, err)
	}
	for _, tc := range []struct {
		node             *corev1.Node
		flanneld, flexhk bool
	}{
		{moved, false, true},
		{kept, true, false},
	} {
		if f, x := runs(tc.node, flannel), runs(tc.node, ours); f != tc.flanneld || x != tc.flexhk {
			t.Errorf("node %s (labels %v): flanneld runs %v, flexhook %v; want %v, %v", tc.node.Name, tc.node.Labels, f, x, tc.flanneld, tc.flexhk)
		}
	}
	// Rolling back a node is taking its label off.
	kept.Labels["flexhook.io/migrate"] = "false"
	if runs(kept, flannel) != true || runs(kept, ours) != false {
		t.Errorf("a node labelled flexhook.io/migrate=false should stay with flanneld")
	}
}

// equalJSON compares a and b as their JSON (nil and empty alike).
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ja, jb) {
		t.Logf("have %s\nwant %s", ja, jb)
		return false
	}
	return true
}
