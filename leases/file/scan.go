package file

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/leases"
)

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
	var warm map[string]warmLease
	if s.warm.Wanted() {
		warm = make(map[string]warmLease, len(des))
	}
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
		if warm != nil && it.id != (fileID{}) {
			warm[it.name()] = warmLease{it.lease(), it.id}
		}
	}
	if warm != nil {
		s.warm.Keep(warm)
	}
	s.warnOnce(bad)
	return es, badKeys, nil
}

// warmLease is a lease file's lease as a scan read it, and the identity
// of the file it was read from.
type warmLease struct {
	lease leases.Lease
	id    fileID
}

// item is what one name in subnets/ lists as: a lease file's entry (or a
// foreign one's), or a name that is no lease key; why is its problem.
type item struct {
	e      entry
	badKey *leases.Lease
	why    string
	id     fileID // of the lease file e was read from (zero otherwise)
}

// fileID tells whether a file may have changed since it was read: any
// write, rename onto it, utimes or chmod changes its ctime, and a lease
// is replaced by a rename (a new inode).
type fileID struct {
	ino, size    int64
	mtime, ctime int64 // ns
}

func idOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// again is the lease cached for name (read from the file with identity
// id) for a re-list that finds the file unchanged (fi is what the
// directory entry says now): the content is not read again, only the
// expiration worked out anew from the mtime; why is the file's problem,
// as scanOne says it. ok is false when the file may have changed.
func (s *Store) again(name string, cached leases.Lease, id fileID, fi fs.FileInfo, now time.Time) (l leases.Lease, why string, ok bool) {
	if id == (fileID{}) || !fi.Mode().IsRegular() || idOf(fi) != id {
		return l, "", false
	}
	l = cached
	l.Expiration = s.expiration(name, fi.ModTime(), now)
	if l.Invalid != "" {
		why = "unreadable lease: " + l.Problem
	}
	return l, why, true
}

func (it item) name() string {
	if it.badKey != nil {
		return it.badKey.Key
	}
	return it.e.name
}

// lease is the lease it lists as: a bad key's, or the entry's.
func (it item) lease() leases.Lease {
	if it.badKey != nil {
		return *it.badKey
	}
	return it.e.lease
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
	e, id, err := s.read(name, v4, v6, now)
	if errors.Is(err, fs.ErrNotExist) {
		return it, false // removed meanwhile
	}
	if err != nil {
		return foreign(err.Error()), true
	}
	it = item{e: e, id: id}
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

// read reads one lease file without following symlinks, and returns the
// identity of the file read. A content that does not parse gives an
// entry with ok=false (it still holds its subnet until it expires); other
// failures are errors.
func (s *Store) read(name string, v4, v6 netip.Prefix, now time.Time) (entry, fileID, error) {
	f, err := os.OpenFile(filepath.Join(s.subnets, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return entry{}, fileID{}, fmt.Errorf("%w: a symlink", errNotLease)
		}
		return entry{}, fileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return entry{}, fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return entry{}, fileID{}, fmt.Errorf("%w: not a regular file (%s)", errNotLease, fi.Mode().Type())
	}
	e := entry{name: name}
	b, err := io.ReadAll(io.LimitReader(f, maxValue+1))
	switch {
	case err != nil:
		return entry{}, fileID{}, err
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
	return e, idOf(fi), nil
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
