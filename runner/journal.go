package runner

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/flexhook/flexhook/leases"
)

// The journal remembers every version of a remote lease that may be in
// the kernel, with its own data, so that each gets its Remove once it is
// no longer wanted. Its rule is intent before effect: a version is in the
// journal, synced to disk, before any hook may add it, and it leaves only
// after its Remove succeeded. A crash at any instant therefore leaves
// every version that may be in the kernel known.
//
// On disk it is applied.json (the whole set, rewritten atomically by
// compact) and applied.log (one JSON line per change since: an "add"
// appended and synced before the Adds of a batch run, a "del" appended
// after a Remove succeeded, unsynced: a lost "del" only runs a Remove
// again, which converges). Loading replays the log over the set. A torn
// or zeroed tail of the log (a crash mid-append: the Add it announced
// never ran) is cut off; a line that does not parse with good lines after
// it, or an applied.json that does not parse, is corrupt: the file is
// moved aside, what still parses is kept, and the loss is reported.

// journalVersion is the format version of applied.json that compact
// writes; version 1 (one entry per subnet, key "Applied") is still read.
const journalVersion = 2

// journalLease is one version of a remote lease: what its hooks see,
// and what the journal stores. The engine holds each version once and
// shares the pointer among the desired set, the applied set and the
// journal (see core.intern); a *journalLease is never changed.
type journalLease struct {
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix `json:",omitzero"`
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr `json:",omitzero"`
	BackendType string
	BackendData string `json:",omitempty"`
}

// journalEntry is l's version.
func journalEntry(l leases.Lease) journalLease {
	return journalLease{
		Subnet:      l.Subnet,
		IPv6Subnet:  l.IPv6Subnet,
		PublicIP:    l.Attrs.PublicIP,
		PublicIPv6:  l.Attrs.PublicIPv6,
		BackendType: l.Attrs.BackendType,
		BackendData: l.Attrs.BackendData,
	}
}

func (a journalLease) lease() leases.Lease {
	return leases.Lease{Subnet: a.Subnet, IPv6Subnet: a.IPv6Subnet, Attrs: leases.Attrs{
		PublicIP: a.PublicIP, PublicIPv6: a.PublicIPv6, BackendType: a.BackendType, BackendData: a.BackendData}}
}

// journalFile is the content of applied.json.
type journalFile struct {
	Version int
	Leases  []journalLease `json:",omitempty"` // version 2: every version, any number per subnet
	Applied []journalLease `json:",omitempty"` // version 1: one per subnet
}

// journalLine is one line of applied.log. Op is "add" or "del"; a line
// without Op (written by version 1) is an "add".
type journalLine struct {
	Op string `json:",omitempty"`
	journalLease
}

// journal is the set of lease versions that may be in the kernel, kept
// on a journalFS. Only the engine's goroutine uses it.
type journal struct {
	fs  journalFS
	log *slog.Logger
	// set holds each subnet's versions, in compareJournalLease order; a
	// slice in it is never changed in place (versions hands it out).
	set  map[netip.Prefix][]*journalLease
	n    int              // versions in set
	now  func() time.Time // names of moved-aside files
	logN int              // lines in applied.log since the last compact
	// dirty: the set changed since the last compact.
	dirty bool
	// problem describes what loading had to repair, for status.json ("" when
	// nothing).
	problem string
}

// openJournal loads the journal from fsys: applied.json, then
// applied.log replayed over it. It repairs what a crash or corruption
// left (see the comment above) and fails only when a file cannot be read
// at all.
func openJournal(fsys journalFS, log *slog.Logger, now func() time.Time) (*journal, error) {
	j := &journal{fs: fsys, log: log, set: map[netip.Prefix][]*journalLease{}, now: now}
	var problems []string
	data, err := fsys.ReadFile(JournalFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("journal: %w", err)
	default:
		if err := j.decodeFile(data); err != nil {
			problems = append(problems, j.moveAside(JournalFile, data, err))
		}
	}
	data, err = fsys.ReadFile(JournalLogFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("journal: %w", err)
	default:
		problems = append(problems, j.replay(data)...)
	}
	if len(problems) > 0 {
		j.problem = problems[0]
		for _, p := range problems[1:] {
			j.problem += "; " + p
		}
		// Start from clean files: the set as recovered, an empty log. On a
		// full disk that waits for the next compaction; the log's torn tail
		// is already cut (replay), so appends land on a clean line.
		j.dirty = true
		if err := j.compact(); err != nil {
			log.Error("journal: cannot rewrite the repaired journal yet", "error", err)
		}
	}
	return j, nil
}

func (j *journal) decodeFile(data []byte) error {
	var f journalFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return err
	}
	if f.Version != 1 && f.Version != journalVersion {
		return fmt.Errorf("unsupported version %d", f.Version)
	}
	for i, a := range append(f.Applied, f.Leases...) {
		if !a.Subnet.IsValid() {
			return fmt.Errorf("entry %d: missing Subnet", i)
		}
	}
	for _, list := range [][]journalLease{f.Applied, f.Leases} {
		for i := range list {
			j.add(&list[i])
		}
	}
	return nil
}

// replay applies applied.log's lines to the set and returns what it had
// to repair.
func (j *journal) replay(data []byte) []string {
	var problems []string
	good := 0     // the end of the last line that parsed
	var bad []int // 1-based numbers of lines that did not
	badAfter := 0 // lines that parsed after the first bad one
	line := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		complete := end >= 0
		if !complete {
			end = len(data) - off
		}
		raw := data[off : off+end]
		line++
		next := off + end
		if complete {
			next++
		}
		if complete && len(bytes.TrimSpace(raw)) == 0 { // a blank line
			off = next
			continue
		}
		rec, err := decodeJournalLine(raw)
		if err != nil || !complete {
			bad = append(bad, line)
			off = next
			continue
		}
		if len(bad) > 0 {
			badAfter++
		}
		switch rec.Op {
		case "", "add":
			if !j.has(rec.journalLease) {
				j.add(&rec.journalLease)
			}
		case "del":
			j.remove(rec.journalLease)
		}
		j.logN++
		good = next
		off = next
	}
	switch {
	case len(bad) == 0 && len(bytes.TrimSpace(data[good:])) == 0: // nothing, or blank lines, after the last good line
	case badAfter == 0: // only the tail: a crash while appending, or a zeroed block
		msg := fmt.Sprintf("cut a torn tail of %d bytes off %s (a crash while appending; the Adds it announced never ran)",
			len(data)-good, JournalLogFile)
		if err := j.fs.Truncate(JournalLogFile, int64(good)); err != nil {
			msg += fmt.Sprintf(" (the cut failed: %v)", err)
		}
		j.log.Warn("journal: " + msg)
		problems = append(problems, msg)
	default:
		err := fmt.Errorf("line %d does not parse, with good lines after it", bad[0])
		problems = append(problems, j.moveAside(JournalLogFile, data, err))
	}
	return problems
}

// moveAside keeps a copy of a corrupt journal file beside it and says so.
// The file itself stays until the rewrite that follows loading replaces
// it (applied.json) or empties it (applied.log): if that rewrite fails
// (a full disk), the next start finds and recovers the same again, so
// what parsed of it is never only in memory. What did not parse is lost:
// leases it alone knew get no Remove, which is reported, never invented.
func (j *journal) moveAside(name string, data []byte, cause error) string {
	to := fmt.Sprintf("%s.corrupt-%d", name, j.now().Unix())
	msg := fmt.Sprintf("%s is corrupt (%v): kept as %s; the node converges from the store, and a lease only it "+
		"knew to be applied gets no Remove", name, cause, to)
	if err := j.fs.WriteAtomic(to, writeData(data)); err != nil {
		msg += fmt.Sprintf(" (the copy failed: %v)", err)
	}
	j.log.Error("journal: " + msg)
	return msg
}

func decodeJournalLine(raw []byte) (journalLine, error) {
	var rec journalLine
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, err
	}
	if dec.More() {
		return rec, errors.New("more than one value on the line")
	}
	if !rec.Subnet.IsValid() {
		return rec, errors.New("missing Subnet")
	}
	if rec.Op != "" && rec.Op != "add" && rec.Op != "del" {
		return rec, fmt.Errorf("unknown op %q", rec.Op)
	}
	return rec, nil
}

// versions returns the versions in the journal by subnet, each subnet's
// in a stable order. It is the journal's own map: the caller must not
// change it, and it changes with the journal (a subnet's slice is
// replaced, never changed in place).
func (j *journal) versions() map[netip.Prefix][]*journalLease { return j.set }

// sorted returns every version, in compareJournalLease order.
func (j *journal) sorted() []*journalLease {
	out := make([]*journalLease, 0, j.n)
	for _, s := range sortedSubnets(j.set) {
		out = append(out, j.set[s]...)
	}
	return out
}

// compareJournalLease orders versions by subnet, then by every other
// field: a total order.
func compareJournalLease(a, b *journalLease) int {
	return cmp.Or(a.Subnet.Compare(b.Subnet), comparePrefix(a.IPv6Subnet, b.IPv6Subnet),
		a.PublicIP.Compare(b.PublicIP), a.PublicIPv6.Compare(b.PublicIPv6),
		cmp.Compare(a.BackendType, b.BackendType), cmp.Compare(a.BackendData, b.BackendData))
}

// comparePrefix is netip.Prefix.Compare, without its allocation for an
// invalid prefix (an unset IPv6Subnet: Masked makes an error value).
func comparePrefix(a, b netip.Prefix) int {
	if !a.IsValid() || !b.IsValid() {
		return cmp.Compare(btoi(a.IsValid()), btoi(b.IsValid()))
	}
	return a.Compare(b)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// len is the number of versions in the journal.
func (j *journal) len() int { return j.n }

// hasSubnet reports whether some version of subnet s is in the journal.
func (j *journal) hasSubnet(s netip.Prefix) bool { return len(j.set[s]) > 0 }

// has reports whether version v is in the journal.
func (j *journal) has(v journalLease) bool { return j.find(v) >= 0 }

// find returns the index of version v among its subnet's, or -1.
func (j *journal) find(v journalLease) int {
	for i, x := range j.set[v.Subnet] {
		if *x == v {
			return i
		}
	}
	return -1
}

// add puts v, which the journal lacks, into the set.
func (j *journal) add(v *journalLease) {
	vs := j.set[v.Subnet]
	i, _ := slices.BinarySearchFunc(vs, v, compareJournalLease)
	j.set[v.Subnet] = slices.Insert(slices.Clip(vs), i, v) // a new slice when vs had any
	j.n++
}

// remove takes version v out of the set, if there.
func (j *journal) remove(v journalLease) bool {
	i := j.find(v)
	if i < 0 {
		return false
	}
	vs := j.set[v.Subnet]
	if len(vs) == 1 {
		delete(j.set, v.Subnet)
	} else {
		j.set[v.Subnet] = slices.Delete(slices.Clone(vs), i, i+1)
	}
	j.n--
	return true
}

// intend records the versions in vs that the journal lacks, in one
// synced append, before their Adds run. On error nothing is recorded and
// no Add may run. The journal keeps the pointers it is given.
func (j *journal) intend(vs []*journalLease) error {
	var b bytes.Buffer
	b.Grow(len(vs) * 128) // a line is about 110 bytes
	added := make([]*journalLease, 0, len(vs))
	undo := func() {
		for _, v := range added {
			j.remove(*v)
		}
	}
	for _, v := range vs {
		if j.has(*v) { // or earlier in vs
			continue
		}
		j.add(v) // taken back unless the append succeeds
		added = append(added, v)
		if err := writeLine(&b, "add", v); err != nil {
			undo()
			return err
		}
	}
	if len(added) == 0 {
		return nil
	}
	if err := j.fs.Append(JournalLogFile, b.Bytes(), true); err != nil {
		undo()
		return fmt.Errorf("journal: record intent: %w", err)
	}
	j.logN += len(added)
	j.dirty = true
	return nil
}

// forget drops version v after its Remove succeeded. The "del" line is
// not synced: if a crash loses it, the Remove runs once more.
func (j *journal) forget(v *journalLease) error {
	if !j.remove(*v) {
		return nil
	}
	j.dirty = true
	var b bytes.Buffer
	if err := writeLine(&b, "del", v); err != nil {
		return err
	}
	if err := j.fs.Append(JournalLogFile, b.Bytes(), false); err != nil {
		return fmt.Errorf("journal: record a removal: %w", err)
	}
	j.logN++
	return nil
}

func writeLine(b *bytes.Buffer, op string, v *journalLease) error {
	line, err := json.Marshal(journalLine{Op: op, journalLease: *v})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	b.Write(line)
	b.WriteByte('\n')
	return nil
}

// encode renders applied.json for the set (see encodeTo).
func (j *journal) encode() ([]byte, error) {
	var b bytes.Buffer
	if err := j.encodeTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encodeTo writes applied.json for the set to w, as json.MarshalIndent
// renders a journalFile, one version at a time: neither the file nor an
// encoding/json buffer of its size is ever held in memory (encoding/json
// keeps its largest buffer for reuse).
func (j *journal) encodeTo(w io.Writer) error {
	b := bufio.NewWriter(w) // for the errors: w may be unbuffered
	fmt.Fprintf(b, "{\n  \"Version\": %d", journalVersion)
	if j.n > 0 {
		b.WriteString(",\n  \"Leases\": [")
		var line bytes.Buffer
		first := true
		for _, s := range sortedSubnets(j.set) {
			for _, v := range j.set[s] {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString("\n    ")
				raw, err := json.Marshal(v)
				if err != nil {
					return err
				}
				line.Reset()
				if err := json.Indent(&line, raw, "    ", "  "); err != nil {
					return err
				}
				b.Write(line.Bytes())
			}
		}
		b.WriteString("\n  ]")
	}
	b.WriteString("\n}\n")
	return b.Flush()
}

// close closes applied.log, which appends keep open.
func (j *journal) close() error {
	if err := j.fs.Close(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// compact rewrites applied.json with the set and empties applied.log. A
// crash in between replays the log over the new set, which changes
// nothing: every line's effect is already in it.
func (j *journal) compact() error {
	if !j.dirty && j.logN == 0 {
		return nil
	}
	if err := j.fs.WriteAtomic(JournalFile, j.encodeTo); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.fs.Truncate(JournalLogFile, 0); err != nil {
		return fmt.Errorf("journal log: %w", err)
	}
	j.dirty, j.logN = false, 0
	return nil
}
