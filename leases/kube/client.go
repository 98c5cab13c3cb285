package kube

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client returns the API (all the store needs) as flanneld makes one: from apiURL
// (--kube-api-url) and kubeconfig (--kubeconfig-file), or the pod's
// in-cluster service account when both are empty.
func Client(apiURL, kubeconfig, userAgent string) (API, error) {
	var cfg *rest.Config
	var err error
	if apiURL == "" && kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (no --kube-api-url or --kubeconfig-file given): %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags(apiURL, kubeconfig); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = userAgent
	return NewAPI(cfg)
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
