package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// Watch batches file system events: it sends once no event came for
// settleQuiet, or settleMax after the first of a burst, whichever is
// first. Each event re-reads only the file it names.
const (
	settleQuiet = 2 * time.Millisecond
	settleMax   = 100 * time.Millisecond
)

// Watch sends the unexpired leases on out: once at the start, then each
// time the set of (subnet, attrs) differs from the last one sent: the
// shared leases.Pipe over a feed that keeps the directory's leases in
// memory. An fsnotify event in subnets/ re-reads the one file it names,
// events are batched (settleQuiet, settleMax), the whole directory is
// listed again every resync period and after a dropped event, and the set
// is sent again when a lease expires. It returns nil when ctx is done and
// ErrClosed when the store is closed.
func (s *Store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	if err := s.check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p := leases.Pipe{Quiet: settleQuiet, Max: settleMax, Backoff: retry.Backoff{Initial: settleMax, Max: s.resync}}
	return p.Run(ctx, out, &watcher{s: s})
}

// watcher is the file store's list/notify half of Watch: the directory's
// leases, kept by file name.
type watcher struct {
	s        *Store
	fs       *fsnotify.Watcher
	watching bool // subnets/ is being watched (it may be re-created)
	expiry   *time.Timer

	mu    sync.Mutex
	cache map[string]item // by file name
}

// Follow lists the directory, then takes its events until ctx is done or
// the store is closed.
func (w *watcher) Follow(ctx context.Context, changed func()) error {
	s := w.s
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return retry.Permanent(fmt.Errorf("watch %s: %w", s.subnets, err))
	}
	defer fw.Close()
	w.fs, w.watching = fw, fw.Add(s.subnets) == nil
	if !w.watching {
		s.log.Warn("cannot watch lease directory, relying on periodic re-list", "dir", s.subnets)
	}
	w.expiry = time.NewTimer(time.Hour) // next lease expiration
	w.expiry.Stop()
	defer w.expiry.Stop()
	if err := w.rescan(ctx); err != nil {
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrClosed):
			return retry.Permanent(err)
		}
		return retry.Permanent(fmt.Errorf("watch: %w", err))
	}
	changed()
	return w.loop(ctx, changed)
}

// loop takes events into the cache and tells Pipe, until Watch ends.
func (w *watcher) loop(ctx context.Context, changed func()) error {
	s, fw := w.s, w.fs
	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	for {
		full := false
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return retry.Permanent(ErrClosed)
		case ev, ok := <-fw.Events:
			if !ok {
				return retry.Permanent(errors.New("watch: fsnotify watcher stopped"))
			}
			if !w.event(ev) {
				full = true
				break
			}
			changed()
		case err, ok := <-fw.Errors:
			if !ok {
				return retry.Permanent(errors.New("watch: fsnotify watcher stopped"))
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Warn("lease directory watch error, re-listing", "error", err)
			}
			full = true
		case <-resync.C:
			full = true
		case <-w.expiry.C:
			w.armExpiry()
			changed()
		}
		if full {
			if err := w.rescan(ctx); err != nil {
				switch {
				case ctx.Err() != nil:
					return nil
				case errors.Is(err, ErrClosed):
					return retry.Permanent(err)
				}
				s.log.Warn("re-listing leases failed, will retry", "error", err)
				continue
			}
			changed()
		}
	}
}

// rescan reads the whole directory into the cache. A lease file that has
// not changed since it was cached is not read again: the periodic re-list
// of a store of 10 000 leases costs a stat per file, not a read and a
// decode.
func (w *watcher) rescan(ctx context.Context) error {
	if err := w.s.check(ctx); err != nil {
		return err
	}
	if !w.watching {
		w.watching = w.fs.Add(w.s.subnets) == nil
	}
	des, err := os.ReadDir(w.s.subnets)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list %s: %w", w.s.subnets, err)
	}
	now := w.s.now()
	w.mu.Lock()
	old := w.cache
	w.mu.Unlock()
	cache := make(map[string]item, len(des))
	bad := map[string]string{}
	for _, de := range des {
		if it, ok := old[de.Name()]; ok {
			if fi, err := de.Info(); err == nil {
				if it, ok := w.s.again(it, fi, now); ok {
					cache[de.Name()] = it
					if it.why != "" {
						bad[de.Name()] = it.why
					}
					continue
				}
			}
		}
		if it, ok := w.s.scanOne(de, now); ok {
			cache[de.Name()] = it
			if it.why != "" {
				bad[de.Name()] = it.why
			}
		}
	}
	w.s.warnOnce(bad)
	w.mu.Lock()
	w.cache = cache
	w.mu.Unlock()
	w.armExpiry()
	return nil
}

// event takes one fsnotify event into the cache by re-reading the file it
// names. It returns false when the whole directory must be listed again
// (the directory itself was removed or renamed).
func (w *watcher) event(ev fsnotify.Event) bool {
	if filepath.Clean(ev.Name) == filepath.Clean(w.s.subnets) {
		if ev.Has(fsnotify.Remove | fsnotify.Rename) {
			w.watching = false // the directory itself went away
		}
		return false
	}
	name := filepath.Base(ev.Name)
	if strings.HasPrefix(name, ".") || filepath.Dir(filepath.Clean(ev.Name)) != filepath.Clean(w.s.subnets) {
		return true // temporary files
	}
	it, ok := w.s.scanName(name, w.s.now())
	w.mu.Lock()
	if ok {
		w.cache[name] = it
	} else {
		delete(w.cache, name)
	}
	w.mu.Unlock()
	w.s.warnName(name, it.why)
	w.armExpiry()
	return true
}

// Snapshot is the cache as List would list it now.
func (w *watcher) Snapshot() []leases.Lease {
	now := w.s.now()
	w.mu.Lock()
	ls := make([]leases.Lease, 0, len(w.cache))
	for _, it := range w.cache {
		if l, ok := it.listed(now); ok {
			ls = append(ls, l)
		}
	}
	w.mu.Unlock()
	slices.SortFunc(ls, leases.Compare)
	return ls
}

// maxExpiryWait bounds the expiry timer; later expirations (a far-future
// mtime, what is not a regular file) are left to the periodic re-list.
const maxExpiryWait = 7 * 24 * time.Hour

// armExpiry sets the expiry timer to fire just after the earliest
// expiration among the cached leases.
func (w *watcher) armExpiry() {
	w.expiry.Stop()
	now := w.s.now()
	horizon := now.Add(maxExpiryWait)
	var next time.Time
	w.mu.Lock()
	for _, it := range w.cache {
		if l, ok := it.listed(now); ok && !l.Expiration.IsZero() && l.Expiration.Before(horizon) &&
			(next.IsZero() || l.Expiration.Before(next)) {
			next = l.Expiration
		}
	}
	w.mu.Unlock()
	if !next.IsZero() {
		w.expiry.Reset(next.Sub(now) + time.Millisecond)
	}
}
