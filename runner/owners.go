package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/runner/shell"
)

// Files of the ownership table in the state dir.
const (
	// OwnersFile is the ownership table as of its last compaction.
	OwnersFile = "owners.json"
	// OwnersLogFile has one JSON line per change since.
	OwnersLogFile = "owners.log"
)

// Owners is the ownership table: which lease (by its subnet) or the node
// made each kernel object the hooks changed, as internal/netcmd names
// them, and which objects were on the node before flexhook started.
//
// The rule (see shell.Ownership): a lease's hook may change or replace
// an object only when it is its own (an earlier version of the same
// subnet's lease made it) or belongs to nobody flexhook knows and was not
// there at start; the node's objects at start are never replaced or
// deleted by a lease's hook, and no lease's hook touches another lease's
// or the node's own hooks' objects.
//
// A claim is appended to owners.log before the command runs (unsynced: a
// crash of the daemon keeps it in the page cache; a crash of the machine
// loses the kernel's objects too), so an object a crashed hook made is
// never mistaken at the next start for one the node had. A release is
// appended after a del succeeded or a claimed command failed. Owners is
// safe for concurrent use: hooks of several subnets run at once.
type Owners struct {
	mu    sync.Mutex
	fs    journalFS
	log   *slog.Logger
	owner map[netcmd.Object]string
	// tentative: claimed for a command still running (or that crashed).
	tentative map[netcmd.Object]bool
	// before: objects on the node at start that no one here owns.
	before map[netcmd.Object]struct{}
	// adopt: leases may take objects of before, for this run: the state
	// dir is a version's before ownership, whose leases' objects are
	// among them.
	adopt bool
	lines int
	// kernel lists the namespace's objects (TakeBaseline); nil in tests,
	// which give openOwners the list.
	kernel func() (map[netcmd.Object]struct{}, error)
}

// freeOwner marks an object a lease made and released while it may
// still be in the kernel (a Remove that left it): nobody's, and not the
// node's at the next start either.
const freeOwner = "-"

var _ shell.Ownership = (*Owners)(nil)

// ownersFile is owners.json.
type ownersFile struct {
	Version int
	Owners  map[netcmd.Object]string
}

// ownersLine is one line of owners.log: By empty releases.
type ownersLine struct {
	Object netcmd.Object
	By     string `json:",omitempty"`
}

// OpenOwners loads the table kept in stateDir and takes the objects of
// this network namespace that it does not know as the node's own. Call
// it before any hook runs. When the state dir has a journal but no
// ownership table yet (a version before it made the leases' objects),
// leases may adopt objects they find during this run; their claims are
// kept from then on.
func OpenOwners(stateDir string, log *slog.Logger) (*Owners, error) {
	o, err := openOwners(&osFS{dir: stateDir}, nil, log)
	if err != nil {
		return nil, err
	}
	o.kernel = func() (map[netcmd.Object]struct{}, error) {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		return netcmd.Kernel(h)
	}
	return o, nil
}

// TakeBaseline records the objects in the kernel now that the table does
// not know as the node's. The engine calls it once PostStartupCommand has
// run, before any lease's hook: what the node's own hooks rebuilt at
// start (a device and what went with it) is then as it is now.
func (o *Owners) TakeBaseline() error {
	if o.kernel == nil {
		return nil
	}
	kernel, err := o.kernel()
	if err != nil {
		return fmt.Errorf("owners: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.before = map[netcmd.Object]struct{}{}
	for obj := range kernel {
		if _, ok := o.owner[obj]; !ok {
			o.before[obj] = struct{}{}
		}
	}
	return nil
}

func openOwners(fsys journalFS, kernel map[netcmd.Object]struct{}, log *slog.Logger) (*Owners, error) {
	o := &Owners{fs: fsys, log: log, owner: map[netcmd.Object]string{}, tentative: map[netcmd.Object]bool{},
		before: map[netcmd.Object]struct{}{}}
	data, err := fsys.ReadFile(OwnersFile)
	fresh := errors.Is(err, fs.ErrNotExist)
	switch {
	case fresh:
	case err != nil:
		return nil, fmt.Errorf("owners: %w", err)
	default:
		var f ownersFile
		if err := json.Unmarshal(data, &f); err != nil {
			log.Error("owners: the ownership table does not parse; objects present now count as the node's", "error", err)
		}
		maps.Copy(o.owner, f.Owners)
	}
	logData, err := fsys.ReadFile(OwnersLogFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("owners: %w", err)
	default:
		fresh = false
		o.replay(logData)
	}
	for obj := range kernel {
		if _, ok := o.owner[obj]; !ok {
			o.before[obj] = struct{}{}
		}
	}
	if fresh {
		_, err1 := fsys.ReadFile(JournalFile)
		_, err2 := fsys.ReadFile(JournalLogFile)
		if o.adopt = err1 == nil || err2 == nil; o.adopt {
			log.Warn("owners: a journal without an ownership table (an earlier version made it): " +
				"this run's leases may take over the objects they find; from the next start on, ownership holds")
		}
	}
	if err := o.compact(); err != nil {
		return nil, err
	}
	return o, nil
}

// replay applies owners.log's lines; a line that does not parse (a torn
// tail) ends it.
func (o *Owners) replay(data []byte) {
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		data = rest
		var l ownersLine
		if err := json.Unmarshal(line, &l); err != nil || l.Object == "" {
			if len(bytes.TrimSpace(line)) > 0 {
				o.log.Warn("owners: log ends in a line that does not parse; the rest is ignored")
			}
			return
		}
		if l.By == "" {
			delete(o.owner, l.Object)
		} else {
			o.owner[l.Object] = l.By
		}
	}
}

// Claim implements shell.Ownership.
func (o *Owners) Claim(owner string, obj netcmd.Object, v netcmd.Verb) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.owner[obj]
	owned := cur != "" && cur != freeOwner
	_, wasThere := o.before[obj]
	if owner != shell.NodeOwner {
		switch {
		case owned && cur == shell.NodeOwner:
			return &shell.ConflictError{Object: obj, Reason: shell.ConflictNode}
		case owned && cur != owner:
			return &shell.ConflictError{Object: obj, Reason: shell.ConflictLease, Owner: cur}
		case wasThere && v != netcmd.Add && !o.adopt && (!owned || o.tentative[obj]):
			// An add of it fails on its own (the kernel says it exists),
			// and then is not replaced.
			return &shell.ConflictError{Object: obj, Reason: shell.ConflictPreexisting}
		}
	}
	if v == netcmd.Del || owned && cur == owner {
		return nil
	}
	o.owner[obj] = owner
	o.tentative[obj] = true
	o.append(obj, owner)
	return nil
}

// Done implements shell.Ownership.
func (o *Owners) Done(owner string, obj netcmd.Object, v netcmd.Verb, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.owner[obj]
	owned := cur != "" && cur != freeOwner
	switch {
	case ok && v == netcmd.Del:
		delete(o.before, obj)
		if owned && (cur == owner || owner == shell.NodeOwner) {
			delete(o.owner, obj)
			delete(o.tentative, obj)
			o.append(obj, "")
		}
	case ok:
		if owned && cur == owner {
			delete(o.tentative, obj)
			delete(o.before, obj)
		}
	case owned && cur == owner && o.tentative[obj]:
		delete(o.owner, obj)
		delete(o.tentative, obj)
		o.append(obj, "")
	}
}

// Release frees every object of owner's: its lease is gone (its last
// version's Remove succeeded). An object its Remove left in the kernel
// stays known as free, so that it is nobody's, not the node's, after a
// restart.
func (o *Owners) Release(owner string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for obj, cur := range o.owner {
		if cur == owner {
			o.owner[obj] = freeOwner
			delete(o.tentative, obj)
			o.append(obj, freeOwner)
		}
	}
}

// Close closes owners.log, which appends keep open. A change recorded
// after it opens and closes the log again.
func (o *Owners) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.fs.Close(); err != nil {
		return fmt.Errorf("owners: %w", err)
	}
	return nil
}

// Of returns owner's objects, sorted.
func (o *Owners) Of(owner string) []netcmd.Object {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []netcmd.Object
	for obj, cur := range o.owner {
		if cur == owner {
			out = append(out, obj)
		}
	}
	slices.Sort(out)
	return out
}

// ownersCompactEvery is how many log lines trigger a compaction.
const ownersCompactEvery = 4096

// append writes one line to owners.log (o.mu held); a failure is
// logged: the table in memory stays right, and a lost line only makes an
// object look like the node's after a restart.
func (o *Owners) append(obj netcmd.Object, by string) {
	b, err := json.Marshal(ownersLine{Object: obj, By: by})
	if err != nil {
		return
	}
	if err := o.fs.Append(OwnersLogFile, append(b, '\n'), false); err != nil {
		o.log.Error("owners: cannot record a change", "object", string(obj), "error", err)
		return
	}
	o.lines++
	if o.lines >= ownersCompactEvery {
		if err := o.compact(); err != nil {
			o.log.Error("owners: cannot compact", "error", err)
		}
	}
}

// compact writes the whole table to owners.json and empties the log.
func (o *Owners) compact() error {
	if err := o.fs.WriteAtomic(OwnersFile, o.encodeTo); err != nil {
		return fmt.Errorf("owners: %w", err)
	}
	if err := o.fs.Truncate(OwnersLogFile, 0); err != nil {
		return fmt.Errorf("owners: %w", err)
	}
	o.lines = 0
	return nil
}

// encodeTo writes owners.json for the table to w, as json.MarshalIndent
// renders an ownersFile, one entry at a time: neither the file nor an
// encoding/json buffer of its size is held in memory.
func (o *Owners) encodeTo(w io.Writer) error {
	b := bufio.NewWriter(w)
	b.WriteString("{\n  \"Version\": 1,\n  \"Owners\": {")
	objs := slices.Sorted(maps.Keys(o.owner))
	for i, obj := range objs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		for j, s := range []string{string(obj), o.owner[obj]} {
			q, err := json.Marshal(s)
			if err != nil {
				return err
			}
			b.Write(q)
			if j == 0 {
				b.WriteString(": ")
			}
		}
	}
	if len(objs) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Flush()
}
