package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeconfig writes a kubeconfig file; an empty server leaves the cluster
// out, an empty context leaves current-context out, so that kubectl's
// merge of several files has something to merge.
func kubeconfig(t *testing.T, dir, name, server, context string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\n")
	if server != "" {
		b.WriteString("clusters:\n- name: c\n  cluster:\n    server: " + server + "\n")
		b.WriteString("users:\n- name: u\n  user:\n    token: t\n")
		b.WriteString("contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n")
	}
	if context != "" {
		b.WriteString("current-context: " + context + "\n")
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRESTConfig: --kubeconfig-file, then $KUBECONFIG (a list, merged as
// kubectl merges it), then --kube-api-url, then in-cluster, then
// ~/.kube/config outside a pod; --kube-api-url overrides a kubeconfig's
// server. The test process is not in a pod (no KUBERNETES_SERVICE_HOST),
// so in-cluster is never found here.
func TestRESTConfig(t *testing.T) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		t.Skip("runs in a pod: in-cluster config would win")
	}
	dir := t.TempDir()
	flagFile := kubeconfig(t, dir, "flag", "https://flag.invalid:6443", "x")
	clusters := kubeconfig(t, dir, "clusters", "https://env.invalid:6443", "")
	current := kubeconfig(t, dir, "current", "", "x")
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	kubeconfig(t, filepath.Join(home, ".kube"), "config", "https://home.invalid:6443", "x")
	list := current + string(os.PathListSeparator) + clusters

	for _, tc := range []struct {
		name, apiURL, file, env, home string
		host, source, err             string
	}{
		{name: "flag wins over env", file: flagFile, env: list, home: home, host: "https://flag.invalid:6443", source: "--kubeconfig-file " + flagFile},
		{name: "flag with api url", apiURL: "https://url.invalid", file: flagFile, host: "https://url.invalid", source: "--kubeconfig-file"},
		{name: "env list merged", env: list, home: home, host: "https://env.invalid:6443", source: "$KUBECONFIG " + list},
		{name: "env with api url", apiURL: "https://url.invalid", env: list, host: "https://url.invalid", source: "$KUBECONFIG"},
		{name: "api url alone", apiURL: "https://url.invalid", home: home, host: "https://url.invalid", source: "--kube-api-url"},
		{name: "home outside a pod", home: home, host: "https://home.invalid:6443", source: "~/.kube/config"},
		{name: "nothing", home: t.TempDir(), err: "no --kubeconfig-file, $KUBECONFIG, --kube-api-url or ~/.kube/config"},
		{name: "env file missing", env: filepath.Join(dir, "nope"), err: "$KUBECONFIG " + filepath.Join(dir, "nope")},
		{name: "flag file missing", file: filepath.Join(dir, "nope"), err: "kubeconfig " + filepath.Join(dir, "nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"KUBECONFIG": tc.env, "HOME": tc.home}
			cfg, source, err := RESTConfig(tc.apiURL, tc.file, func(k string) string { return env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host {
				t.Errorf("host = %q, want %q", cfg.Host, tc.host)
			}
			if !strings.HasPrefix(source, tc.source) {
				t.Errorf("source = %q, want it to start with %q", source, tc.source)
			}
		})
	}
}
