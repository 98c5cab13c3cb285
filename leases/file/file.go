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
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
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

	closeOnce sync.Once
	done      chan struct{}
}

// storeClock is the store's clock: the wall clock as it was at New,
// moved on by the monotonic clock, so that a step of the wall clock (NTP,
// an operator) neither expires every lease at once nor keeps one forever.
type storeClock struct {
	wall   func() time.Time
	mono   func() time.Duration // time since New
	start  time.Time
	grace  time.Duration
	clkMu  sync.Mutex
	far    map[string]farSeen // files whose mtime was more than a TTL ahead
	stepAt time.Duration      // the wall-clock offset last reported
}

// farSeen is a lease file whose mtime lies more than a TTL in the future:
// its expiration counts from when the store first saw that mtime.
type farSeen struct {
	mtime time.Time
	first time.Time
}

// DefaultExpiryGrace is how long an expired lease keeps its file and its
// subnet before Acquire deletes it (it is gone for the hooks at once): a
// node that starts after a forward step of the wall clock must not delete
// leases of live nodes that are about to renew.
const DefaultExpiryGrace = 6 * time.Hour

// Option configures a Store.
type Option func(*Store) error

// WithTTL sets how long a lease lives without renewal (default
// leases.DefaultTTL).
func WithTTL(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("ttl %s: must be positive", d)
		}
		s.ttl = d
		return nil
	}
}

// WithResync sets how often Watch re-lists the directory to survive
// dropped events and to notice expiry (default DefaultResync).
func WithResync(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("resync %s: must be positive", d)
		}
		s.resync = d
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) error {
		if l == nil {
			return errors.New("logger: must not be nil")
		}
		s.log = l
		return nil
	}
}

// WithClock sets the store's clocks, for tests: wall is the wall clock
// (time.Now) and mono the monotonic time since New. Expirations are
// judged on wall-at-New plus mono, so a step of wall alone changes none.
func WithClock(wall func() time.Time, mono func() time.Duration) Option {
	return func(s *Store) error {
		if wall == nil || mono == nil {
			return errors.New("clock: nil function")
		}
		s.clock.wall, s.clock.mono = wall, mono
		return nil
	}
}

// WithExpiryGrace sets how long an expired lease keeps its file and its
// subnet before Acquire deletes it (default DefaultExpiryGrace).
func WithExpiryGrace(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return fmt.Errorf("expiry grace %s: must not be negative", d)
		}
		s.clock.grace = d
		return nil
	}
}

// WithRand sets the source of random subnet choices, for tests.
func WithRand(r *rand.Rand) Option {
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
	e, err := s.read(name, l.Subnet, l.IPv6Subnet, s.now())
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
	return syncDir(s.subnets)
}

// removeEntry deletes a lease file Acquire no longer keeps.
func (s *Store) removeEntry(e entry, now time.Time, mine bool) error {
	if err := os.Remove(filepath.Join(s.subnets, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale lease: %w", err)
	}
	s.log.Debug("removed lease", "file", e.name, "expired", !e.live(now), "mine", mine)
	return nil
}

// now is the store's clock: the wall clock at New plus the monotonic time
// since. It notes (once per change) when the wall clock has stepped away
// from it.
func (s *Store) now() time.Time {
	now := s.clock.start.Add(s.clock.mono())
	off := s.clock.wall().Sub(now).Round(time.Second)
	s.clock.clkMu.Lock()
	report := (off > time.Minute || off < -time.Minute) && (off-s.clock.stepAt > time.Minute || s.clock.stepAt-off > time.Minute)
	if report {
		s.clock.stepAt = off
	}
	s.clock.clkMu.Unlock()
	if report {
		s.log.Warn("the wall clock stepped; lease expirations keep to the clock as it ran since the start",
			"offset", off.String())
	}
	return now
}

// expiration is a lease file's expiration: its mtime, unless that lies
// more than a TTL ahead (a writer's clock far off, or a hostile file),
// then a TTL after the store first saw that mtime.
func (s *Store) expiration(name string, mtime, now time.Time) time.Time {
	s.clock.clkMu.Lock()
	defer s.clock.clkMu.Unlock()
	if !mtime.After(now.Add(s.ttl + time.Minute)) {
		delete(s.clock.far, name)
		return mtime
	}
	f, ok := s.clock.far[name]
	if !ok || !f.mtime.Equal(mtime) {
		f = farSeen{mtime: mtime, first: now}
		s.clock.far[name] = f
	}
	return f.first.Add(s.ttl)
}

func ipv6Attr(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// entry is one lease file as read from disk.
type entry struct {
	name    string
	lease   leases.Lease // Key, Subnet, IPv6Subnet and Expiration always; Attrs when ok, Invalid otherwise
	ok      bool         // the content parsed
	err     error        // why it did not
	foreign bool         // not a regular file: taken for good, never touched
}

func (e entry) live(now time.Time) bool { return e.foreign || e.lease.Expiration.After(now) }

// overlapsLive reports whether a live lease other than l overlaps it.
// A wider lease does not count, as in leases.PickFree: a hostile
// 0.0.0.0-0 must not evict every node.
func overlapsLive(l leases.Lease, es []entry, now time.Time) bool {
	self := leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	for _, e := range es {
		if e.name == self || !e.live(now) {
			continue
		}
		if e.lease.Subnet.Bits() >= l.Subnet.Bits() && e.lease.Subnet.Overlaps(l.Subnet) ||
			l.IPv6Subnet.IsValid() && e.lease.IPv6Subnet.Bits() >= l.IPv6Subnet.Bits() && e.lease.IPv6Subnet.Overlaps(l.IPv6Subnet) {
			return true
		}
	}
	return false
}

// scan reads every lease file, expired or not, and returns them with the
// files whose name is not a canonical lease key (as leases with Invalid
// set and the file's mtime as expiration). Both kinds are logged at debug
// level once per file (the engine's admission warns about what it
// refuses); a missing subnets directory is an empty store.
func (s *Store) scan() ([]entry, []leases.Lease, error) {
	des, err := os.ReadDir(s.subnets)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", s.subnets, err)
	}
	bad := map[string]string{}
	var badKeys []leases.Lease
	es := make([]entry, 0, len(des))
	now := s.now()
	for _, de := range des {
		it, ok := s.scanOne(de, now)
		if !ok {
			continue
		}
		if it.why != "" {
			bad[it.name()] = it.why
		}
		if it.badKey != nil {
			badKeys = append(badKeys, *it.badKey)
		} else {
			es = append(es, it.e)
		}
	}
	s.warnOnce(bad)
	return es, badKeys, nil
}

// item is what one name in subnets/ lists as: a lease file's entry (or a
// foreign one's), or a name that is no lease key; why is its problem.
type item struct {
	e      entry
	badKey *leases.Lease
	why    string
}

func (it item) name() string {
	if it.badKey != nil {
		return it.badKey.Key
	}
	return it.e.name
}

// listed returns the lease it lists as at now, if any: an unexpired one
// (a foreign file's always).
func (it item) listed(now time.Time) (leases.Lease, bool) {
	if it.badKey != nil {
		return *it.badKey, it.badKey.Expiration.After(now)
	}
	return it.e.lease, it.e.live(now)
}

// scanOne reads one directory entry of subnets/; ok is false for a write
// in flight (a dot name) and a file removed meanwhile.
func (s *Store) scanOne(de fs.DirEntry, now time.Time) (it item, ok bool) {
	name := de.Name()
	if strings.HasPrefix(name, ".") {
		return it, false // a write in flight
	}
	probe := leases.DecodeKey(name)
	if probe.Invalid != "" {
		fi, err := de.Info()
		if err != nil {
			return it, false
		}
		probe.Key = name
		probe.Expiration = s.expiration(name, fi.ModTime(), now)
		if !fi.Mode().IsRegular() {
			probe.Expiration = farFuture
		}
		return item{badKey: &probe, why: "not a lease: " + probe.Problem}, true
	}
	v4, v6 := probe.Subnet, probe.IPv6Subnet
	// Something that is not a regular file under a lease's name keeps
	// its subnet (never clobbered, never deleted) and is listed as
	// invalid.
	foreign := func(why string) item {
		return item{why: why, e: entry{name: name, foreign: true, err: errors.New(why), lease: leases.Lease{
			Key: name, Subnet: v4, IPv6Subnet: v6, Expiration: farFuture,
			Invalid: leases.ReasonBadValue, Problem: why}}}
	}
	if !de.Type().IsRegular() {
		return foreign("not a lease: not a regular file (" + de.Type().String() + ")"), true
	}
	e, err := s.read(name, v4, v6, now)
	if errors.Is(err, fs.ErrNotExist) {
		return it, false // removed meanwhile
	}
	if err != nil {
		return foreign(err.Error()), true
	}
	it = item{e: e}
	if !e.ok {
		it.why = "unreadable lease: " + e.err.Error()
	}
	return it, true
}

// scanName is scanOne for the name an event reported; ok is false when
// it is gone.
func (s *Store) scanName(name string, now time.Time) (item, bool) {
	fi, err := os.Lstat(filepath.Join(s.subnets, name))
	if err != nil {
		return item{}, false
	}
	return s.scanOne(fs.FileInfoToDirEntry(fi), now)
}

// farFuture is the expiration listed for what is not a regular file.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// read reads one lease file without following symlinks. A content that
// does not parse gives an entry with ok=false (it still holds its subnet
// until it expires); other failures are errors.
func (s *Store) read(name string, v4, v6 netip.Prefix, now time.Time) (entry, error) {
	f, err := os.OpenFile(filepath.Join(s.subnets, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return entry{}, fmt.Errorf("%w: a symlink", errNotLease)
		}
		return entry{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return entry{}, fmt.Errorf("%w: not a regular file (%s)", errNotLease, fi.Mode().Type())
	}
	e := entry{name: name}
	b, err := io.ReadAll(io.LimitReader(f, maxValue+1))
	switch {
	case err != nil:
		return entry{}, err
	case len(b) > maxValue:
		e.lease = leases.Lease{Key: name, Subnet: v4, IPv6Subnet: v6,
			Invalid: leases.ReasonBadValue, Problem: fmt.Sprintf("larger than %d bytes", maxValue)}
	default:
		e.lease = leases.Decode(name, b)
	}
	e.lease.Expiration = s.expiration(name, fi.ModTime(), now)
	e.ok = e.lease.Invalid == ""
	if !e.ok {
		e.err = errors.New(e.lease.Problem)
	}
	return e, nil
}

// warnOnce logs each bad file once, and again only if its problem changes.
// warnName is warnOnce for one name (why "" when it is fine or gone).
func (s *Store) warnName(name, why string) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if why != "" && s.warned[name] != why {
		s.log.Debug("file in lease store is not a lease", "dir", s.subnets, "file", name, "reason", why)
	}
	if s.warned == nil {
		s.warned = map[string]string{}
	}
	if why == "" {
		delete(s.warned, name)
	} else {
		s.warned[name] = why
	}
}

func (s *Store) warnOnce(bad map[string]string) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	for name, msg := range bad {
		if s.warned[name] != msg {
			s.log.Debug("file in lease store is not a lease", "dir", s.subnets, "file", name, "reason", msg)
		}
	}
	s.warned = bad
}

// writeLease writes l with expiration now + TTL and returns it with the
// expiration as stored.
func (s *Store) writeLease(l leases.Lease) (leases.Lease, error) {
	b, err := leases.MarshalAttrs(l.Attrs)
	if err != nil {
		return leases.Lease{}, err
	}
	exp, err := writeAtomic(s.subnets, leases.SubnetKey(l.Subnet, l.IPv6Subnet), b, s.now().Add(s.ttl))
	if err != nil {
		return leases.Lease{}, err
	}
	l.Expiration = exp
	return l, nil
}

// writeAtomic replaces dir/name with data (mode 0600) through a temporary
// file in dir: write, fsync, set the modification time to mtime (unless
// zero), rename, fsync dir. It returns the modification time as stored.
func writeAtomic(dir, name string, data []byte, mtime time.Time) (time.Time, error) {
	f, err := os.CreateTemp(dir, tempPrefix+strconv.FormatInt(time.Now().UnixNano(), 10)+"-*")
	if err != nil {
		return time.Time{}, err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return time.Time{}, err
	}
	if err := f.Sync(); err != nil {
		return time.Time{}, err
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, time.Now(), mtime); err != nil {
			return time.Time{}, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	if err := f.Close(); err != nil {
		return time.Time{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return time.Time{}, err
	}
	ok = true
	return fi.ModTime(), syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps removes temporary files older than staleTemp, left by
// writers that crashed between create and rename. Their age is in their
// name (their modification time may already be a lease expiration).
func (s *Store) removeStaleTemps(now time.Time) {
	des, err := os.ReadDir(s.subnets)
	if err != nil {
		return
	}
	for _, de := range des {
		rest, ok := strings.CutPrefix(de.Name(), tempPrefix)
		if !ok {
			continue
		}
		stamp, _, _ := strings.Cut(rest, "-")
		ns, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || now.Sub(time.Unix(0, ns)) < staleTemp {
			continue
		}
		if err := os.Remove(filepath.Join(s.subnets, de.Name())); err == nil {
			s.log.Info("removed stale temporary file", "file", de.Name())
		}
	}
}

// lock takes the exclusive allocation lock <dir>/.lock, polling with a
// non-blocking flock so that ctx is honoured. The returned func releases it.
func (s *Store) lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil { // it may have been wiped
		return nil, fmt.Errorf("lock: %w", err)
	}
	p := filepath.Join(s.dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	fd := int(f.Fd())
	// The lock is polled, so that ctx and Close can end the wait: 0.5ms
	// doubling to 20ms, with jitter so waiting processes spread out.
	b := retry.Backoff{Initial: 500 * time.Microsecond, Max: 20 * time.Millisecond,
		Jitter: func(d time.Duration) time.Duration { return d + rand.N(d) }}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close ends the wait too; the goroutine ends with lctx
		select {
		case <-s.done:
			cancel()
		case <-lctx.Done():
		}
	}()
	err = retry.Do(lctx, b, func(context.Context) error {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return retry.Permanent(fmt.Errorf("lock %s: %w", p, err))
		}
		return err
	}, nil)
	switch {
	case err == nil:
		return func() {
			_ = syscall.Flock(fd, syscall.LOCK_UN)
			f.Close()
		}, nil
	case ctx.Err() != nil:
		err = fmt.Errorf("lock %s: %w", p, ctx.Err())
	case lctx.Err() != nil:
		err = ErrClosed
	}
	f.Close()
	return nil, err
}
