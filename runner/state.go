package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"

	"github.com/flexhook/flexhook/internal/atomicfile"
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
	// Journal says what is wrong with the journal: what loading it had
	// to repair, or why intent cannot be recorded now (then no hook
	// runs). Empty when all is well.
	Journal string `json:",omitempty"`
	// Pid is the daemon's process ID (flexhook leave signals it).
	Pid int `json:",omitzero"`
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
	// Version is the daemon's (runner.Version); LeaseExpiry is when the
	// own lease expires unless renewed (zero when the store has no TTL).
	Version     string    `json:",omitempty"`
	LeaseExpiry time.Time `json:",omitzero"`
	// Batch is the batch of hooks running when the file was written, once
	// it has run for the progress interval; nil otherwise.
	Batch *BatchProgress `json:",omitempty"`
}

// BatchProgress is how far a running batch of hooks got: of its phase's
// Total subnets ("remove", then "add"), Done have run.
type BatchProgress struct {
	Phase       string
	Done, Total int
	Since       time.Time
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
	// Conflict is set when the hook was stopped before changing a kernel
	// object that is not its lease's: other_lease, node_object or
	// preexisting (Error names the object and its owner).
	Conflict string `json:",omitempty"`
}

// saveStatus writes status.json as json.MarshalIndent renders st, with
// a newline, through a buffer into the file: its indented form (a line
// per applied subnet) is never held whole.
func saveStatus(dir string, st Status) error {
	err := atomicfile.WriteFunc(filepath.Join(dir, StatusFile), 0o600, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	})
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
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
func subnetEnv(cfg *hooks.Config, own leases.Lease, mtu int, ipMasq bool) []byte {
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
	fmt.Fprintf(&b, "FLANNEL_IPMASQ=%t\n", ipMasq)
	return b.Bytes()
}

// writeSubnetFile writes subnet.env atomically with mode 0644 (flannel's
// CNI plugin reads it), creating its directory (0755) if needed.
func writeSubnetFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("subnet file: %w", err)
	}
	return atomicfile.Write(path, data, 0o644)
}
