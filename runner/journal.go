package runner

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
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

// journalLease is one lease version as the journal stores it. It is
// comparable: the journal's set is keyed by it.
type journalLease struct {
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix `json:",omitzero"`
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr `json:",omitzero"`
	BackendType string
	BackendData string `json:",omitempty"`
}

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
	fs   journalFS
	log  *slog.Logger
	set  map[journalLease]struct{}
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
	j := &journal{fs: fsys, log: log, set: map[journalLease]struct{}{}, now: now}
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
	for _, a := range append(f.Applied, f.Leases...) {
		j.set[a] = struct{}{}
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
			j.set[rec.journalLease] = struct{}{}
		case "del":
			delete(j.set, rec.journalLease)
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
	if err := j.fs.WriteAtomic(to, data); err != nil {
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
// in a stable order.
func (j *journal) versions() map[netip.Prefix][]leases.Lease {
	out := map[netip.Prefix][]leases.Lease{}
	for _, a := range j.sorted() {
		out[a.Subnet] = append(out[a.Subnet], a.lease())
	}
	return out
}

func (j *journal) sorted() []journalLease {
	keys := slices.Collect(maps.Keys(j.set))
	slices.SortFunc(keys, compareJournalLease)
	return keys
}

// compareJournalLease orders versions by subnet, then by every other
// field: a total order, cheap enough for each batch (versions() sorts
// the whole journal).
func compareJournalLease(a, b journalLease) int {
	return cmp.Or(a.Subnet.Compare(b.Subnet), a.IPv6Subnet.Compare(b.IPv6Subnet),
		a.PublicIP.Compare(b.PublicIP), a.PublicIPv6.Compare(b.PublicIPv6),
		cmp.Compare(a.BackendType, b.BackendType), cmp.Compare(a.BackendData, b.BackendData))
}

// len is the number of versions in the journal.
func (j *journal) len() int { return len(j.set) }

// hasSubnet reports whether some version of subnet s is in the journal.
func (j *journal) hasSubnet(s netip.Prefix) bool {
	for a := range j.set {
		if a.Subnet == s {
			return true
		}
	}
	return false
}

// intend records the versions in ls that the journal lacks, in one synced
// append, before their Adds run. On error nothing is recorded and no Add
// may run.
func (j *journal) intend(ls []leases.Lease) error {
	var b bytes.Buffer
	var added []journalLease
	for _, l := range ls {
		a := journalEntry(l)
		if _, ok := j.set[a]; ok || slices.Contains(added, a) {
			continue
		}
		added = append(added, a)
		if err := writeLine(&b, "add", a); err != nil {
			return err
		}
	}
	if len(added) == 0 {
		return nil
	}
	if err := j.fs.Append(JournalLogFile, b.Bytes(), true); err != nil {
		return fmt.Errorf("journal: record intent: %w", err)
	}
	for _, a := range added {
		j.set[a] = struct{}{}
	}
	j.logN += len(added)
	j.dirty = true
	return nil
}

// forget drops version l after its Remove succeeded. The "del" line is
// not synced: if a crash loses it, the Remove runs once more.
func (j *journal) forget(l leases.Lease) error {
	a := journalEntry(l)
	if _, ok := j.set[a]; !ok {
		return nil
	}
	delete(j.set, a)
	j.dirty = true
	var b bytes.Buffer
	if err := writeLine(&b, "del", a); err != nil {
		return err
	}
	if err := j.fs.Append(JournalLogFile, b.Bytes(), false); err != nil {
		return fmt.Errorf("journal: record a removal: %w", err)
	}
	j.logN++
	return nil
}

func writeLine(b *bytes.Buffer, op string, a journalLease) error {
	line, err := json.Marshal(journalLine{Op: op, journalLease: a})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	b.Write(line)
	b.WriteByte('\n')
	return nil
}

// encode renders applied.json for the set.
func (j *journal) encode() ([]byte, error) {
	data, err := json.MarshalIndent(journalFile{Version: journalVersion, Leases: j.sorted()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return append(data, '\n'), nil
}

// compact rewrites applied.json with the set and empties applied.log. A
// crash in between replays the log over the new set, which changes
// nothing: every line's effect is already in it.
func (j *journal) compact() error {
	if !j.dirty && j.logN == 0 {
		return nil
	}
	data, err := j.encode()
	if err != nil {
		return err
	}
	if err := j.fs.WriteAtomic(JournalFile, data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.fs.Truncate(JournalLogFile, 0); err != nil {
		return fmt.Errorf("journal log: %w", err)
	}
	j.dirty, j.logN = false, 0
	return nil
}
