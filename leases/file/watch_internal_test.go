package file

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// A re-list of a directory that did not change keeps what the watcher
// holds (the same cached leases, the same snapshot for Pipe to compare),
// so that the periodic re-list never holds the directory twice; a
// changed, a new and a removed file are taken in.
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
	w := &watcher{s: s, watching: true, expiry: time.NewTimer(time.Hour)}
	t.Cleanup(func() { w.expiry.Stop() })
	require.NoError(t, w.rescan(t.Context()))
	before, snap := maps.Clone(w.cache), w.Snapshot()
	require.Len(t, snap, 3)

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
	assert.Equal(t, renewed.Expiration, w.cache[key(ls[0])].l.Expiration)
	assert.NotContains(t, w.cache, key(ls[1]), "a removed one is gone")
	assert.Same(t, before[key(ls[2])], w.cache[key(ls[2])])
	after := w.Snapshot()
	require.Len(t, after, 2)
	assert.NotSame(t, &snap[0], &after[0])
}
