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
	"time"

	"github.com/fsnotify/fsnotify"

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
// time the set of (subnet, attrs) differs from the last one sent. It keeps
// the directory's leases in memory: an fsnotify event in subnets/ re-reads
// the one file it names, events are batched (settleQuiet, settleMax), the
// whole directory is listed again every resync period and after a dropped
// event, and the set is sent again when a lease expires. It returns nil
// when ctx is done and ErrClosed when the store is closed.
func (s *Store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	if err := s.check(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.subnets, err)
	}
	defer fw.Close()
	w := &watcher{s: s, fs: fw, out: out, watching: fw.Add(s.subnets) == nil}
	if !w.watching {
		s.log.Warn("cannot watch lease directory, relying on periodic re-list", "dir", s.subnets)
	}
	w.expiry = time.NewTimer(time.Hour) // next lease expiration
	w.expiry.Stop()
	defer w.expiry.Stop()
	if err := w.rescan(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch: %w", err)
	}
	w.last = nil
	if !w.sendChanged(ctx, true) {
		return s.watchEnd(ctx)
	}

	return w.loop(ctx)
}

// loop takes events, batches them and sends changed sets until Watch
// ends.
func (w *watcher) loop(ctx context.Context) error {
	s, fw := w.s, w.fs
	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var burst <-chan time.Time // settleMax after the first event of a burst
	for {
		send, full := false, false
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return ErrClosed
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch: fsnotify watcher stopped")
			}
			if !w.event(ev) {
				full = true
				break
			}
			quiet.Reset(settleQuiet)
			if burst == nil {
				burst = time.After(settleMax)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch: fsnotify watcher stopped")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Warn("lease directory watch error, re-listing", "error", err)
			}
			full = true
		case <-quiet.C:
			send = true
		case <-burst:
			send = true
		case <-resync.C:
			full = true
		case <-w.expiry.C:
			send = true
		}
		if full {
			if err := w.rescan(ctx); err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrClosed) {
					return s.watchEnd(ctx)
				}
				s.log.Warn("re-listing leases failed, will retry", "error", err)
				continue
			}
			send = true
		}
		if send {
			quiet.Stop()
			burst = nil
			if !w.sendChanged(ctx, false) {
				return s.watchEnd(ctx)
			}
		}
	}
}

// watcher is the state of one Watch call.
type watcher struct {
	s        *Store
	fs       *fsnotify.Watcher
	watching bool // subnets/ is being watched (it may be re-created)
	out      chan<- []leases.Lease
	cache    map[string]item // by file name
	last     []leases.Lease  // what was sent last
	expiry   *time.Timer     // fires at the next lease expiration
}

// rescan reads the whole directory into the cache.
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
	cache := make(map[string]item, len(des))
	bad := map[string]string{}
	for _, de := range des {
		if it, ok := w.s.scanOne(de, now); ok {
			cache[de.Name()] = it
			if it.why != "" {
				bad[de.Name()] = it.why
			}
		}
	}
	w.s.warnOnce(bad)
	w.cache = cache
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
	if !ok {
		delete(w.cache, name)
		w.s.warnName(name, "")
		return true
	}
	w.cache[name] = it
	w.s.warnName(name, it.why)
	return true
}

// snapshot is the cache as List would list it now.
func (w *watcher) snapshot() []leases.Lease {
	now := w.s.now()
	ls := make([]leases.Lease, 0, len(w.cache))
	for _, it := range w.cache {
		if l, ok := it.listed(now); ok {
			ls = append(ls, l)
		}
	}
	slices.SortFunc(ls, leases.Compare)
	return ls
}

// sendChanged sends the snapshot when it differs from the last one sent
// (or always, the first time), and arms the expiry timer. It returns
// false when Watch must end (ctx done, store closed).
func (w *watcher) sendChanged(ctx context.Context, first bool) bool {
	ls := w.snapshot()
	w.s.armExpiry(w.expiry, ls)
	if !first && sameSet(w.last, ls) {
		return true
	}
	if !w.s.send(ctx, w.out, ls) {
		return false
	}
	w.last = ls
	return true
}

func (s *Store) watchEnd(ctx context.Context) error {
	select {
	case <-s.done:
		if ctx.Err() == nil {
			return ErrClosed
		}
	default:
	}
	return nil
}

// send delivers ls unless ctx is done or the store closed first.
func (s *Store) send(ctx context.Context, out chan<- []leases.Lease, ls []leases.Lease) bool {
	select {
	case out <- ls:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// maxExpiryWait bounds the expiry timer; later expirations (a far-future
// mtime, what is not a regular file) are left to the periodic re-list.
const maxExpiryWait = 7 * 24 * time.Hour

// armExpiry sets t to fire just after the earliest expiration in ls.
func (s *Store) armExpiry(t *time.Timer, ls []leases.Lease) {
	t.Stop()
	var next time.Time
	now := s.now()
	horizon := now.Add(maxExpiryWait)
	for _, l := range ls {
		if !l.Expiration.IsZero() && l.Expiration.Before(horizon) && (next.IsZero() || l.Expiration.Before(next)) {
			next = l.Expiration
		}
	}
	if !next.IsZero() {
		t.Reset(next.Sub(now) + time.Millisecond)
	}
}

// sameSet compares two sorted lease lists by subnet and attrs, ignoring
// expirations (a renewal is not a change).
func sameSet(a, b []leases.Lease) bool {
	return slices.EqualFunc(a, b, func(x, y leases.Lease) bool {
		return x.Key == y.Key && x.Subnet == y.Subnet && x.IPv6Subnet == y.IPv6Subnet && x.Attrs == y.Attrs &&
			x.Invalid == y.Invalid && x.Problem == y.Problem
	})
}
