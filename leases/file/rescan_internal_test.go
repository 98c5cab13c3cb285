package file

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
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

// mallocs is how many heap allocations f makes.
func mallocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// A Watch's first list takes what the store's last scan (Acquire's, in a
// daemon) read: files unchanged since are not read again, a changed one
// is, and one removed meanwhile is not listed.
func TestFirstListTakesTheLastScan(t *testing.T) {
	s, err := New(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	const n = 1000
	paths := writeLeases(t, s, n)
	ctx := context.Background()
	_, err = s.List(ctx)
	require.NoError(t, err)

	// Changed after the scan: one rewritten, one removed.
	v, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.250"), BackendType: leases.BackendType})
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.WriteFile(paths[1], v, 0o600))
	require.NoError(t, os.Chtimes(paths[1], exp, exp))
	require.NoError(t, os.Remove(paths[2]))

	w := rescanOnly(t, s)
	perFile := float64(mallocs(func() { require.NoError(t, w.rescan(ctx)) })) / n
	snap := w.Snapshot()
	require.Len(t, snap, n-1)
	for _, l := range snap {
		require.NotEqual(t, filepath.Base(paths[2]), l.Key, "removed after the scan")
		if l.Key == filepath.Base(paths[1]) {
			require.Equal(t, "192.0.2.250", l.Attrs.PublicIP.String(), "changed after the scan")
		}
	}

	// Without a scan before it, the first list reads every file.
	s2, err := New(t.TempDir())
	require.NoError(t, err)
	defer s2.Close()
	writeLeases(t, s2, n)
	w2 := rescanOnly(t, s2)
	cold := float64(mallocs(func() { require.NoError(t, w2.rescan(ctx)) })) / n
	assert.Greater(t, cold, 2*perFile, "a first list with nothing to take reads the files")
	t.Logf("first list of %d leases: %.1f allocations per file after a scan, %.1f without", n, perFile, cold)

	// Only the first Watch takes a scan: later scans keep nothing.
	_, err = s.List(ctx)
	require.NoError(t, err)
	_, kept := s.warm.Take()
	assert.False(t, kept, "a scan after the first list keeps its reads")
}
