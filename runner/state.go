package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
)

// Names of the files the engine keeps in the state dir.
const (
	JournalFile = "applied.json"
	// JournalLogFile is the journal's write-ahead log: one JSON line per
	// lease whose Add is about to run, appended and synced before it runs,
	// folded into JournalFile (and emptied) when that is rewritten.
	JournalLogFile = "applied.log"
	StatusFile     = "status.json"
)

// writeFileAtomic writes data to path through a temporary file in the same
// directory, an fsync, a rename and an fsync of the directory, so readers
// never see a partial file and a crash keeps the old or the new one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// journalVersion is the format version of applied.json.
const journalVersion = 1

// journalLease is one applied remote lease as stored in applied.json.
type journalLease struct {
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix `json:",omitzero"`
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr `json:",omitzero"`
	BackendType string
	BackendData string `json:",omitempty"`
}

// journal is the content of applied.json: the remote leases whose
// SubnetAddCommand succeeded and that have not been removed since.
type journal struct {
	Version int
	Applied []journalLease
}

func encodeJournal(applied map[netip.Prefix]leases.Lease) ([]byte, error) {
	j := journal{Version: journalVersion, Applied: []journalLease{}}
	for _, s := range sortedSubnets(applied) {
		j.Applied = append(j.Applied, journalEntry(applied[s]))
	}
	b, err := json.MarshalIndent(j, "", "  ")
	return append(b, '\n'), err
}

func decodeJournal(data []byte) (map[netip.Prefix]leases.Lease, error) {
	var j journal
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, err
	}
	if j.Version != journalVersion {
		return nil, fmt.Errorf("unsupported version %d", j.Version)
	}
	m := make(map[netip.Prefix]leases.Lease, len(j.Applied))
	for i, a := range j.Applied {
		if !a.Subnet.IsValid() {
			return nil, fmt.Errorf("entry Applied[%d]: missing Subnet", i)
		}
		m[a.Subnet] = a.lease()
	}
	return m, nil
}

// loadJournal reads the applied set from dir: applied.json, then the
// leases of applied.log for subnets it does not hold (a lease whose Add
// began after the last rewrite). Missing files are empty. A torn last log
// line (a crash while appending) is ignored.
func loadJournal(dir string) (map[netip.Prefix]leases.Lease, error) {
	path := filepath.Join(dir, JournalFile)
	data, err := os.ReadFile(path)
	m := map[netip.Prefix]leases.Lease{}
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("journal: %w", err)
	default:
		if m, err = decodeJournal(data); err != nil {
			return nil, fmt.Errorf("journal %s: %w", path, err)
		}
	}
	logPath := filepath.Join(dir, JournalLogFile)
	data, err = os.ReadFile(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lines := bytes.Split(data, []byte{'\n'})
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		l, err := decodeJournalLine(line)
		if err != nil {
			if i == len(lines)-1 { // no newline after it: torn by a crash
				break
			}
			return nil, fmt.Errorf("journal log %s: line %d: %w", logPath, i+1, err)
		}
		if _, ok := m[l.Subnet]; !ok {
			m[l.Subnet] = l
		}
	}
	return m, nil
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

func decodeJournalLine(line []byte) (leases.Lease, error) {
	var a journalLease
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return leases.Lease{}, err
	}
	if !a.Subnet.IsValid() {
		return leases.Lease{}, errors.New("missing Subnet")
	}
	return a.lease(), nil
}

func (a journalLease) lease() leases.Lease {
	return leases.Lease{Subnet: a.Subnet, IPv6Subnet: a.IPv6Subnet, Attrs: leases.Attrs{
		PublicIP: a.PublicIP, PublicIPv6: a.PublicIPv6, BackendType: a.BackendType, BackendData: a.BackendData}}
}

// appendJournalLog appends ls to applied.log and syncs it, creating it
// (and syncing the directory) the first time.
func appendJournalLog(dir string, ls []leases.Lease) error {
	var b bytes.Buffer
	for _, l := range ls {
		line, err := json.Marshal(journalEntry(l))
		if err != nil {
			return fmt.Errorf("journal log: %w", err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, JournalLogFile)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal log: %w", err)
	}
	_, werr := f.Write(b.Bytes())
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("journal log: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) { // a new file is durable once its directory is
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// saveJournal rewrites applied.json with the applied set, then empties
// applied.log, whose leases the set now holds (a crash in between only
// replays them again, which loadJournal's union makes harmless).
func saveJournal(dir string, applied map[netip.Prefix]leases.Lease) error {
	data, err := encodeJournal(applied)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, JournalFile), data, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(filepath.Join(dir, JournalLogFile), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal log: %w", err)
	}
	return nil
}

// Status is the content of status.json, rewritten whenever the applied or
// failing set changes.
type Status struct {
	Subnet    netip.Prefix
	PublicIP  netip.Addr
	Applied   []netip.Prefix
	Failing   []Failure
	UpdatedAt time.Time
	// MTU is subnet.env's FLANNEL_MTU and MTUSource where it came from:
	// "--mtu", "Backend.MTU", "path: dev flannel-vxlan, route
	// 10.50.2.0/24", "underlay eth0" or "default".
	MTU       int    `json:",omitzero"`
	MTUSource string `json:",omitempty"`
	// LastSync is when every admitted remote lease was last applied
	// (zero before the first time).
	LastSync time.Time `json:",omitzero"`
	// Refused lists the remote leases lease admission refuses now (at
	// most 10000, by key); RefusedNow counts them by reason and
	// RefusedTotal counts every refusal since the start (a lease counts
	// again when its reason changes or it is refused anew).
	Refused      []Refused      `json:",omitempty"`
	RefusedNow   map[string]int `json:",omitempty"`
	RefusedTotal map[string]int `json:",omitempty"`
}

// Refused is a remote lease that no hook sees, and why.
type Refused struct {
	Key    string // the store key, quoted when not printable
	Reason string // a leases.Reason
	Detail string
	Since  time.Time
}

// Failure describes a subnet whose hook keeps failing.
type Failure struct {
	Subnet    netip.Prefix
	Hook      string // e.g. "SubnetAddCommand"
	Error     string // the last error
	Attempts  int    // failed attempts so far
	Since     time.Time
	NextRetry time.Time
}

func saveStatus(dir string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, StatusFile), append(b, '\n'), 0o600)
}

// ReadStatus reads the status.json the engine keeps in stateDir.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	data, err := os.ReadFile(filepath.Join(stateDir, StatusFile))
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("status %s: %w", filepath.Join(stateDir, StatusFile), err)
	}
	return st, nil
}

// firstHost returns the prefix's first host address with the prefix's
// length, as flannel writes FLANNEL_SUBNET (10.50.3.0/24 → 10.50.3.1/24).
func firstHost(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits())
}

// subnetEnv renders flannel's subnet.env for the own lease.
func subnetEnv(cfg *hooks.Config, own leases.Lease, mtu int) []byte {
	var b bytes.Buffer
	if cfg.Network.IsValid() && own.Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", cfg.Network)
		fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", firstHost(own.Subnet))
	}
	if cfg.IPv6Network.IsValid() && own.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", cfg.IPv6Network)
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", firstHost(own.IPv6Subnet))
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\n", mtu)
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=false\n")
	return b.Bytes()
}

// writeSubnetFile writes subnet.env atomically with mode 0644 (flannel's
// CNI plugin reads it), creating its directory (0755) if needed.
func writeSubnetFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	return writeFileAtomic(path, data, 0o644)
}
