package main

import (
	"context"
	"log/slog"
	"strings"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/file"
)

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

// openStore opens the etcd store when --etcd-endpoints is set, else the
// file store in --store.
func openStore(ctx context.Context, s StoreFlags, log *slog.Logger) (leases.Store, error) {
	if s.useEtcd() {
		cfg := s.etcdConfig()
		log.Debug("opening etcd store", "endpoints", cfg.Endpoints, "prefix", cfg.Prefix, "tls", cfg.CAFile != "" || cfg.CertFile != "", "auth", cfg.Username != "")
		st, err := etcd.New(ctx, cfg, etcd.WithLogger(log))
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	log.Debug("opening file store", "dir", s.Store)
	opts := []file.Option{file.WithLogger(log)}
	if s.StoreResync > 0 {
		opts = append(opts, file.WithResync(s.StoreResync))
	}
	st, err := file.New(s.Store, opts...)
	if err != nil {
		return nil, err
	}
	return st, nil
}
