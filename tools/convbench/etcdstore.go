package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/flexhook/flexhook/leases"
)

// etcdTxnOps is how many puts go into one transaction: etcd's default
// --max-txn-ops.
const etcdTxnOps = 128

// etcdStore is an embedded etcd on loopback holding leases in flannel's
// format (/coreos.com/network/subnets/<key>, attributes as JSON), all
// under one etcd lease of a day.
type etcdStore struct {
	e        *embed.Etcd
	cli      *clientv3.Client
	grant    clientv3.LeaseID
	endpoint string
}

func openEtcdStore(ctx context.Context, dir string) (*etcdStore, error) {
	e, endpoint, err := startEtcd(dir)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		e.Close()
		return nil, err
	}
	s := &etcdStore{e: e, cli: cli, endpoint: endpoint}
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	grant, err := cli.Grant(gctx, 24*3600)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("etcd lease grant: %w", err)
	}
	s.grant = grant.ID
	return s, nil
}

func (s *etcdStore) close() {
	s.cli.Close()
	s.e.Close()
}

func (s *etcdStore) op(l leases.Lease) (clientv3.Op, error) {
	v, err := leases.MarshalAttrs(l.Attrs)
	if err != nil {
		return clientv3.Op{}, err
	}
	key := "/coreos.com/network/subnets/" + leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	return clientv3.OpPut(key, string(v), clientv3.WithLease(s.grant)), nil
}

// put writes one lease, calling before (if set) just before the Put.
func (s *etcdStore) put(ctx context.Context, l leases.Lease, before func()) error {
	op, err := s.op(l)
	if err != nil {
		return err
	}
	if before != nil {
		before()
	}
	_, err = s.cli.Do(ctx, op)
	return err
}

// putAll writes ls in transactions of etcdTxnOps puts, four at a time.
func (s *etcdStore) putAll(ctx context.Context, ls []leases.Lease) error {
	ops := make([]clientv3.Op, len(ls))
	for i, l := range ls {
		var err error
		if ops[i], err = s.op(l); err != nil {
			return err
		}
	}
	batches := make(chan []clientv3.Op)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range 4 {
		wg.Go(func() {
			for b := range batches {
				tctx, cancel := context.WithTimeout(ctx, time.Minute)
				_, err := s.cli.Txn(tctx).Then(b...).Commit()
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("etcd txn: %w", err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for len(ops) > 0 {
		n := min(len(ops), etcdTxnOps)
		batches <- ops[:n]
		ops = ops[n:]
	}
	close(batches)
	wg.Wait()
	return firstErr
}
