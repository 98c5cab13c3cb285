package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/file"
)

// LabStoreFlags choose the store a lab's nodes share (lab, lab verify).
type LabStoreFlags struct {
	Store string `flag:"store" envconfig:"LAB_STORE" default:"file" arg:"file|etcd" usage:"the nodes' lease store: a shared directory, or etcd (Debian's etcd-server) on the hub's underlay address (env FLEXHOOK_LAB_STORE: FLEXHOOK_STORE is run's store directory)"`
}

func (f LabStoreFlags) check() error {
	if f.Store != "file" && f.Store != "etcd" {
		return usageErrorf("--store %q: want file or etcd", f.Store)
	}
	return nil
}

// labStore is the store of a lab's nodes: the arguments that point a
// node at it, where it is, and (open) the store itself as this process
// reaches it.
type labStore struct {
	args  []string // for StartNode, after --preset/--config
	where string   // a directory or an etcd URL
	lab   *netlab.Lab
}

// newLabStore sets up the store f names for lab: the lab's directory, or
// Debian's etcd started in the hub.
func newLabStore(ctx context.Context, f LabStoreFlags, lab *netlab.Lab) (labStore, error) {
	s := labStore{where: lab.StoreDir(), lab: lab}
	if f.Store == "etcd" {
		url, err := lab.StartEtcd(ctx, "etcd")
		if err != nil {
			return labStore{}, err
		}
		s.where, s.args = url, []string{"--etcd-endpoints", url}
	}
	return s, nil
}

// open opens the store from this process, which is outside the lab: etcd
// is dialled from the hub's namespace.
func (s labStore) open(ctx context.Context) (leases.Store, error) {
	if len(s.args) == 0 {
		return file.New(s.where, file.Logger(slog.New(slog.DiscardHandler)))
	}
	st, err := etcd.New(ctx, etcd.Config{Endpoints: []string{s.where}}, etcd.Logger(slog.New(slog.DiscardHandler)),
		etcd.Dialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return s.lab.DialHub(ctx, "tcp", addr)
		}))
	if err != nil {
		return nil, fmt.Errorf("lab store: %w", err)
	}
	return st, nil
}
