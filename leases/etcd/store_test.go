package etcd_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
)

const subnets = leases.DefaultPrefix + "/subnets/"

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// rng is a 10.50.0.0/16 range of /24s from 10.50.1.0 to 10.50.(n).0.
func rng(n int) leases.Range {
	return leases.Range{
		Network:   pfx("10.50.0.0/16"),
		SubnetLen: 24,
		SubnetMin: addr("10.50.1.0"),
		SubnetMax: netip.AddrFrom4([4]byte{10, 50, byte(n), 0}),
	}
}

func dualRange() leases.Range {
	r := rng(200)
	r.IPv6Network = pfx("fd00::/48")
	r.IPv6SubnetLen = 64
	r.IPv6SubnetMin = addr("fd00:0:0:1::")
	r.IPv6SubnetMax = addr("fd00:0:0:c8::")
	return r
}

func attrs(ip, data string) leases.Attrs {
	return leases.Attrs{PublicIP: addr(ip), BackendType: leases.BackendType, BackendData: data}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T, srv *etcdtest.Server, opts ...etcd.Option) *etcd.Store {
	t.Helper()
	opts = append([]etcd.Option{etcd.Logger(slog.New(slog.DiscardHandler))}, opts...)
	s, err := etcd.New(testCtx(t), etcd.Config{Endpoints: srv.Endpoints}, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// raw reads one key directly.
func raw(t *testing.T, c *clientv3.Client, key string) (value string, leaseID clientv3.LeaseID, modRev int64) {
	t.Helper()
	resp, err := c.Get(testCtx(t), key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "key %s", key)
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease), resp.Kvs[0].ModRevision
}

// putWithLease writes key=value attached to a new etcd lease of ttl
// seconds, as flanneld does.
func putWithLease(t *testing.T, c *clientv3.Client, key, value string, ttl int64) {
	t.Helper()
	ctx := testCtx(t)
	g, err := c.Grant(ctx, ttl)
	require.NoError(t, err)
	_, err = c.Put(ctx, key, value, clientv3.WithLease(g.ID))
	require.NoError(t, err)
}

func TestAcquireWritesFlanneldBytesAndTTL(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	s := newStore(t, srv)
	tests := []struct {
		name  string
		r     leases.Range
		attrs leases.Attrs
		want  string
	}{
		{"backend data", rng(200), attrs("192.0.2.2", "e2:0f:cf:6a:41:69"),
			`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"e2:0f:cf:6a:41:69"}`},
		{"no backend data", rng(200), attrs("192.0.2.3", ""),
			`{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"extension"}`},
		{"dual stack", dualRange(),
			leases.Attrs{PublicIP: addr("192.0.2.4"), PublicIPv6: addr("2001:db8::4"), BackendType: "extension", BackendData: `a"b<c>`},
			`{"PublicIP":"192.0.2.4","PublicIPv6":"2001:db8::4","BackendType":"extension","BackendData":"a\"b\u003cc\u003e"}`}, // escaped like flanneld's json.Marshal
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			l, err := s.Acquire(ctx, tt.r, tt.attrs)
			require.NoError(t, err)
			require.True(t, tt.r.Fits(l.Subnet, l.IPv6Subnet), "%v", l)
			assert.Equal(t, tt.attrs, l.Attrs)
			assert.WithinRange(t, l.Expiration, time.Now().Add(86000*time.Second), time.Now().Add(86401*time.Second))

			key := subnets + fmt.Sprintf("%s-24", l.Subnet.Addr())
			if l.IPv6Subnet.IsValid() {
				key += fmt.Sprintf("&%s-64", l.IPv6Subnet.Addr())
			}
			val, id, _ := raw(t, c, key)
			assert.Equal(t, tt.want, val)
			require.NotEqual(t, clientv3.NoLease, id, "lease key must carry an etcd lease")
			ttl, err := c.TimeToLive(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, int64(86400), ttl.GrantedTTL)
			assert.Greater(t, ttl.TTL, int64(86000))
		})
	}
}

func TestParsesFlanneldValues(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	s := newStore(t, srv)

	written := map[string]string{
		"10.50.1.0-24":                 `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"extension"}`,
		"10.50.2.0-24":                 `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"e2:0f:cf:6a:41:69"}`,
		"10.50.3.0-24":                 `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"82:87:fe:a4:a9:55"}}`,
		"10.50.4.0-24&fd00:0:0:4::-64": `{"PublicIP":"192.0.2.4","PublicIPv6":"2001:db8::4","BackendType":"extension","BackendData":"x"}`,
		// Garbage another writer left: skipped with a warning.
		"10.50.5.0-24":   `{"PublicIP":`,
		"not-a-subnet":   `{"PublicIP":"192.0.2.6","PublicIPv6":null,"BackendType":"extension"}`,
		"10.50.7.1-24":   `{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"extension"}`,
		"10.50.8.0-24/x": `{"PublicIP":"192.0.2.8","PublicIPv6":null,"BackendType":"extension"}`,
	}
	for k, v := range written {
		putWithLease(t, c, subnets+k, v, 86400)
	}
	want := []leases.Lease{
		{Key: "10.50.1.0-24", Subnet: pfx("10.50.1.0/24"), Attrs: attrs("192.0.2.1", "")},
		{Key: "10.50.2.0-24", Subnet: pfx("10.50.2.0/24"), Attrs: attrs("192.0.2.2", "e2:0f:cf:6a:41:69")},
		{Key: "10.50.3.0-24", Subnet: pfx("10.50.3.0/24"), Attrs: leases.Attrs{PublicIP: addr("192.0.2.3"), BackendType: "vxlan", BackendData: `{"VNI":1,"VtepMAC":"82:87:fe:a4:a9:55"}`}},
		{Key: "10.50.4.0-24&fd00:0:0:4::-64", Subnet: pfx("10.50.4.0/24"), IPv6Subnet: pfx("fd00:0:0:4::/64"),
			Attrs: leases.Attrs{PublicIP: addr("192.0.2.4"), PublicIPv6: addr("2001:db8::4"), BackendType: "extension", BackendData: "x"}},
	}
	// Garbage is listed too, marked invalid with why, so that the engine
	// can refuse and report it.
	wantInvalid := map[string]leases.Reason{
		"10.50.5.0-24": leases.ReasonBadValue, "not-a-subnet": leases.ReasonBadKey,
		"10.50.7.1-24": leases.ReasonBadKey, "10.50.8.0-24/x": leases.ReasonBadKey,
	}
	split := func(ls []leases.Lease) ([]leases.Lease, map[string]leases.Reason) {
		var valid []leases.Lease
		invalid := map[string]leases.Reason{}
		for _, l := range ls {
			if l.Invalid != "" {
				assert.NotEmpty(t, l.Problem, l.Key)
				invalid[l.Key] = l.Invalid
				continue
			}
			valid = append(valid, l)
		}
		return valid, invalid
	}

	ls, err := s.List(testCtx(t))
	require.NoError(t, err)
	for i := range ls {
		assert.WithinRange(t, ls[i].Expiration, time.Now().Add(86000*time.Second), time.Now().Add(86401*time.Second))
		ls[i].Expiration = time.Time{}
	}
	valid, invalid := split(ls)
	assert.Equal(t, want, valid)
	assert.Equal(t, wantInvalid, invalid)

	// Watch parses them the same way.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	out := make(chan []leases.Lease, 1)
	go func() { _ = s.Watch(ctx, out) }()
	valid, invalid = split(<-out)
	assert.Equal(t, want, valid)
	assert.Equal(t, wantInvalid, invalid)
}

func TestAcquireTakesBackOwnLeaseAfterRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := testCtx(t)

	first := newStore(t, srv)
	other, err := first.Acquire(ctx, rng(200), attrs("192.0.2.1", "other"))
	require.NoError(t, err)
	mine, err := first.Acquire(ctx, rng(200), attrs("192.0.2.2", "old"))
	require.NoError(t, err)
	require.NotEqual(t, other.Subnet, mine.Subnet)
	key := subnets + leases.SubnetKey(mine.Subnet, netip.Prefix{})
	_, oldID, _ := raw(t, c, key)
	require.NoError(t, first.Close())

	// The node restarts: a new Store, the same PublicIP, new BackendData.
	second := newStore(t, srv)
	again, err := second.Acquire(ctx, rng(200), attrs("192.0.2.2", "new"))
	require.NoError(t, err)
	assert.Equal(t, mine.Subnet, again.Subnet)
	assert.Equal(t, "new", again.Attrs.BackendData)

	val, newID, _ := raw(t, c, key)
	assert.Equal(t, `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"new"}`, val)
	assert.NotEqual(t, oldID, newID, "a taken-back lease gets a fresh etcd lease")
	ttl, err := c.TimeToLive(ctx, oldID)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl.TTL, "the replaced etcd lease is revoked")

	ls, err := second.List(ctx)
	require.NoError(t, err)
	assert.Len(t, ls, 2)
}

func TestAcquireDropsOwnLeaseOutsideRange(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	s := newStore(t, srv)
	ctx := testCtx(t)
	old, err := s.Acquire(ctx, rng(200), attrs("192.0.2.2", ""))
	require.NoError(t, err)

	moved := leases.Range{Network: pfx("10.60.0.0/16"), SubnetLen: 24, SubnetMin: addr("10.60.1.0"), SubnetMax: addr("10.60.9.0")}
	l, err := s.Acquire(ctx, moved, attrs("192.0.2.2", ""))
	require.NoError(t, err)
	assert.True(t, moved.Fits(l.Subnet, l.IPv6Subnet), "%s", l.Subnet)
	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1, "the lease outside the new network is deleted")
	assert.NotEqual(t, old.Subnet, ls[0].Subnet)
}

func TestRacingStoresGetDistinctSubnets(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	const n = 8
	stores := make([]*etcd.Store, n)
	for i := range stores {
		// The same seed everywhere: every store first tries the same
		// subnet, so all but one must lose a transaction and retry.
		stores[i] = newStore(t, srv, etcd.Rand(rand.New(rand.NewPCG(1, 2))))
	}
	ctx := testCtx(t)
	got := make([]leases.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { got[i], errs[i] = s.Acquire(ctx, rng(n), attrs(fmt.Sprintf("192.0.2.%d", i+1), "")) })
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for i := range n {
		require.NoError(t, errs[i], "store %d", i)
		assert.False(t, seen[got[i].Subnet], "subnet %s given twice", got[i].Subnet)
		seen[got[i].Subnet] = true
	}
	assert.Len(t, seen, n)

	// The range is full now.
	_, err := stores[0].Acquire(ctx, rng(n), attrs("192.0.2.99", ""))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet)
	assert.Contains(t, err.Error(), "10.50.1.0/24..10.50.8.0/24")
}

func TestRenew(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	s := newStore(t, srv)
	ctx := testCtx(t)

	l, err := s.Acquire(ctx, rng(200), attrs("192.0.2.2", "d1"))
	require.NoError(t, err)
	key := subnets + leases.SubnetKey(l.Subnet, netip.Prefix{})
	_, id, rev := raw(t, c, key)

	t.Run("same attrs keeps the etcd lease and writes nothing", func(t *testing.T) {
		r, err := s.Renew(ctx, l)
		require.NoError(t, err)
		assert.Equal(t, l.Subnet, r.Subnet)
		assert.False(t, r.Expiration.Before(l.Expiration))
		_, id2, rev2 := raw(t, c, key)
		assert.Equal(t, id, id2)
		assert.Equal(t, rev, rev2)
	})
	t.Run("new attrs rewrite the value with a fresh lease", func(t *testing.T) {
		l2 := l
		l2.Attrs.BackendData = "d2"
		r, err := s.Renew(ctx, l2)
		require.NoError(t, err)
		assert.Equal(t, "d2", r.Attrs.BackendData)
		val, id2, _ := raw(t, c, key)
		assert.Contains(t, val, `"BackendData":"d2"`)
		assert.NotEqual(t, id, id2)
		ttl, err := c.TimeToLive(ctx, id2)
		require.NoError(t, err)
		assert.Greater(t, ttl.TTL, int64(86000))
		l = r
	})
	t.Run("etcd lease of another TTL is replaced", func(t *testing.T) {
		// A value equal to ours but on a lease with another TTL (as
		// after a TTL change): Renew must not keep that lease.
		putWithLease(t, c, key, mustMarshal(t, l.Attrs), 600)
		_, short, _ := raw(t, c, key)
		_, err := s.Renew(ctx, l)
		require.NoError(t, err)
		_, id3, _ := raw(t, c, key)
		assert.NotEqual(t, short, id3)
		ttl, err := c.TimeToLive(ctx, id3)
		require.NoError(t, err)
		assert.Equal(t, int64(86400), ttl.GrantedTTL)
	})
	t.Run("a new PublicIPv6 of the same node is written", func(t *testing.T) {
		l2 := l
		l2.Attrs.PublicIPv6 = addr("2001:db8::2")
		_, err := s.Renew(ctx, l2)
		require.NoError(t, err)
		val, _, _ := raw(t, c, key)
		assert.Contains(t, val, `"PublicIPv6":"2001:db8::2"`)
	})
	t.Run("taken by another node", func(t *testing.T) {
		putWithLease(t, c, key, `{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"extension"}`, 60)
		_, err := s.Renew(ctx, l)
		require.ErrorIs(t, err, leases.ErrLeaseGone)
		assert.Contains(t, err.Error(), "192.0.2.77")
	})
	t.Run("deleted", func(t *testing.T) {
		_, err := c.Delete(ctx, key)
		require.NoError(t, err)
		_, err = s.Renew(ctx, l)
		require.ErrorIs(t, err, leases.ErrLeaseGone)
	})
}

func mustMarshal(t *testing.T, a leases.Attrs) string {
	t.Helper()
	b, err := leases.MarshalAttrs(a)
	require.NoError(t, err)
	return string(b)
}

func TestRemove(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	s := newStore(t, srv)
	ctx := testCtx(t)
	single, err := s.Acquire(ctx, rng(200), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	dual, err := s.Acquire(ctx, dualRange(), leases.Attrs{PublicIP: addr("192.0.2.2"), PublicIPv6: addr("2001:db8::2"), BackendType: "extension"})
	require.NoError(t, err)
	require.True(t, dual.IPv6Subnet.IsValid())

	require.NoError(t, s.Remove(ctx, dual.Subnet), "a dual-stack lease is removed by its IPv4 subnet")
	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, single.Subnet, ls[0].Subnet)

	require.NoError(t, s.Remove(ctx, single.Subnet))
	err = s.Remove(ctx, single.Subnet)
	require.ErrorIs(t, err, leases.ErrNotFound)
	assert.Contains(t, err.Error(), single.Subnet.String())
}

func TestConfig(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := testCtx(t)
	s, err := etcd.New(ctx, etcd.Config{Endpoints: srv.Endpoints, Prefix: "/test/net/"})
	require.NoError(t, err)
	defer s.Close()

	_, err = s.Config(ctx)
	require.ErrorIs(t, err, leases.ErrNotFound)
	assert.Contains(t, err.Error(), "/test/net/config")

	conf := []byte(`{"Network":"10.50.0.0/16","Backend":{"Type":"extension"}}`)
	require.NoError(t, s.PutConfig(ctx, conf))
	got, err := s.Config(ctx)
	require.NoError(t, err)
	assert.Equal(t, conf, got)
	val, _, _ := raw(t, c, "/test/net/config")
	assert.Equal(t, string(conf), val)

	// The custom prefix is used for subnets too.
	l, err := s.Acquire(ctx, rng(200), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	raw(t, c, "/test/net/subnets/"+leases.SubnetKey(l.Subnet, netip.Prefix{}))
}

// watcher runs Watch in the background and returns its output channel and
// a function that stops it and returns Watch's result.
func watcher(t *testing.T, s *etcd.Store) (<-chan []leases.Lease, func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []leases.Lease)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, out) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

// waitFor reads snapshots until one satisfies ok, failing after 20s.
func waitFor(t *testing.T, out <-chan []leases.Lease, what string, ok func([]leases.Lease) bool) []leases.Lease {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var last []leases.Lease
	for {
		select {
		case ls := <-out:
			if ok(ls) {
				return ls
			}
			last = ls
		case <-deadline:
			t.Fatalf("no snapshot with %s; last: %v", what, last)
		}
	}
}

// subnetsOf summarizes a snapshot as "subnet=publicIP/data" strings.
func subnetsOf(ls []leases.Lease) []string {
	var s []string
	for _, l := range ls {
		if l.Invalid != "" {
			s = append(s, l.Key+"!"+string(l.Invalid))
			continue
		}
		s = append(s, fmt.Sprintf("%s=%s/%s", l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData))
	}
	return s
}

func is(want ...string) func([]leases.Lease) bool {
	return func(ls []leases.Lease) bool {
		return strings.Join(subnetsOf(ls), " ") == strings.Join(want, " ")
	}
}

func value(ip, data string) string {
	return fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"extension","BackendData":%q}`, ip, data)
}

func TestWatchAddChangeRemoveExpire(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	s := newStore(t, srv)
	ctx := testCtx(t)
	putWithLease(t, c, subnets+"10.50.1.0-24", value("192.0.2.1", "a"), 600)

	out, stop := watcher(t, s)
	assert.Equal(t, []string{"10.50.1.0/24=192.0.2.1/a"}, subnetsOf(<-out), "first snapshot is the listing")

	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b"), 600)
	waitFor(t, out, "add", is("10.50.1.0/24=192.0.2.1/a", "10.50.2.0/24=192.0.2.2/b"))

	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b2"), 600)
	waitFor(t, out, "change", is("10.50.1.0/24=192.0.2.1/a", "10.50.2.0/24=192.0.2.2/b2"))

	_, err := c.Delete(ctx, subnets+"10.50.1.0-24")
	require.NoError(t, err)
	waitFor(t, out, "remove", is("10.50.2.0/24=192.0.2.2/b2"))

	// A garbage value replacing a lease makes it invalid in snapshots.
	_, err = c.Put(ctx, subnets+"10.50.2.0-24", "garbage")
	require.NoError(t, err)
	waitFor(t, out, "garbage marked", is("10.50.2.0-24!bad_value"))
	_, err = c.Delete(ctx, subnets+"10.50.2.0-24")
	require.NoError(t, err)
	waitFor(t, out, "garbage removed", is())

	// An etcd lease that runs out deletes the key: a remove.
	putWithLease(t, c, subnets+"10.50.3.0-24", value("192.0.2.3", "c"), 1)
	waitFor(t, out, "short lease added", is("10.50.3.0/24=192.0.2.3/c"))
	waitFor(t, out, "short lease expired", is())

	require.NoError(t, stop(), "Watch returns nil when ctx is done")
}

func TestWatchSurvivesEtcdOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := testCtx(t)
	var logs testutil.SyncBuffer
	s := newStore(t, srv, etcd.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	putWithLease(t, c, subnets+"10.50.1.0-24", value("192.0.2.1", "a"), 600)
	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b"), 600)

	out, stop := watcher(t, s)
	waitFor(t, out, "initial", is("10.50.1.0/24=192.0.2.1/a", "10.50.2.0/24=192.0.2.2/b"))

	srv.Stop()
	time.Sleep(2 * time.Second) // etcd stays down for a while
	srv.Restart()

	// Another node changes leases right away and compacts, so whether
	// the watch resumes or has to list again, no change may be lost.
	_, err := c.Delete(ctx, subnets+"10.50.1.0-24")
	require.NoError(t, err)
	putWithLease(t, c, subnets+"10.50.3.0-24", value("192.0.2.3", "c"), 600)
	resp, err := c.Get(ctx, "any")
	require.NoError(t, err)
	_, err = c.Compact(ctx, resp.Header.Revision)
	require.NoError(t, err)

	waitFor(t, out, "changes made after the outage", is("10.50.2.0/24=192.0.2.2/b", "10.50.3.0/24=192.0.2.3/c"))
	require.NoError(t, stop())
}

func TestWatchSeesChangesMadeWhileCutOff(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.Proxy())
	c := srv.Client(t) // another node: connected directly, never cut off
	ctx := testCtx(t)
	var logs testutil.SyncBuffer
	s := newStore(t, srv, etcd.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	putWithLease(t, c, subnets+"10.50.1.0-24", value("192.0.2.1", "a"), 600)
	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b"), 600)

	out, stop := watcher(t, s)
	waitFor(t, out, "initial", is("10.50.1.0/24=192.0.2.1/a", "10.50.2.0/24=192.0.2.2/b"))

	srv.Cut()
	// While this store cannot reach etcd: a lease is removed, one added,
	// one changed, and the history is compacted, so the watch cannot
	// simply resume where it stopped.
	_, err := c.Delete(ctx, subnets+"10.50.1.0-24")
	require.NoError(t, err)
	putWithLease(t, c, subnets+"10.50.3.0-24", value("192.0.2.3", "c"), 600)
	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b2"), 600)
	resp, err := c.Get(ctx, "any")
	require.NoError(t, err)
	_, err = c.Compact(ctx, resp.Header.Revision)
	require.NoError(t, err)
	select {
	case ls := <-out:
		t.Fatalf("snapshot %v while cut off", subnetsOf(ls))
	default:
	}
	srv.Heal()

	waitFor(t, out, "changes made while cut off", is("10.50.2.0/24=192.0.2.2/b2", "10.50.3.0/24=192.0.2.3/c"))
	assert.Contains(t, logs.String(), "compacted", "the watch re-listed after compaction")
	require.NoError(t, stop())
}

func TestWatchWaitsForEtcd(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	var logs testutil.SyncBuffer
	s, err := etcd.New(testCtx(t), etcd.Config{Endpoints: srv.Endpoints, DialTimeout: time.Second},
		etcd.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer s.Close()
	putWithLease(t, c, subnets+"10.50.1.0-24", value("192.0.2.1", "a"), 600)

	srv.Stop()
	out, stop := watcher(t, s)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "cannot list leases") },
		20*time.Second, 50*time.Millisecond, "a failing list is logged")
	select {
	case ls := <-out:
		t.Fatalf("snapshot %v while etcd is down", ls)
	default:
	}
	srv.Restart()
	waitFor(t, out, "listing once etcd is back", is("10.50.1.0/24=192.0.2.1/a"))
	require.NoError(t, stop())
}

func TestWatchReturnsErrorWhenStoreClosed(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	s, err := etcd.New(testCtx(t), etcd.Config{Endpoints: srv.Endpoints})
	require.NoError(t, err)
	out := make(chan []leases.Lease, 1)
	done := make(chan error, 1)
	go func() { done <- s.Watch(testCtx(t), out) }()
	<-out
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "closed")
	case <-time.After(20 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
}

func TestWithTTL(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	tests := []struct {
		ttl  time.Duration
		want int64
	}{
		{90 * time.Second, 90},
		{1500 * time.Millisecond, 2}, // rounded up to whole seconds
	}
	for i, tt := range tests {
		s := newStore(t, srv, etcd.TTL(tt.ttl))
		ctx := testCtx(t)
		l, err := s.Acquire(ctx, rng(200), attrs(fmt.Sprintf("192.0.2.%d", i+1), ""))
		require.NoError(t, err)
		_, id, _ := raw(t, c, subnets+leases.SubnetKey(l.Subnet, netip.Prefix{}))
		ttl, err := c.TimeToLive(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, tt.want, ttl.GrantedTTL, "TTL(%s)", tt.ttl)
	}
}

// Dialer's function makes the store's connections: an endpoint the
// default dialer could not reach (as the lab's etcd, inside a network
// namespace) works through it, and nil is refused.
func TestDialer(t *testing.T) {
	srv := etcdtest.Start(t)
	var mu sync.Mutex
	var dialled []string
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", strings.TrimPrefix(srv.Endpoints[0], "http://"))
	}
	s, err := etcd.New(testCtx(t), etcd.Config{Endpoints: []string{"http://fhtest.invalid:2379"}},
		etcd.Logger(slog.New(slog.DiscardHandler)), etcd.Dialer(dial))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	_, err = s.List(testCtx(t))
	require.NoError(t, err, "the store reached etcd through the dialer")
	mu.Lock()
	assert.Contains(t, dialled, "fhtest.invalid:2379")
	mu.Unlock()

	_, err = etcd.New(testCtx(t), etcd.Config{Endpoints: srv.Endpoints}, etcd.Dialer(nil))
	require.ErrorContains(t, err, "Dialer: nil")
}

// ranges is how many Range requests (reads: a list, a get) the test
// process's etcd members have been sent (etcd counts its gRPC calls in the
// default Prometheus registry).
func ranges(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_started_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_method" && l.GetValue() == "Range" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("etcd's grpc_server_started_total{grpc_method=\"Range\"} is not registered")
	return 0
}

// The first Watch after Acquire starts from the list Acquire chose from,
// with the lease Acquire wrote: etcd serves it no second list of the
// subnets, and what changed between the two arrives all the same. A later
// Watch lists.
func TestWatchAfterAcquireFollowsItsList(t *testing.T) {
	// Not parallel: etcd counts ranges for the whole process.
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := testCtx(t)
	putWithLease(t, c, subnets+"10.50.1.0-24", value("192.0.2.1", "a"), 600)
	s := newStore(t, srv)
	mine, err := s.Acquire(ctx, rng(200), attrs("192.0.2.9", "me"))
	require.NoError(t, err)
	putWithLease(t, c, subnets+"10.50.2.0-24", value("192.0.2.2", "b"), 600)
	_, err = c.Delete(ctx, subnets+"10.50.1.0-24")
	require.NoError(t, err)

	want := func(ls []leases.Lease) bool {
		got := subnetsOf(ls)
		slices.Sort(got)
		exp := []string{mine.Subnet.String() + "=192.0.2.9/me", "10.50.2.0/24=192.0.2.2/b"}
		slices.Sort(exp)
		return slices.Equal(got, exp)
	}
	before := ranges(t)
	out, stop := watcher(t, s)
	first := subnetsOf(<-out)
	slices.Sort(first)
	exp := []string{mine.Subnet.String() + "=192.0.2.9/me", "10.50.1.0/24=192.0.2.1/a"}
	slices.Sort(exp)
	assert.Equal(t, exp, first, "the first snapshot is Acquire's list with the lease it wrote, sent at once")
	waitFor(t, out, "the changes since", want)
	assert.Zero(t, ranges(t)-before, "the first Watch lists nothing")
	require.NoError(t, stop())

	before = ranges(t)
	out, stop = watcher(t, s)
	waitFor(t, out, "a new list", want)
	assert.Equal(t, 1.0, ranges(t)-before, "a second Watch lists once")
	require.NoError(t, stop())
}
