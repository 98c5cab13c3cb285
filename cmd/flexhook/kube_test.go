package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A kubeconfig that is never dialled: each case fails before any call.
const idleKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
users:
- name: u
  user:
    token: x
contexts:
- name: c
  context:
    cluster: c
    user: u
current-context: c
`

// TestKubeUsageErrors: kube flags that cannot work exit 2 before any call
// to an API server, naming the flag or file.
func TestKubeUsageErrors(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(idleKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"NODE_NAME", "POD_NAME", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST"} {
		t.Setenv(env, "")
	}
	run := []string{"run", "--kube-subnet-mgr", "--public-ip", "192.0.2.1"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no net-conf.json", append(run, "--kubeconfig-file", kc, "--net-config-path", "/nonexistent/net-conf.json"), "/nonexistent/net-conf.json"},
		{"kubeconfig missing", append(run, "--preset", "vxlan", "--kubeconfig-file", "/nonexistent/kubeconfig"), "--kube-subnet-mgr: kubeconfig"},
		{"not in a pod", append(run, "--preset", "vxlan"), "in-cluster config"},
		{"bad prefix", append(run, "--preset", "vxlan", "--kubeconfig-file", kc, "--kube-annotation-prefix", "org"), "--kube-annotation-prefix"},
		{"no node name", append(run, "--preset", "vxlan", "--kubeconfig-file", kc), "--node-name"},
		{"leases bad prefix", []string{"leases", "list", "--kube-subnet-mgr", "--kubeconfig-file", kc, "--kube-annotation-prefix", "a/b/c"}, "at most one slash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, out, errOut := cli(t, tc.args...)
			assert.Equal(t, 2, code, "stdout=%q stderr=%q", out, errOut)
			assert.Contains(t, errOut, tc.want)
		})
	}
}
