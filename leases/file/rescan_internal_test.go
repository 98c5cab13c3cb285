package file

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// writeLeases puts n leases into the store's directory as another node
// would, and returns their paths.
func writeLeases(t testing.TB, s *Store, n int) []string {
	t.Helper()
	require.NoError(t, os.MkdirAll(s.subnets, 0o700))
	exp := time.Now().Add(time.Hour)
	paths := make([]string, n)
	for i := range paths {
		sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		v, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), BackendType: leases.BackendType})
		require.NoError(t, err)
		paths[i] = filepath.Join(s.subnets, leases.SubnetKey(sub, netip.Prefix{}))
		require.NoError(t, os.WriteFile(paths[i], v, 0o600))
		require.NoError(t, os.Chtimes(paths[i], exp, exp))
	}
	return paths
}

// The periodic re-list does not read a lease file again that has not
// changed: with 1000 leases, what it allocates per file is a directory
// entry and a stat, not an open file, its content and a decoded lease
// (a read costs ~20 allocations).
func TestRescanSkipsUnchangedFiles(t *testing.T) {
	s, err := New(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	const n = 1000
	writeLeases(t, s, n)
	w := rescanOnly(t, s)
	ctx := context.Background()
	require.NoError(t, w.rescan(ctx))
	require.Len(t, w.Snapshot(), n)
	perFile := testing.AllocsPerRun(5, func() { require.NoError(t, w.rescan(ctx)) }) / n
	assert.Less(t, perFile, 8.0, "allocations per unchanged file in a re-list")
	t.Logf("a re-list of %d unchanged leases: %.1f allocations per file", n, perFile)
}

// A file changed in place, even to the same size and back to the same
// mtime, is read again: its ctime moved.
func TestRescanReadsChangedFiles(t *testing.T) {
	s, err := New(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	paths := writeLeases(t, s, 3)
	w := rescanOnly(t, s)
	ctx := context.Background()
	require.NoError(t, w.rescan(ctx))
	ip := func() string {
		for _, l := range w.Snapshot() {
			if filepath.Base(paths[1]) == l.Key {
				return l.Attrs.PublicIP.String()
			}
		}
		return ""
	}
	require.Equal(t, "192.0.2.1", ip())

	fi, err := os.Stat(paths[1])
	require.NoError(t, err)
	old, err := os.ReadFile(paths[1])
	require.NoError(t, err)
	v, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.9"), BackendType: leases.BackendType})
	require.NoError(t, err)
	require.Len(t, v, len(old), "the test rewrites the file to the same size")
	require.NoError(t, os.WriteFile(paths[1], v, 0o600))
	require.NoError(t, os.Chtimes(paths[1], fi.ModTime(), fi.ModTime()))
	require.NoError(t, w.rescan(ctx))
	assert.Equal(t, "192.0.2.9", ip(), "the rewritten lease")

	// A lease whose mtime moved into the past has expired.
	past := time.Now().Add(-time.Minute)
	require.NoError(t, os.Chtimes(paths[2], past, past))
	require.NoError(t, w.rescan(ctx))
	assert.Len(t, w.Snapshot(), 2, fmt.Sprintf("%s expired", filepath.Base(paths[2])))
}
