package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
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
	seeded   bool // the store's last scan was taken into the cache
	expiry   *time.Timer

	// cache holds what each name in subnets/ lists as (a bad key's or a
	// foreign file's lease too, with its Key the name), listed while it
	// has not expired (a foreign file's expires in farFuture). A listed
	// one points into the last snapshot, so the leases are held once. Its
	// entries are replaced, never changed; gen counts the changes.
	mu    sync.Mutex
	cache map[string]*leases.Lease // by file name
	ids   map[string]fileID        // of the lease files cached as read (see again)
	gen   uint64
	// last is the last Snapshot, handed out again while nothing changed.
	last snapshot
}

// snapshot is a Snapshot as of cache generation gen, taken at at: it
// holds until the first expiration among its leases (until).
type snapshot struct {
	ls        []leases.Lease
	gen       uint64
	at, until time.Time
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

// rescan reads the whole directory into the cache, a batch of names at
// a time. What did not change keeps its entry: a re-list of an unchanged
// directory changes nothing and leaves only garbage that dies young (the
// cache is never held twice). A Snapshot taken meanwhile sees each file
// as read before or during it, as with events.
func (w *watcher) rescan(ctx context.Context) error {
	if err := w.s.check(ctx); err != nil {
		return err
	}
	if !w.watching {
		w.watching = w.fs.Add(w.s.subnets) == nil
	}
	if !w.seeded {
		// The first list starts from what the store's last scan read
		// (Acquire's, in a daemon): a file that has not changed since
		// is not read again, as in every later list.
		w.seeded = true
		warm, _ := w.s.warm.Take()
		w.mu.Lock()
		for name, wl := range warm {
			if _, had := w.cache[name]; !had {
				l := wl.lease
				w.put(name, &l)
				w.setID(name, wl.id)
			}
		}
		w.mu.Unlock()
	}
	now := w.s.now()
	bad := map[string]string{}
	seen := 0 // names of the cache found in the directory
	err := readDir(w.s.subnets, func(de fs.DirEntry) {
		name := de.Name()
		w.mu.Lock()
		old, had := w.cache[name]
		id := w.ids[name]
		w.mu.Unlock()
		if had && id != (fileID{}) {
			// A file that did not change is not read again.
			if fi, err := de.Info(); err == nil {
				if l, why, ok := w.s.again(name, *old, id, fi, now); ok {
					if why != "" {
						bad[name] = why
					}
					w.mu.Lock()
					seen++
					if l != *old {
						w.put(name, &l)
					}
					w.mu.Unlock()
					return
				}
			}
		}
		it, ok := w.s.scanOne(de, now)
		if ok && it.why != "" {
			bad[name] = it.why
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if had {
			seen++
		}
		switch l := it.lease(); {
		case !ok && had:
			w.drop(name)
		case !ok:
		case !had || *old != l:
			w.put(name, &l)
		}
		if ok {
			w.setID(name, it.id)
		}
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", w.s.subnets, err)
	}
	var names []string // of the cache, when some are gone (only this goroutine changes them)
	w.mu.Lock()
	if seen < len(w.cache) {
		names = slices.Collect(maps.Keys(w.cache))
	}
	w.mu.Unlock()
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(w.s.subnets, name)); errors.Is(err, fs.ErrNotExist) {
			w.mu.Lock()
			w.drop(name)
			w.mu.Unlock()
		}
	}
	w.s.warnOnce(bad)
	w.armExpiry()
	return nil
}

// put sets name's lease in the cache (w.mu held).
func (w *watcher) put(name string, l *leases.Lease) {
	if w.cache == nil {
		w.cache = map[string]*leases.Lease{}
	}
	w.cache[name] = l
	w.gen++
}

// drop takes name out of the cache (w.mu held).
func (w *watcher) drop(name string) {
	delete(w.ids, name)
	if _, ok := w.cache[name]; ok {
		delete(w.cache, name)
		w.gen++
	}
}

// setID notes the identity of the file name's cached lease was read from
// (zero: not a lease file read whole, so always read again) (w.mu held).
func (w *watcher) setID(name string, id fileID) {
	if id == (fileID{}) {
		delete(w.ids, name)
		return
	}
	if w.ids == nil {
		w.ids = map[string]fileID{}
	}
	w.ids[name] = id
}

// readDir calls f for each entry of dir, read in batches; a missing dir
// has none.
func readDir(dir string, f func(fs.DirEntry)) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		des, err := d.ReadDir(256)
		for _, de := range des {
			f(de)
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
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
	l := it.lease()
	w.mu.Lock()
	switch old, had := w.cache[name]; {
	case ok && (!had || *old != l):
		w.put(name, &l)
	case !ok:
		w.drop(name)
	}
	if ok {
		w.setID(name, it.id)
	}
	w.mu.Unlock()
	w.s.warnName(name, it.why)
	w.armExpiry()
	return true
}

// Snapshot is the cache as List would list it now. While the cache and
// what is expired stay the same it returns the same slice (Pipe keeps
// the last one sent, and compares): callers must not change it.
func (w *watcher) Snapshot() []leases.Lease {
	now := w.s.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if l := w.last; l.ls != nil && l.gen == w.gen && !now.Before(l.at) && now.Before(l.until) {
		return l.ls
	}
	ls := make([]leases.Lease, 0, len(w.cache))
	until := farFuture
	var unlisted []string
	for name, l := range w.cache {
		if !l.Expiration.After(now) {
			unlisted = append(unlisted, name)
			continue
		}
		ls = append(ls, *l)
		if l.Expiration.Before(until) {
			until = l.Expiration
		}
	}
	slices.SortFunc(ls, leases.Compare)
	// The cache's listed leases are now ls's, and none holds an older
	// snapshot in memory.
	for i := range ls {
		w.cache[ls[i].Key] = &ls[i]
	}
	for _, name := range unlisted {
		l := *w.cache[name]
		w.cache[name] = &l
	}
	w.last = snapshot{ls: ls, gen: w.gen, at: now, until: until}
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
	for _, l := range w.cache {
		if l.Expiration.After(now) && l.Expiration.Before(horizon) &&
			(next.IsZero() || l.Expiration.Before(next)) {
			next = l.Expiration
		}
	}
	w.mu.Unlock()
	if !next.IsZero() {
		w.expiry.Reset(next.Sub(now) + time.Millisecond)
	}
}
