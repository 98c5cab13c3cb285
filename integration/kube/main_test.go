//go:build integration

// Package kube tests flexhook's kube subnet manager (leases/kube and `flexhook
// run --kube-subnet-mgr`) against a real kube-apiserver, started in this
// process from k8s.io/kubernetes over an embedded etcd, and against
// flanneld's own kube subnet manager (github.com/flannel-io/flannel): the
// lease store's calls, byte-equality of the annotations with flanneld's, the
// RBAC and manifest of deploy/kube-flexhook.yml, the Helm chart and the
// kustomize base it is rendered from (helm's and kustomize's Go libraries,
// every object created with strict validation), a flanneld -> flexhook
// migration beside kube-flannel's own manifest, and a netns lab of three
// nodes running the vxlan preset as the manifest's service account.
//
// It is a module of its own so that the main go.mod does not carry
// k8s.io/kubernetes. Root only (the lab); with CI=true a skip is a failure.
package kubeit

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

func TestMain(m *testing.M) {
	netlab.HandleReexec()
	os.Exit(m.Run())
}

// apiServer is a running kube-apiserver with RBAC on.
type apiServer struct {
	admin *rest.Config         // system:masters, over loopback
	cs    kubernetes.Interface // admin's clientset
	dir   string               // files that outlive a subtest
}

// startAPIServer starts etcd and a kube-apiserver for the test, with
// authorization by RBAC (the server's default, AlwaysAllow, would make
// the RBAC test meaningless).
func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	etcd := etcdtest.Start(t)
	sc := storagebackend.NewDefaultConfig("/registry", nil)
	sc.Transport.ServerList = etcd.Endpoints
	opts := apiservertesting.NewDefaultTestServerOptions()
	srv, err := apiservertesting.StartTestServer(t, opts, []string{"--authorization-mode=RBAC"}, sc)
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(srv.TearDownFn)
	cs, err := kubernetes.NewForConfig(srv.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	return &apiServer{admin: srv.ClientConfig, cs: cs, dir: t.TempDir()}
}

// token returns a token of the service account ns/name, as a kubelet
// would mount it into the DaemonSet's pods.
func (a *apiServer) token(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	tr, err := a.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

// as returns a client config with the service account's token instead of
// the admin's identity, over server (default: the loopback address).
func (a *apiServer) as(token string) *rest.Config {
	c := rest.CopyConfig(a.admin)
	c.BearerToken = token
	c.BearerTokenFile = ""
	return c
}

// kubeconfig writes a kubeconfig named name for server with token,
// trusting the server's loopback certificate (valid for its loopback
// server name).
func (a *apiServer) kubeconfig(t *testing.T, name, server, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: a.admin.TLSClientConfig.CAData,
		TLSServerName:            a.admin.TLSClientConfig.ServerName,
	}
	cfg.AuthInfos["flexhook"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "flexhook"}
	cfg.CurrentContext = "lab"
	path := filepath.Join(a.dir, name)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// proxy forwards the connections ln accepts to the API server's loopback
// address until ln is closed (the lab's nodes reach the server on the
// underlay through it).
func (a *apiServer) proxy(t *testing.T, ln net.Listener) {
	t.Helper()
	u, err := url.Parse(a.admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var d net.Dialer
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s, err := d.DialContext(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer s.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(s, c)
					if tc, ok := s.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
					close(done)
				}()
				_, _ = io.Copy(c, s)
				<-done
			}()
		}
	}()
}

// newNode creates a Node named name with podCIDRs and annotations.
func (a *apiServer) newNode(t *testing.T, ctx context.Context, name string, cidrs []string, ann map[string]string) *corev1.Node {
	t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec:       corev1.NodeSpec{PodCIDRs: cidrs},
	}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	n, err := a.cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	return n
}
