package etcd

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
)

// TestWatchRecoversFromCompaction resumes a watcher from a revision that
// was compacted away while it was not looking: the changes made in
// between are only visible through a fresh listing, which it must send.
func TestWatchRecoversFromCompaction(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs testutil.SyncBuffer
	s, err := New(ctx, Config{Endpoints: srv.Endpoints}, Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer s.Close()

	dir := leases.DefaultPrefix + "/subnets/"
	put := func(key, ip, data string) {
		t.Helper()
		v, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: "extension", BackendData: data})
		require.NoError(t, err)
		_, err = c.Put(ctx, dir+key, string(v))
		require.NoError(t, err)
	}
	put("10.50.1.0-24", "192.0.2.1", "a")
	put("10.50.2.0-24", "192.0.2.2", "b")

	// What a watcher knew before it fell behind.
	es, rev, err := s.list(ctx)
	require.NoError(t, err)
	st := &watchState{rev: rev, cache: map[string]leases.Lease{}}
	for _, e := range es {
		st.cache[e.key] = e.lease
	}

	_, err = c.Delete(ctx, dir+"10.50.1.0-24")
	require.NoError(t, err)
	put("10.50.2.0-24", "192.0.2.2", "b2")
	put("10.50.3.0-24", "192.0.2.3", "c")
	cur, err := c.Get(ctx, "any")
	require.NoError(t, err)
	_, err = c.Compact(ctx, cur.Header.Revision)
	require.NoError(t, err)

	wctx, wcancel := context.WithCancel(ctx)
	out := make(chan []leases.Lease)
	done := make(chan error, 1)
	go func() { done <- s.watch(wctx, out, st, false) }()
	stop := sync.OnceValue(func() error { wcancel(); return <-done })
	defer stop()

	summary := func(ls []leases.Lease) string {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.Subnet.String() + "=" + l.Attrs.BackendData + " ")
		}
		return b.String()
	}
	select {
	case ls := <-out:
		assert.Equal(t, "10.50.2.0/24=b2 10.50.3.0/24=c ", summary(ls), "the first snapshot after compaction is a fresh listing")
	case <-ctx.Done():
		t.Fatal("no snapshot after compaction")
	}
	assert.Contains(t, logs.String(), "compacted")

	// And it keeps watching from the new listing.
	put("10.50.4.0-24", "192.0.2.4", "d")
	select {
	case ls := <-out:
		assert.Equal(t, "10.50.2.0/24=b2 10.50.3.0/24=c 10.50.4.0/24=d ", summary(ls))
	case <-ctx.Done():
		t.Fatal("no snapshot after a put")
	}
	require.NoError(t, stop(), "Watch returns nil when ctx is done")
}
