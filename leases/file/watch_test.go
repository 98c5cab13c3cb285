package file_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

// watcher runs s.Watch until the test ends and checks it returns nil.
type watcher struct {
	out chan []leases.Lease
}

func startWatch(t *testing.T, s *file.Store) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{out: make(chan []leases.Lease)}
	errc := make(chan error, 1)
	go func() { errc <- s.Watch(ctx, w.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			assert.NoError(t, err, "Watch returns nil when ctx is done")
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	return w
}

// next returns the next snapshot, failing after a generous deadline.
func (w *watcher) next(t *testing.T) []leases.Lease {
	t.Helper()
	select {
	case ls := <-w.out:
		return ls
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot from Watch")
		return nil
	}
}

func TestWatchAddChangeRemove(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, file.Resync(time.Hour)) // events only
	other, _ := open(t, dir)                     // another process's view
	ctx := t.Context()
	r := rangeOf(9)
	w := startWatch(t, s)
	assert.Empty(t, w.next(t), "initial snapshot")

	a, err := other.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	ls := w.next(t)
	require.Len(t, ls, 1)
	assert.Equal(t, a.Subnet, ls[0].Subnet)
	assert.Equal(t, "a", ls[0].Attrs.BackendData)

	b, err := other.Acquire(ctx, r, attrs("192.0.2.2", "b"))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{a.Subnet.String(), b.Subnet.String()}, subnets(w.next(t)))

	// A renewal changes nothing that matters: no snapshot. A change of
	// BackendData does; it must be the very next snapshot.
	_, err = other.Renew(ctx, a)
	require.NoError(t, err)
	_, err = other.Acquire(ctx, r, attrs("192.0.2.1", "a2"))
	require.NoError(t, err)
	ls = w.next(t)
	require.Len(t, ls, 2)
	for _, l := range ls {
		if l.Subnet == a.Subnet {
			assert.Equal(t, "a2", l.Attrs.BackendData)
		}
	}

	// Garbage appearing sends nothing either; the next snapshot is the removal.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "subnets", "garbage"), []byte("x"), 0o600))
	require.NoError(t, other.Remove(ctx, a.Subnet))
	assert.Equal(t, []string{b.Subnet.String()}, subnets(w.next(t)))
}

func TestWatchNoticesExpiry(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, file.Resync(time.Hour)) // no periodic re-list: expiry alone must wake it
	short, _ := open(t, dir, file.TTL(500*time.Millisecond))
	ctx := t.Context()
	w := startWatch(t, s)
	assert.Empty(t, w.next(t))

	_, err := short.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	require.Len(t, w.next(t), 1)
	assert.Empty(t, w.next(t), "the expired lease is gone")
}

func TestWatchResyncWithoutEvents(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, file.Resync(50*time.Millisecond))
	ctx := t.Context()
	w := startWatch(t, s)
	assert.Empty(t, w.next(t))

	// Expire the lease through a hard link outside subnets/: inotify
	// reports the change to the other directory only, so the watcher gets
	// no event and only the periodic re-list can notice.
	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	require.Len(t, w.next(t), 1)
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Link(leasePath(dir, l), link))
	expire(t, link)
	assert.Empty(t, w.next(t))
}

func TestWatchStopsOnClose(t *testing.T) {
	s, _ := open(t, t.TempDir())
	out := make(chan []leases.Lease, 1)
	errc := make(chan error, 1)
	go func() { errc <- s.Watch(context.Background(), out) }()
	<-out
	require.NoError(t, s.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, file.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
}

func TestWatchSurvivesWipedDirectory(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, file.Resync(50*time.Millisecond))
	ctx := t.Context()
	w := startWatch(t, s)
	assert.Empty(t, w.next(t))
	_, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	require.Len(t, w.next(t), 1)

	require.NoError(t, os.RemoveAll(filepath.Join(dir, "subnets")))
	assert.Empty(t, w.next(t), "a wiped store is empty")
	_, err = s.Acquire(ctx, rangeOf(9), attrs("192.0.2.2", ""))
	require.NoError(t, err)
	require.Len(t, w.next(t), 1, "the watch picks up the recreated directory")
}
