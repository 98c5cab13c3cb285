package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
)

func TestRestartKeepsData(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", "v")
	require.NoError(t, err)

	srv.Stop()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.Get(short, "k")
	cancelShort()
	require.Error(t, err, "a stopped server must not answer")

	srv.Restart()
	resp, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value))
}

func TestTLS(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.TLS())
	require.Contains(t, srv.Endpoints[0], "https://")
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", "v")
	require.NoError(t, err)
}

func TestCutAndHeal(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Proxy())
	require.NotEqual(t, srv.Endpoints, srv.DirectEndpoints)
	direct := srv.Client(t)
	viaProxy, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer viaProxy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = viaProxy.Put(ctx, "k", "v1")
	require.NoError(t, err)

	srv.Cut()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = viaProxy.Get(short, "k")
	cancelShort()
	require.Error(t, err, "a cut client must not reach etcd")
	_, err = direct.Put(ctx, "k", "v2")
	require.NoError(t, err, "etcd itself keeps running")

	srv.Heal()
	resp, err := viaProxy.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v2", string(resp.Kvs[0].Value))
}
