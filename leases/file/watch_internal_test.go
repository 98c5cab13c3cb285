package file

import (
	"fmt"
	"maps"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// A re-list of a directory that did not change keeps what the watcher
// holds (the same cached leases, the same snapshot for Pipe to compare),
// so that the periodic re-list never holds the directory twice; a
// changed and a removed file are taken in. The cache's leases are the
// last snapshot's: the watcher holds the leases once.
func TestRescanKeepsWhatDidNotChange(t *testing.T) {
	s, err := New(t.TempDir(), TTL(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	r := leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16"), SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.1.0"), SubnetMax: netip.MustParseAddr("10.50.9.0")}
	var ls []leases.Lease
	for i := range 3 {
		l, err := s.Acquire(t.Context(), r, leases.Attrs{PublicIP: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i+1)),
			BackendType: leases.BackendType})
		require.NoError(t, err)
		ls = append(ls, l)
	}
	w := rescanOnly(t, s)
	require.NoError(t, w.rescan(t.Context()))
	snap := w.Snapshot()
	require.Len(t, snap, 3)
	for i := range snap {
		assert.Same(t, &snap[i], w.cache[snap[i].Key])
	}
	before := maps.Clone(w.cache)

	require.NoError(t, w.rescan(t.Context()))
	assert.Equal(t, before, w.cache, "the same items")
	again := w.Snapshot()
	assert.Same(t, &snap[0], &again[0], "the same snapshot")

	renewed, err := s.Renew(t.Context(), ls[0])
	require.NoError(t, err)
	require.NoError(t, s.Remove(t.Context(), ls[1].Subnet))
	require.NoError(t, w.rescan(t.Context()))
	key := func(l leases.Lease) string { return leases.SubnetKey(l.Subnet, l.IPv6Subnet) }
	assert.NotSame(t, before[key(ls[0])], w.cache[key(ls[0])], "a renewed lease is read anew")
	assert.Equal(t, renewed.Expiration, w.cache[key(ls[0])].Expiration)
	assert.NotContains(t, w.cache, key(ls[1]), "a removed one is gone")
	assert.Same(t, before[key(ls[2])], w.cache[key(ls[2])])
	after := w.Snapshot()
	require.Len(t, after, 2)
	assert.NotSame(t, &snap[0], &after[0])
	for i := range after {
		assert.Same(t, &after[i], w.cache[after[i].Key])
	}
}

// A lease that expires leaves the next snapshot though no file changed,
// and the watcher keeps its own copy of it, not the snapshot it was in.
func TestSnapshotAfterExpiry(t *testing.T) {
	var mono atomic.Int64
	s, err := New(t.TempDir(), TTL(time.Hour),
		Clock(time.Now, func() time.Duration { return time.Duration(mono.Load()) }))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	r := leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16"), SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.1.0"), SubnetMax: netip.MustParseAddr("10.50.9.0")}
	early, err := s.Acquire(t.Context(), r, leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: leases.BackendType})
	require.NoError(t, err)
	mono.Add(int64(30 * time.Minute))
	late, err := s.Acquire(t.Context(), r, leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendType: leases.BackendType})
	require.NoError(t, err)
	w := rescanOnly(t, s)
	require.NoError(t, w.rescan(t.Context()))
	both := w.Snapshot()
	require.Len(t, both, 2)
	assert.Same(t, &both[0], &w.Snapshot()[0], "nothing changed or expired")

	mono.Add(int64(40 * time.Minute)) // past the early lease's hour
	one := w.Snapshot()
	require.Len(t, one, 1)
	assert.Equal(t, late.Subnet, one[0].Subnet)
	held := w.cache[leases.SubnetKey(early.Subnet, early.IPv6Subnet)]
	require.NotNil(t, held, "an expired file stays known until it goes")
	for i := range both {
		assert.NotSame(t, &both[i], held, "no older snapshot is held for it")
	}
	assert.Same(t, &one[0], &w.Snapshot()[0])
}

// rescanOnly is a watcher of s for calling rescan by hand: no fsnotify
// (watching, so rescan does not add one) and an expiry timer that does
// not fire.
func rescanOnly(t *testing.T, s *Store) *watcher {
	w := &watcher{s: s, watching: true, expiry: time.NewTimer(time.Hour)}
	t.Cleanup(func() { w.expiry.Stop() })
	return w
}
