// Package file is flexhook's embedded lease store: a directory shared by
// every flexhook process on one machine (or on a shared file system that
// honours flock), laid out like flannel's etcd keys:
//
//	<dir>/config                  the net-conf JSON (optional)
//	<dir>/subnets/10.50.3.0-24    one file per lease, "&fd00:0:0:3::-64" appended for dual stack
//	<dir>/.lock                   the allocation lock
//
// A lease file holds exactly the bytes flanneld would store in etcd
// (leases.MarshalAttrs) and its modification time is the lease's
// expiration, so any reader knows when a lease expires without knowing the
// writer's TTL. Expired leases count as gone. Every write is atomic (a
// temporary file in the same directory, fsync, rename); allocation runs
// under an exclusive flock so that several processes never take the same
// subnet. Files in subnets/ are other nodes' data and are not trusted: a
// name that is not a lease key, a symlink, an oversized or unparsable file
// is skipped with a warning, never followed and never fatal.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/flexhook/flexhook/internal/atomicfile"
	"github.com/flexhook/flexhook/leases"
)

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("file store is closed")

// DefaultResync is how often Watch re-lists the directory even without
// file system events.
const DefaultResync = 5 * time.Second

// errNotLease marks a file under a lease's name that is not a lease.
var errNotLease = errors.New("not a lease")

// maxValue bounds the size of a lease file read from disk.
const maxValue = 64 << 10

// tempPrefix starts the name of every temporary file; names starting with
// a dot are never lease keys.
const tempPrefix = ".tmp-"

// staleTemp is the age after which a temporary file left by a crashed
// writer is removed.
const staleTemp = 10 * time.Minute

var (
	_ leases.Store       = (*Store)(nil)
	_ leases.ConfigStore = (*Store)(nil)
)

// Store is a lease store in a directory. It is safe for concurrent use by
// several goroutines and several processes.
type Store struct {
	dir     string
	subnets string
	ttl     time.Duration
	resync  time.Duration
	log     *slog.Logger

	rndMu sync.Mutex
	rnd   *rand.Rand // nil: math/rand/v2's global source

	warnMu sync.Mutex
	warned map[string]string // file name → last warning, to warn once

	clock storeClock

	// warm is what the last scan read, by file name, kept until the
	// first Watch lists the directory: that list then reads only the
	// files changed since (a daemon's Acquire has just read them all).
	warm leases.Warm[map[string]warmLease]

	closeOnce sync.Once
	done      chan struct{}
}

// DefaultExpiryGrace is how long an expired lease keeps its file and its
// subnet before Acquire deletes it (it is gone for the hooks at once): a
// node that starts after a forward step of the wall clock must not delete
// leases of live nodes that are about to renew.
const DefaultExpiryGrace = 6 * time.Hour

// Option configures a Store.
type Option func(*Store) error

// TTL sets how long a lease lives without renewal (default
// leases.DefaultTTL).
func TTL(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("ttl %s: must be positive", d)
		}
		s.ttl = d
		return nil
	}
}

// Resync sets how often Watch re-lists the directory to survive
// dropped events and to notice expiry (default DefaultResync).
func Resync(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("resync %s: must be positive", d)
		}
		s.resync = d
		return nil
	}
}

// Logger sets the logger (nil or not given: slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(s *Store) error {
		if l == nil {
			l = slog.Default()
		}
		s.log = l
		return nil
	}
}

// Clock sets the store's clocks, for tests: wall is the wall clock
// (time.Now) and mono the monotonic time since New. Expirations are
// judged on wall-at-New plus mono, so a step of wall alone changes none.
func Clock(wall func() time.Time, mono func() time.Duration) Option {
	return func(s *Store) error {
		if wall == nil || mono == nil {
			return errors.New("clock: nil function")
		}
		s.clock.wall, s.clock.mono = wall, mono
		return nil
	}
}

// ExpiryGrace sets how long an expired lease keeps its file and its
// subnet before Acquire deletes it (default DefaultExpiryGrace).
func ExpiryGrace(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return fmt.Errorf("expiry grace %s: must not be negative", d)
		}
		s.clock.grace = d
		return nil
	}
}

// Rand sets the source of random subnet choices, for tests.
func Rand(r *rand.Rand) Option {
	return func(s *Store) error {
		s.rnd = r
		return nil
	}
}

// New opens the store in dir, creating dir and dir/subnets (mode 0700)
// when missing.
func New(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("file store: directory is empty")
	}
	s := &Store{
		dir:     dir,
		subnets: filepath.Join(dir, "subnets"),
		ttl:     leases.DefaultTTL,
		resync:  DefaultResync,
		log:     slog.Default(),
		warned:  map[string]string{},
		done:    make(chan struct{}),
		clock:   storeClock{wall: time.Now, grace: DefaultExpiryGrace, far: map[string]farSeen{}},
	}
	began := time.Now()
	s.clock.mono = func() time.Duration { return time.Since(began) } // monotonic
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, fmt.Errorf("file store: %w", err)
		}
	}
	s.clock.start = s.clock.wall().Add(-s.clock.mono())
	if err := s.mkdirs(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) mkdirs() error {
	if err := os.MkdirAll(s.subnets, 0o700); err != nil {
		return fmt.Errorf("file store: %w", err)
	}
	fi, err := os.Lstat(s.subnets)
	if err != nil {
		return fmt.Errorf("file store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("file store: %s is not a directory", s.subnets)
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close makes every later call fail with ErrClosed and stops running
// watches. It never fails.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

func (s *Store) check(ctx context.Context) error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	return ctx.Err()
}

// Config returns the content of <dir>/config, or an error wrapping
// leases.ErrNotFound when there is none.
func (s *Store) Config(ctx context.Context) ([]byte, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	p := filepath.Join(s.dir, "config")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config %s: %w", p, leases.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// PutConfig atomically replaces <dir>/config with b (mode 0600).
func (s *Store) PutConfig(ctx context.Context, b []byte) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := writeAtomic(s.dir, "config", b, time.Time{}); err != nil {
		return fmt.Errorf("put config: %w", err)
	}
	return nil
}

// List returns every unexpired lease, sorted by subnet: the files that
// hold a lease, and (with Invalid set) those under a lease's name that
// do not, and files whose name is not a canonical lease key. A file's
// mtime is its expiration whatever it holds; what is not a regular file
// never expires.
func (s *Store) List(ctx context.Context) ([]leases.Lease, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	es, bad, err := s.scan()
	if err != nil {
		return nil, err
	}
	now := s.now()
	ls := make([]leases.Lease, 0, len(es)+len(bad))
	for _, e := range es {
		if e.live(now) {
			ls = append(ls, e.lease)
		}
	}
	for _, l := range bad {
		if l.Expiration.After(now) {
			ls = append(ls, l)
		}
	}
	slices.SortFunc(ls, leases.Compare)
	return ls, nil
}

// Acquire returns this node's lease, identified by attrs.PublicIP (or
// attrs.PublicIPv6 when PublicIP is unset). Under the lock it takes back
// the lease carrying that address, even an expired one, as long as it still
// fits r and no other live lease overlaps it, rewriting its attrs and
// expiration. Otherwise it deletes expired lease files (and any other lease
// of this node) and creates a lease on a random free subnet of r. A full
// range gives an error wrapping leases.ErrNoFreeSubnet.
func (s *Store) Acquire(ctx context.Context, r leases.Range, attrs leases.Attrs) (leases.Lease, error) {
	if err := r.Validate(); err != nil {
		return leases.Lease{}, fmt.Errorf("acquire: %w", err)
	}
	id := attrs.Owner()
	if !id.IsValid() {
		return leases.Lease{}, errors.New("acquire: attrs have neither PublicIP nor PublicIPv6")
	}
	if err := s.check(ctx); err != nil {
		return leases.Lease{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("acquire: %w", err)
	}
	defer unlock()
	if err := s.mkdirs(); err != nil { // the directory may have been wiped
		return leases.Lease{}, err
	}
	es, _, err := s.scan()
	if err != nil {
		return leases.Lease{}, fmt.Errorf("acquire: %w", err)
	}
	now := s.now()

	var parsed []leases.Lease
	for _, e := range es {
		if e.ok {
			parsed = append(parsed, e.lease)
		}
	}
	own, haveOwn := leases.FindByPublicIP(parsed, id)
	if haveOwn && r.Fits(own.Subnet, own.IPv6Subnet) && !overlapsLive(own, es, now) {
		l, err := s.writeLease(leases.Lease{Subnet: own.Subnet, IPv6Subnet: own.IPv6Subnet, Attrs: attrs})
		if err != nil {
			return leases.Lease{}, fmt.Errorf("acquire: %w", err)
		}
		s.log.Info("reusing lease", "subnet", l.Subnet, "ipv6_subnet", ipv6Attr(l.IPv6Subnet), "public_ip", id)
		return l, nil
	}
	if haveOwn {
		s.log.Info("lease of this node does not fit the range or overlaps another, replacing it",
			"subnet", own.Subnet, "ipv6_subnet", ipv6Attr(own.IPv6Subnet), "public_ip", id, "range", r)
	}

	v4, v6, err := s.pickNew(r, es, id, now)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("acquire: %w", err)
	}
	l, err := s.writeLease(leases.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs})
	if err != nil {
		return leases.Lease{}, fmt.Errorf("acquire: %w", err)
	}
	s.log.Info("acquired new lease", "subnet", l.Subnet, "ipv6_subnet", ipv6Attr(l.IPv6Subnet), "public_ip", id)
	return l, nil
}

// pickNew chooses a free subnet for a new lease of node id, under the
// allocation lock. Live leases keep their subnets (unparsable live files
// too); leases expired less than the grace ago keep theirs unless the range
// has no other free subnet; older ones, and this node's others, are
// deleted.
func (s *Store) pickNew(r leases.Range, es []entry, id netip.Addr, now time.Time) (v4, v6 netip.Prefix, err error) {
	var live, recent []leases.Lease
	var recentEntries []entry
	for _, e := range es {
		mine := e.ok && e.lease.Attrs.Owner() == id
		switch {
		case e.live(now) && !mine:
			live = append(live, e.lease)
			continue
		case !mine && e.lease.Expiration.Add(s.clock.grace).After(now):
			recent = append(recent, e.lease)
			recentEntries = append(recentEntries, e)
			continue
		}
		if err := s.removeEntry(e, now, mine); err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
	}
	s.removeStaleTemps(time.Now())

	s.rndMu.Lock()
	v4, v6, err = leases.PickFree(r, append(live, recent...), s.rnd)
	if errors.Is(err, leases.ErrNoFreeSubnet) && len(recent) > 0 {
		v4, v6, err = leases.PickFree(r, live, s.rnd)
		if err == nil {
			for _, e := range recentEntries {
				if e.lease.Subnet == v4 || v6.IsValid() && e.lease.IPv6Subnet == v6 {
					if rerr := s.removeEntry(e, now, false); rerr != nil {
						err = rerr
					}
				}
			}
		}
	}
	s.rndMu.Unlock()
	return v4, v6, err
}

// Renew rewrites l's attrs and moves its expiration to now + TTL. It fails
// with an error wrapping leases.ErrLeaseGone when the lease file is gone or
// now belongs to another node.
func (s *Store) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	if err := s.check(ctx); err != nil {
		return leases.Lease{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("renew %s: %w", l.Subnet, err)
	}
	defer unlock()
	name := leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	e, _, err := s.read(name, l.Subnet, l.IPv6Subnet, s.now())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return leases.Lease{}, fmt.Errorf("renew %s: %w", name, leases.ErrLeaseGone)
	case errors.Is(err, errNotLease):
		return leases.Lease{}, fmt.Errorf("renew %s: %w: %w", name, err, leases.ErrLeaseGone)
	case err != nil:
		return leases.Lease{}, fmt.Errorf("renew %s: %w", name, err)
	case !e.ok:
		return leases.Lease{}, fmt.Errorf("renew %s: unreadable lease (%w): %w", name, e.err, leases.ErrLeaseGone)
	}
	if got, want := e.lease.Attrs.Owner(), l.Attrs.Owner(); got != want {
		return leases.Lease{}, fmt.Errorf("renew %s: lease now carries PublicIP %s, not %s: %w", name, got, want, leases.ErrLeaseGone)
	}
	nl, err := s.writeLease(leases.Lease{Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet, Attrs: l.Attrs})
	if err != nil {
		return leases.Lease{}, fmt.Errorf("renew %s: %w", name, err)
	}
	return nl, nil
}

// Remove deletes the lease (expired or not) whose IPv4 subnet is subnet,
// or fails with an error wrapping leases.ErrNotFound.
func (s *Store) Remove(ctx context.Context, subnet netip.Prefix) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return fmt.Errorf("remove %s: %w", subnet, err)
	}
	defer unlock()
	des, err := os.ReadDir(s.subnets)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", subnet, err)
	}
	removed := false
	for _, de := range des {
		v4, _, err := leases.ParseSubnetKey(de.Name())
		if err != nil || v4 != subnet.Masked() {
			continue
		}
		if err := os.Remove(filepath.Join(s.subnets, de.Name())); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("remove %s: %w", subnet, err)
		}
		removed = true
	}
	if !removed {
		return fmt.Errorf("remove %s: %w", subnet, leases.ErrNotFound)
	}
	return atomicfile.SyncDir(s.subnets)
}

// removeEntry deletes a lease file Acquire no longer keeps.
func (s *Store) removeEntry(e entry, now time.Time, mine bool) error {
	if err := os.Remove(filepath.Join(s.subnets, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale lease: %w", err)
	}
	s.log.Debug("removed lease", "file", e.name, "expired", !e.live(now), "mine", mine)
	return nil
}

func ipv6Attr(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
