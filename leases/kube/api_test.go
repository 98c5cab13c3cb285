package kube

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/flexhook/flexhook/leases"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// apiServer is the part of a kube-apiserver's core/v1 API the store calls,
// over HTTP: it proves what restAPI sends (paths, the status subresource,
// the patch type) and that the API server's errors come back as
// apierrors. Patches are applied as the API server applies them.
type apiServer struct {
	*httptest.Server
	mu    sync.Mutex
	nodes map[string]*corev1.Node
	pods  map[string]*corev1.Pod // by namespace/name
	log   []string               // "METHOD path?query [content type]"
	agent string                 // the User-Agent of the last request
	fail  map[string]int         // "METHOD path" -> the status to answer
}

func newAPIServer(t *testing.T, nodes ...*corev1.Node) *apiServer {
	t.Helper()
	a := &apiServer{nodes: map[string]*corev1.Node{}, pods: map[string]*corev1.Pod{}, fail: map[string]int{}}
	for _, n := range nodes {
		a.nodes[n.Name] = n.DeepCopy()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := a.nodes[r.PathValue("name")]
		if !ok {
			a.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("nodes %q not found", r.PathValue("name")))
			return
		}
		a.write(w, n)
	})
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			w.Header().Set("Content-Type", "application/json")
			for _, name := range a.names() {
				_ = json.NewEncoder(w).Encode(map[string]any{"type": watch.Added, "object": typed(a.nodes[name])})
			}
			return
		}
		l := &corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}}
		for _, name := range a.names() {
			l.Items = append(l.Items, *a.nodes[name])
		}
		a.write(w, l)
	})
	mux.HandleFunc("PATCH /api/v1/nodes/{name}/status", func(w http.ResponseWriter, r *http.Request) {
		n, ok := a.nodes[r.PathValue("name")]
		if !ok {
			a.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "not found")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/strategic-merge-patch+json" {
			a.status(w, http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, ct)
			return
		}
		out, err := patchNode(n, r.Body)
		if err != nil {
			a.status(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, err.Error())
			return
		}
		out.Spec = n.Spec // the status subresource does not change the spec
		a.nodes[n.Name] = out
		a.write(w, out)
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.pods[r.PathValue("ns")+"/"+r.PathValue("name")]
		if !ok {
			a.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "not found")
			return
		}
		a.write(w, p)
	})
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		req := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			req += "?" + r.URL.RawQuery
		}
		if ct := r.Header.Get("Content-Type"); r.Method != http.MethodGet && ct != "" {
			req += " " + ct
		}
		a.log = append(a.log, req)
		a.agent = r.UserAgent()
		if code, ok := a.fail[r.Method+" "+r.URL.Path]; ok {
			a.status(w, code, "", "injected")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

// patchNode applies a strategic merge patch to n, as the API server does.
func patchNode(n *corev1.Node, body io.Reader) (*corev1.Node, error) {
	patch, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	old, err := json.Marshal(n)
	if err != nil {
		return nil, err
	}
	patched, err := strategicpatch.StrategicMergePatch(old, patch, corev1.Node{})
	if err != nil {
		return nil, err
	}
	out := &corev1.Node{}
	return out, json.Unmarshal(patched, out)
}

func (a *apiServer) names() []string {
	var out []string
	for name := range a.nodes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// typed sets the Kind a real API server answers with.
func typed(n *corev1.Node) *corev1.Node {
	n = n.DeepCopy()
	n.TypeMeta = metav1.TypeMeta{Kind: "Node", APIVersion: "v1"}
	return n
}

func (a *apiServer) write(w http.ResponseWriter, obj any) {
	switch o := obj.(type) {
	case *corev1.Node:
		obj = typed(o)
	case *corev1.Pod:
		o = o.DeepCopy()
		o.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
		obj = o
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(obj)
}

// status answers as the API server does with an error: a Status.
func (a *apiServer) status(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg,
	})
}

// node returns the server's Node (a copy).
func (a *apiServer) newNode(name string) *corev1.Node {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodes[name].DeepCopy()
}

// requests returns the requests since the last call.
func (a *apiServer) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.log
	a.log = nil
	return out
}

// userAgent is the User-Agent of the last request.
func (a *apiServer) userAgent() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agent
}

func (a *apiServer) failWith(req string, code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[req] = code
}

func (a *apiServer) api(t *testing.T) API {
	t.Helper()
	api, _, err := Client(a.URL, "", "flexhook-test/1")
	require.NoError(t, err)
	return api
}

const smpType = "application/strategic-merge-patch+json"

// The store's calls over HTTP: what restAPI sends for each, and what the
// Node looks like after the API server applied it.
func TestRESTStore(t *testing.T) {
	a := newAPIServer(t,
		newNode("n1", []string{"10.50.1.0/24", "fd50:0:0:1::/64"}, map[string]string{
			"other.example.com/x": "y", p + "node-public-ip": "192.0.2.1", p + "node-public-ipv6": "2001:db8::1",
		}),
		newNode("n2", []string{"10.50.2.0/24", "fd50:0:0:2::/64"}, map[string]string{
			p + "kube-subnet-manager": "true", p + "backend-type": leases.BackendType, p + "backend-data": `"aa:aa:aa:aa:aa:02"`,
			p + "public-ip": "192.0.2.2", p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::2", p + "node-public-ip": "192.0.2.2",
		}))
	st, err := New(testCtx(t), Config{Client: a.api(t), NodeName: "n1", DualStack: true, PreStartup: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	v4, v6, err := st.NodePublicIP(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, "192.0.2.1 2001:db8::1", v4.String()+" "+v6.String())
	assert.Equal(t, []string{"GET /api/v1/nodes/n1"}, a.requests())
	assert.Equal(t, "flexhook-test/1", a.userAgent())

	own := attrs(v4.String(), mac)
	own.PublicIPv6 = v6
	l, err := st.Acquire(testCtx(t), dualRange, own)
	require.NoError(t, err)
	assert.Equal(t, "10.50.1.0-24&fd50:0:0:1::-64", l.Key)
	assert.Equal(t, netip.MustParsePrefix("fd50:0:0:1::/64"), l.IPv6Subnet)
	assert.Equal(t, []string{"GET /api/v1/nodes/n1", "PATCH /api/v1/nodes/n1/status " + smpType}, a.requests())
	n1 := a.newNode("n1")
	assert.Equal(t, map[string]string{
		"other.example.com/x": "y", p + "node-public-ip": "192.0.2.1", p + "node-public-ipv6": "2001:db8::1",
		p + "kube-subnet-manager": "true", p + "backend-type": leases.BackendType, p + "backend-data": `"` + mac + `"`,
		p + "public-ip": "192.0.2.1", p + "backend-v6-data": "null", p + "public-ipv6": "2001:db8::1",
	}, n1.Annotations)

	// Nothing changed: Renew only reads.
	got, err := st.Renew(testCtx(t), l)
	require.NoError(t, err)
	assert.Equal(t, l, got)
	assert.Equal(t, []string{"GET /api/v1/nodes/n1"}, a.requests())

	ls, err := st.List(testCtx(t))
	require.NoError(t, err)
	require.Len(t, ls, 2)
	assert.Equal(t, l.Key, ls[0].Key)
	assert.Equal(t, own, ls[0].Attrs)
	assert.Equal(t, "10.50.2.0-24&fd50:0:0:2::-64", ls[1].Key)
	assert.Equal(t, "aa:aa:aa:aa:aa:02", ls[1].Attrs.BackendData)
	assert.Equal(t, []string{"GET /api/v1/nodes"}, a.requests())

	require.NoError(t, st.Remove(testCtx(t), netip.MustParsePrefix("10.50.2.0/24")))
	assert.Equal(t, []string{"GET /api/v1/nodes", "PATCH /api/v1/nodes/n2/status " + smpType}, a.requests())
	assert.Equal(t, map[string]string{p + "node-public-ip": "192.0.2.2"}, a.newNode("n2").Annotations)
	assert.Equal(t, n1, a.newNode("n1"), "Remove of another node's lease leaves ours")

	require.NoError(t, st.SetNetworkAvailable(testCtx(t)))
	assert.Equal(t, []string{"PATCH /api/v1/nodes/n1/status " + smpType}, a.requests())
	conds := a.newNode("n1").Status.Conditions
	require.Len(t, conds, 1)
	assert.Equal(t, corev1.NodeNetworkUnavailable, conds[0].Type)
	assert.Equal(t, corev1.ConditionFalse, conds[0].Status)
	assert.Equal(t, "FlannelIsUp", conds[0].Reason)
}

// The API server's errors come back through restAPI as apierrors, so
// that Renew tells a deleted Node (the lease is gone) from an API server
// that failed (try again).
func TestRESTErrors(t *testing.T) {
	a := newAPIServer(t, newNode("n1", []string{"10.50.1.0/24"}, nil))
	st, err := New(testCtx(t), Config{Client: a.api(t), NodeName: "n1"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	a.failWith("PATCH /api/v1/nodes/n1/status", http.StatusConflict)
	_, err = st.Acquire(testCtx(t), v4Range, attrs("192.0.2.1", mac))
	require.ErrorContains(t, err, `patch node "n1" annotations`)
	assert.True(t, apierrors.IsConflict(err), "%v", err)
	assert.Empty(t, ours(a.newNode("n1")))

	l := leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), Key: "10.50.1.0-24", Attrs: attrs("192.0.2.1", mac)}
	a.failWith("GET /api/v1/nodes/n1", http.StatusInternalServerError)
	_, err = st.Renew(testCtx(t), l)
	require.ErrorContains(t, err, `get node "n1"`)
	assert.True(t, apierrors.IsInternalError(err), "%v", err)
	assert.NotErrorIs(t, err, leases.ErrLeaseGone)

	a.failWith("GET /api/v1/nodes/n1", http.StatusNotFound)
	_, err = st.Renew(testCtx(t), l)
	require.ErrorIs(t, err, leases.ErrLeaseGone)
	assert.ErrorContains(t, err, `node "n1" was deleted`)

	a.failWith("GET /api/v1/nodes", http.StatusForbidden)
	_, err = st.List(testCtx(t))
	require.ErrorContains(t, err, "list nodes")
	assert.True(t, apierrors.IsForbidden(err), "%v", err)
}

// ListNodes and WatchNodes pass their options as query parameters, and
// WatchNodes asks for a watch and decodes its events.
func TestRESTListWatch(t *testing.T) {
	a := newAPIServer(t, newNode("n1", []string{"10.50.1.0/24"}, nil))
	api := a.api(t)
	l, err := api.ListNodes(testCtx(t), metav1.ListOptions{LabelSelector: "kubernetes.io/os=linux", ResourceVersion: "7"})
	require.NoError(t, err)
	require.Len(t, l.Items, 1)
	assert.Equal(t, "n1", l.Items[0].Name)
	assert.Equal(t, []string{"GET /api/v1/nodes?labelSelector=kubernetes.io%2Fos%3Dlinux&resourceVersion=7"}, a.requests())

	w, err := api.WatchNodes(testCtx(t), metav1.ListOptions{ResourceVersion: "7"})
	require.NoError(t, err)
	defer w.Stop()
	select {
	case ev, ok := <-w.ResultChan():
		require.True(t, ok, "the watch ended without an event")
		assert.Equal(t, watch.Added, ev.Type)
		n, ok := ev.Object.(*corev1.Node)
		require.True(t, ok, "%T", ev.Object)
		assert.Equal(t, []string{"10.50.1.0/24"}, n.Spec.PodCIDRs)
	case <-testCtx(t).Done():
		t.Fatal("no watch event")
	}
	assert.Equal(t, []string{"GET /api/v1/nodes?resourceVersion=7&watch=true"}, a.requests())
}

func TestRESTNodeName(t *testing.T) {
	a := newAPIServer(t)
	a.pods["kube-flannel/flexhook-abcde"] = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-flannel", Name: "flexhook-abcde"}, Spec: corev1.PodSpec{NodeName: "n7"},
	}
	env := map[string]string{"POD_NAME": "flexhook-abcde", "POD_NAMESPACE": "kube-flannel"}
	name, err := NodeName(testCtx(t), a.api(t), func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, "n7", name)
	assert.Equal(t, []string{"GET /api/v1/namespaces/kube-flannel/pods/flexhook-abcde"}, a.requests())
}

// Client builds the API from --kube-api-url, --kubeconfig-file or the
// pod's service account, as flanneld does.
func TestClient(t *testing.T) {
	a := newAPIServer(t, newNode("n1", []string{"10.50.1.0/24"}, nil))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+a.URL+`"}}]
users: [{name: u, user: {token: secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	// Not in a pod: no service account.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	for _, tc := range []struct {
		name, url, kubeconfig string
		want                  string // "": works; else a part of the error
	}{
		{"--kube-api-url", a.URL, "", ""},
		{"--kubeconfig-file", "", kubeconfig, ""},
		{"--kube-api-url overrides the kubeconfig's server", a.URL, kubeconfig, ""},
		{"in cluster, but not in a pod", "", "", "no API server: not in a pod"},
		{"no such kubeconfig", "", filepath.Join(t.TempDir(), "missing"), "missing: stat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, _, err := Client(tc.url, tc.kubeconfig, "flexhook-test/2")
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				if tc.kubeconfig == "" {
					assert.ErrorIs(t, err, rest.ErrNotInCluster)
				}
				return
			}
			require.NoError(t, err)
			n, err := api.GetNode(testCtx(t), "n1")
			require.NoError(t, err)
			assert.Equal(t, "n1", n.Name)
			assert.Equal(t, "flexhook-test/2", a.userAgent())
		})
	}

	// NewAPI without a user agent sends client-go's.
	api, err := NewAPI(&rest.Config{Host: a.URL})
	require.NoError(t, err)
	_, err = api.GetNode(testCtx(t), "n1")
	require.NoError(t, err)
	assert.Equal(t, rest.DefaultKubernetesUserAgent(), a.userAgent())

	_, err = NewAPI(&rest.Config{Host: "http://[::1"})
	assert.ErrorContains(t, err, "kube client:")
}
