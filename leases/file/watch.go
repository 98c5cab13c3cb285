package file

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flexhook/flexhook/leases"
)

// debounce is how long Watch waits after a file system event for more
// before it re-lists, so that one write (create, rename) sends one update.
const debounce = 20 * time.Millisecond

// Watch sends the unexpired leases on out: once at the start, then each
// time the set of (subnet, attrs) differs from the last one sent. It
// re-lists on fsnotify events in subnets/ (debounced), every resync period
// (dropped events), and when the next lease expires. It returns nil when
// ctx is done and ErrClosed when the store is closed.
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
	ls, err := s.List(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch: %w", err)
	}
	if !s.send(ctx, out, ls) {
		return s.watchEnd(ctx)
	}
	w.last = ls

	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	settle := time.NewTimer(time.Hour) // debounce
	settle.Stop()
	defer settle.Stop()
	pending := false
	w.expiry = time.NewTimer(time.Hour) // next lease expiration
	defer w.expiry.Stop()
	s.armExpiry(w.expiry, w.last)

	for {
		relist := false
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return ErrClosed
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch: fsnotify watcher stopped")
			}
			if w.event(ev) && !pending {
				pending = true
				settle.Reset(debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch: fsnotify watcher stopped")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Warn("lease directory watch error, re-listing", "error", err)
			}
			relist = true
		case <-settle.C:
			pending = false
			relist = true
		case <-resync.C:
			relist = true
		case <-w.expiry.C:
			relist = true
		}
		if relist && !w.relist(ctx) {
			return s.watchEnd(ctx)
		}
	}
}

// watcher is the state of one Watch call.
type watcher struct {
	s        *Store
	fs       *fsnotify.Watcher
	watching bool // subnets/ is being watched (it may be re-created)
	out      chan<- []leases.Lease
	last     []leases.Lease // what was sent last
	expiry   *time.Timer    // fires at the next lease expiration
}

// event takes one fsnotify event and reports whether it may change the
// leases (temporary files do not).
func (w *watcher) event(ev fsnotify.Event) bool {
	if filepath.Clean(ev.Name) == filepath.Clean(w.s.subnets) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		w.watching = false // the directory itself went away
	}
	return !strings.HasPrefix(filepath.Base(ev.Name), ".")
}

// relist lists the leases and sends them when they differ from the last
// ones sent. It returns false when Watch must end (ctx done, store
// closed); a failed listing is logged and left to the next re-list.
func (w *watcher) relist(ctx context.Context) bool {
	if !w.watching {
		w.watching = w.fs.Add(w.s.subnets) == nil
	}
	ls, err := w.s.List(ctx)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			w.s.log.Warn("re-listing leases failed, will retry", "error", err)
		}
		return ctx.Err() == nil
	}
	w.s.armExpiry(w.expiry, ls)
	if sameSet(w.last, ls) {
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
