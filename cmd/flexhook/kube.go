package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/kube"
	"k8s.io/klog/v2"
)

// kubeMode is what the kube store takes from the command and the config.
type kubeMode struct {
	// dualStack (EnableIPv6) reads and publishes the IPv6 halves of leases.
	dualStack bool
	// preStartup: a PreStartupCommand runs, so empty BackendData is
	// published as "" (a JSON string), as flanneld's extension backend does.
	preStartup bool
	// needNode: the command acquires a lease (run), so the node's name
	// is needed; leases list and remove do without.
	needNode bool
}

// runKubeMode is run's kubeMode for cfg (nil: not known yet).
func runKubeMode(cfg *hooks.Config) kubeMode {
	if cfg == nil {
		return kubeMode{needNode: true}
	}
	return kubeMode{dualStack: cfg.EnableIPv6, preStartup: !cfg.Backend.Hook(hooks.PreStartup).Empty(), needNode: true}
}

// openKube opens the kube store: the client from --kubeconfig-file,
// $KUBECONFIG, --kube-api-url, in-cluster or ~/.kube/config (the first
// that applies: kube.RESTConfig), this node's name from
// NODE_NAME or the pod (retried while the API server does not answer,
// as etcd is at start), the annotation prefix, as km says. A kubeconfig
// that cannot be read is a usage error.
func openKube(ctx context.Context, s StoreFlags, km kubeMode, log *slog.Logger) (*kube.Store, error) {
	// client-go logs through klog: into our log, in our format.
	klog.SetSlogLogger(log.With("from", "client-go"))
	cs, source, err := kube.Client(s.KubeAPIURL, s.KubeconfigFile, "flexhook/"+versionString())
	if err != nil {
		return nil, usageErrorf("--kube-subnet-mgr: %v", err)
	}
	log.Info("kubernetes API", "from", source)
	if _, err := kube.NewAnnotations(s.KubeAnnotationPrefix); err != nil {
		return nil, usageErrorf("--kube-annotation-prefix: %v", err)
	}
	name := s.NodeName
	if name == "" && km.needNode {
		if name, err = nodeName(ctx, cs, log); err != nil {
			return nil, err
		}
	}
	log.Debug("opening kube store", "node", name, "prefix", s.KubeAnnotationPrefix, "dual_stack", km.dualStack)
	return kube.New(ctx, kube.Config{
		Client: cs, NodeName: name, Prefix: s.KubeAnnotationPrefix,
		DualStack: km.dualStack, PreStartup: km.preStartup,
	}, kube.Logger(log))
}

// nodeName finds the node's name from NODE_NAME or the pod, retrying
// while the API server does not answer. An environment that names no
// node is a usage error.
func nodeName(ctx context.Context, cs kube.API, log *slog.Logger) (string, error) {
	var name string
	err := retry.Do(ctx, retry.Backoff{Initial: connectMinBackoff, Max: connectMaxBackoff}, func(ctx context.Context) error {
		nctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var err error
		name, err = kube.NodeName(nctx, cs, os.Getenv)
		if errors.Is(err, kube.ErrNoNodeName) {
			return retry.Permanent(usageErrorf("--kube-subnet-mgr: %v", err))
		}
		return err
	}, func(attempt int, err error, wait time.Duration) {
		log.Error("kube API server not reachable; retrying", "error", err, "attempt", attempt, "retry_in", wait)
	})
	return name, err
}

// kubeNode applies this node's node-public-ip and node-public-ipv6
// annotations, which flanneld takes over --public-ip and --public-ipv6:
// with either, the node is resolved again; otherwise n stands.
func kubeNode(ctx context.Context, st leases.NodeAnnouncer, f runFlags, n node, log *slog.Logger) (node, error) {
	nctx, cancel := context.WithTimeout(ctx, f.StoreTimeout)
	defer cancel()
	v4, v6, err := st.NodePublicIP(nctx)
	if err != nil {
		log.Warn("cannot read this node's node-public-ip annotations; keeping the public IP found locally", "error", err)
		return n, nil
	}
	if !v4.IsValid() && !v6.IsValid() {
		return n, nil
	}
	if v4.IsValid() {
		log.Info("public IP from the node-public-ip annotation", "public_ip", v4)
		f.PublicIP = v4.String()
	}
	if v6.IsValid() {
		log.Info("public IPv6 from the node-public-ipv6 annotation", "public_ipv6", v6)
		f.PublicIPv6 = v6.String()
	}
	return resolveNode(f, log)
}
