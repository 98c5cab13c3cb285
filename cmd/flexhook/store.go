package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/file"
)

// Backoff between run's attempts to reach etcd at start. Each attempt
// itself waits up to etcd.DefaultDialTimeout.
const (
	connectMinBackoff = 500 * time.Millisecond
	connectMaxBackoff = 15 * time.Second
)

// openKubeStore is openKube as a leases.Store (never a nil *kube.Store
// in a non-nil interface).
func openKubeStore(ctx context.Context, s StoreFlags, km kubeMode, log *slog.Logger) (leases.Store, error) {
	st, err := openKube(ctx, s, km, log)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// storeKind names the store for metrics labels: file, etcd or kube.
func (s StoreFlags) storeKind() string {
	switch {
	case s.KubeSubnetMgr:
		return "kube"
	case s.useEtcd():
		return "etcd"
	}
	return "file"
}

// useEtcd reports whether the flags select etcd over the file store.
func (s StoreFlags) useEtcd() bool { return strings.TrimSpace(s.EtcdEndpoints) != "" }

func (s StoreFlags) etcdConfig() etcd.Config {
	var eps []string
	for _, e := range strings.Split(s.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return etcd.Config{
		Endpoints: eps,
		Prefix:    s.EtcdPrefix,
		CAFile:    s.EtcdCAFile,
		CertFile:  s.EtcdCertFile,
		KeyFile:   s.EtcdKeyFile,
		Username:  s.EtcdUsername,
		Password:  string(s.EtcdPassword),
	}
}

// checkEtcd rejects etcd flags that can never work, before any connection
// is tried: these are usage errors (exit 2), not something to retry.
func (s StoreFlags) checkEtcd() error {
	cfg := s.etcdConfig()
	switch {
	case (cfg.Username == "") != (cfg.Password == ""):
		return usageErrorf("--etcd-username and --etcd-password (or FLEXHOOK_ETCD_PASSWORD): give both or neither")
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return usageErrorf("--etcd-certfile and --etcd-keyfile: give both or neither")
	}
	tls := false
	for _, f := range []struct{ flag, path string }{
		{"--etcd-cafile", cfg.CAFile}, {"--etcd-certfile", cfg.CertFile}, {"--etcd-keyfile", cfg.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		tls = true
		fh, err := os.Open(f.path)
		if err != nil {
			return usageErrorf("%s: %v", f.flag, err)
		}
		fh.Close()
	}
	if tls {
		for _, ep := range cfg.Endpoints {
			if strings.HasPrefix(ep, "http://") {
				return usageErrorf("--etcd-endpoints: %q is plain http but TLS files are given (use https://)", ep)
			}
		}
	}
	return nil
}

// openStore opens the etcd store when --etcd-endpoints is set, else the
// file store in --store. It tries once: commands an operator runs by hand
// (leases) fail fast when etcd cannot be reached.
func openStore(ctx context.Context, s StoreFlags, km kubeMode, log *slog.Logger) (leases.Store, error) {
	if s.KubeSubnetMgr {
		return openKubeStore(ctx, s, km, log)
	}
	if s.useEtcd() {
		if err := s.checkEtcd(); err != nil {
			return nil, err
		}
		return openEtcd(ctx, s, log)
	}
	log.Debug("opening file store", "dir", s.Store)
	opts := []file.Option{file.Logger(log)}
	if s.StoreResync > 0 {
		opts = append(opts, file.Resync(s.StoreResync))
	}
	if s.LeaseTTL > 0 {
		opts = append(opts, file.TTL(s.LeaseTTL))
	}
	st, err := file.New(s.Store, opts...)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func openEtcd(ctx context.Context, s StoreFlags, log *slog.Logger) (leases.Store, error) {
	cfg := s.etcdConfig()
	log.Debug("opening etcd store", "endpoints", cfg.Endpoints, "prefix", cfg.Prefix, "tls", cfg.CAFile != "" || cfg.CertFile != "", "auth", cfg.Username != "")
	opts := []etcd.Option{etcd.Logger(log)}
	if s.LeaseTTL > 0 {
		opts = append(opts, etcd.TTL(s.LeaseTTL))
	}
	st, err := etcd.New(ctx, cfg, opts...)
	if err != nil { // not a nil *etcd.Store in a non-nil interface
		return nil, err
	}
	return st, nil
}

// openStoreRetry is openStore for the daemon. A node may boot before etcd
// is up (or reachable), so an etcd that does not answer is tried again
// with capped exponential backoff, each failure logged with its cause,
// until it answers or ctx is done; then the error wraps ctx's error.
// Flags that can never work still fail at once.
func openStoreRetry(ctx context.Context, s StoreFlags, km kubeMode, log *slog.Logger) (leases.Store, error) {
	if !s.useEtcd() || s.KubeSubnetMgr {
		return openStore(ctx, s, km, log)
	}
	if err := s.checkEtcd(); err != nil {
		return nil, err
	}
	var st leases.Store
	attempts := 0
	err := retry.Do(ctx, retry.Backoff{Initial: connectMinBackoff, Max: connectMaxBackoff}, func(ctx context.Context) error {
		attempts++
		var err error
		st, err = openEtcd(ctx, s, log)
		return err
	}, func(attempt int, err error, wait time.Duration) {
		log.Error("etcd not reachable; retrying", "error", err, "attempt", attempt, "retry_in", wait)
	})
	if err != nil {
		return nil, fmt.Errorf("etcd not reachable after %d attempts: %w", attempts, err)
	}
	if attempts > 1 {
		log.Info("etcd reachable", "endpoints", s.EtcdEndpoints, "attempts", attempts)
	}
	return st, nil
}
