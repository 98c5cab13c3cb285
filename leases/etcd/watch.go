package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// Watch sends every lease (sorted by subnet, Expiration zero) on out:
// once at the start and after every watch response. When the watch is
// compacted or breaks, or etcd is unreachable, it logs, backs off (up to
// 5s), lists again and sends that snapshot. It returns nil when ctx is
// done and an error only when the store was closed.
func (s *Store) Watch(ctx context.Context, out chan<- []leases.Lease) error {
	if st, ok := s.warm.Take(); ok {
		// Acquire has just listed: send that, and follow from its
		// revision. (Waiting for the watch's first answer instead would
		// wait for etcd to catch a watch up from a past revision, which
		// it does every 100 ms.) A compacted revision makes the watch
		// list again, as after any break.
		return s.watch(ctx, out, st, true)
	}
	return s.watch(ctx, out, nil, false)
}

// keepWarm keeps the list es at revision rev, with the value Acquire
// then wrote at key, for the first Watch: what a list right after
// Acquire would show, unless someone else wrote since (the watch from
// rev brings that).
func (s *Store) keepWarm(es []entry, rev int64, key string, val []byte) {
	if !s.warm.Wanted() {
		return
	}
	st := &watchState{rev: rev, cache: make(map[string]leases.Lease, len(es)+1)}
	for _, e := range es {
		st.cache[e.key] = e.lease
	}
	st.cache[key] = leases.Decode(strings.TrimPrefix(key, s.subnetsDir), val)
	s.warm.Keep(st)
}

// watchState is what Watch knows: the leases by key at revision rev.
type watchState struct {
	rev   int64
	cache map[string]leases.Lease
}

func (st *watchState) snapshot() []leases.Lease {
	ls := make([]leases.Lease, 0, len(st.cache))
	for _, l := range st.cache {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, leases.Compare)
	return ls
}

// watch runs Watch: the shared leases.Pipe over a feed of list + watch
// from the listed revision; a non-nil st (Acquire's list, or a test's)
// resumes from that state without listing first, and announce sends it
// before the watch's first answer.
func (s *Store) watch(ctx context.Context, out chan<- []leases.Lease, st *watchState, announce bool) error {
	p := leases.Pipe{
		Backoff: retry.Backoff{Initial: minBackoff, Max: maxBackoff},
		OnRetry: func(err error, wait time.Duration) {
			var we *watchError
			if errors.As(err, &we) {
				s.log.Warn(we.msg, "error", we.err, "retry_in", wait)
			}
		},
	}
	return p.Run(ctx, out, &feed{s: s, st: st, resume: st != nil, announce: announce})
}

// feed is the etcd store's list/notify half of Watch: a list, then a
// watch from the listed revision, applied to st.
type feed struct {
	s        *Store
	mu       sync.Mutex
	st       *watchState // the view; kept after a break until a new list replaces it
	resume   bool        // follow st without listing first (once)
	announce bool        // and send it first
}

// Snapshot is what the feed knows now.
func (f *feed) Snapshot() []leases.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		return []leases.Lease{} // never asked before the first list
	}
	return f.st.snapshot()
}

// Follow lists (unless resuming), then follows the watch. A broken list
// or watch is an error Pipe retries after a backoff (restarted when the
// watch had worked); a closed client ends Watch.
func (f *feed) Follow(ctx context.Context, changed func()) error {
	s := f.s
	f.mu.Lock()
	resume, announce := f.resume, f.announce
	f.resume, f.announce = false, false // a Follow after a break lists anew
	f.mu.Unlock()
	if announce {
		changed()
	}
	if !resume {
		lctx, cancel := context.WithTimeout(ctx, s.listTimeout)
		es, rev, err := s.list(lctx)
		cancel()
		if err != nil {
			if s.cli.Ctx().Err() != nil && ctx.Err() == nil {
				return retry.Permanent(errStoreClosed)
			}
			return &watchError{"etcd: cannot list leases, retrying", err}
		}
		st := &watchState{rev: rev, cache: make(map[string]leases.Lease, len(es))}
		for _, e := range es {
			st.cache[e.key] = e.lease
		}
		f.mu.Lock()
		f.st = st
		f.mu.Unlock()
		changed()
	}
	healthy, err := f.follow(ctx, changed)
	switch {
	case ctx.Err() != nil:
		return nil
	case s.cli.Ctx().Err() != nil:
		return retry.Permanent(errStoreClosed)
	}
	if err == nil {
		err = errWatchClosed
	}
	err = &watchError{"etcd: lease watch interrupted, listing again", err}
	if healthy {
		return retry.Progress(err)
	}
	return err
}

// errStoreClosed ends Watch when the client was closed under it.
var errStoreClosed = errors.New("etcd: watch: store closed")

// watchError is a failed list or watch that Watch retries; msg is what it
// logs.
type watchError struct {
	msg string
	err error
}

func (e *watchError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *watchError) Unwrap() error { return e.err }

// errWatchClosed reports a watch channel closed without an error.
var errWatchClosed = errors.New("watch channel closed")

// follow watches from rev+1, applies each response to st and sends a
// snapshot after it. It returns when the watch ends (never with a nil
// error unless ctx is done) and whether it got any good response.
func (f *feed) follow(ctx context.Context, changed func()) (healthy bool, err error) {
	s := f.s
	f.mu.Lock()
	rev := f.st.rev
	f.mu.Unlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.subnetsDir, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	for {
		var (
			resp clientv3.WatchResponse
			ok   bool
		)
		select {
		case <-ctx.Done():
			return healthy, nil
		case resp, ok = <-wch:
		}
		if !ok {
			return healthy, errWatchClosed
		}
		if err := resp.Err(); err != nil {
			if resp.CompactRevision != 0 {
				return healthy, fmt.Errorf("watch from revision %d: compacted up to %d: %w", rev+1, resp.CompactRevision, err)
			}
			return healthy, fmt.Errorf("watch from revision %d: %w", rev+1, err)
		}
		healthy = true
		if resp.IsProgressNotify() || len(resp.Events) == 0 {
			continue
		}
		f.mu.Lock()
		st := f.st
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.DELETE:
				delete(st.cache, key)
			case mvccpb.PUT:
				st.cache[key] = leases.Decode(strings.TrimPrefix(key, s.subnetsDir), ev.Kv.Value)
			}
		}
		// The last event's revision, not the header's: a batch may stop
		// short of the header revision while catching up.
		st.rev = max(st.rev, resp.Events[len(resp.Events)-1].Kv.ModRevision)
		rev = st.rev
		f.mu.Unlock()
		changed()
	}
}
