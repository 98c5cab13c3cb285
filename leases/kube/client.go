package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Client returns the API (all the store needs) for the config RESTConfig
// finds with the environment's $KUBECONFIG and $HOME, and where it found
// it (RESTConfig's source).
func Client(apiURL, kubeconfig, userAgent string) (API, string, error) {
	cfg, source, err := RESTConfig(apiURL, kubeconfig, os.Getenv)
	if err != nil {
		return nil, "", err
	}
	cfg.UserAgent = userAgent
	api, err := NewAPI(cfg)
	return api, source, err
}

// RESTConfig finds the API server as flanneld does, and as kubectl does
// where flanneld has no answer; the first that applies wins:
//
//  1. kubeconfig (--kubeconfig-file), with apiURL (--kube-api-url) as its
//     server when given: flanneld's;
//  2. $KUBECONFIG, a list of files merged as kubectl merges them, with
//     apiURL as the server when given;
//  3. apiURL alone (no credentials): flanneld's;
//  4. the pod's in-cluster service account: flanneld's default;
//  5. outside a pod, $HOME/.kube/config when it exists: kubectl's.
//
// source says which, for the log: "--kubeconfig-file FILE",
// "$KUBECONFIG FILES", "--kube-api-url URL", "in-cluster" or
// "~/.kube/config". getenv reads the environment.
func RESTConfig(apiURL, kubeconfig string, getenv func(string) string) (cfg *rest.Config, source string, err error) {
	switch env := getenv("KUBECONFIG"); {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags(apiURL, kubeconfig)
		if err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, "--kubeconfig-file " + kubeconfig, nil
	case env != "":
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(env)}
		over := &clientcmd.ConfigOverrides{}
		if apiURL != "" {
			over.ClusterInfo = clientcmdapi.Cluster{Server: apiURL}
		}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over).ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("$KUBECONFIG %s: %w", env, err)
		}
		return cfg, "$KUBECONFIG " + env, nil
	case apiURL != "":
		cfg, err = clientcmd.BuildConfigFromFlags(apiURL, "")
		if err != nil {
			return nil, "", fmt.Errorf("--kube-api-url %s: %w", apiURL, err)
		}
		return cfg, "--kube-api-url " + apiURL, nil
	}
	cfg, err = rest.InClusterConfig()
	if err == nil {
		return cfg, "in-cluster", nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, "", fmt.Errorf("in-cluster config: %w", err)
	}
	if home := getenv("HOME"); home != "" {
		path := filepath.Join(home, ".kube", "config")
		if _, serr := os.Stat(path); serr == nil {
			cfg, err = clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
			}
			return cfg, "~/.kube/config", nil
		}
	}
	return nil, "", fmt.Errorf("no API server: not in a pod (%w), and no --kubeconfig-file, $KUBECONFIG, --kube-api-url or ~/.kube/config", err)
}

// ErrNoNodeName is NodeName's error when the environment names no node
// (no NODE_NAME, and not both POD_NAME and POD_NAMESPACE): asking the API
// server again cannot help.
var ErrNoNodeName = errors.New("no node name: give --node-name, or set NODE_NAME, or POD_NAME and POD_NAMESPACE")

// NodeName finds this node's name as flanneld does: NODE_NAME, else the
// spec.nodeName of the pod POD_NAMESPACE/POD_NAME (the downward API of
// the DaemonSet). getenv reads the environment.
func NodeName(ctx context.Context, cs API, getenv func(string) string) (string, error) {
	if n := getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	pod, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if pod == "" || ns == "" {
		return "", ErrNoNodeName
	}
	p, err := cs.GetPod(ctx, ns, pod)
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s for its node name: %w", ns, pod, err)
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s/%s has no spec.nodeName", ns, pod)
	}
	return p.Spec.NodeName, nil
}
