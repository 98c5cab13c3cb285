package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

type statusFlags struct {
	CommonFlags
	StateDirFlags
	Output string `flag:"output" short:"o" envconfig:"OUTPUT" default:"text" arg:"text|wide|json" usage:"text: counts and failing hooks; wide: also every applied and refused lease; json: a versioned document with snake_case keys, for scripts"`
	JSON   bool   `flag:"json" envconfig:"JSON" usage:"print status.json as it is (its Go field names; prefer -o json)"`
}

const statusSynopsis = "flexhook status [--state-dir DIR] [-o text|wide|json] [--json]"

// cmdStatus prints what a running (or stopped) `flexhook run` last
// recorded in its state dir: its lease, the remote leases applied, and
// every subnet whose hook keeps failing with its last error. It exits 1
// when a hook is failing, so it serves as a health check.
func cmdStatus(_ context.Context, args []string, stdout, _ io.Writer) error {
	var f statusFlags
	if err := parseFlags("status", &f, statusSynopsis, args, stdout); err != nil {
		return err
	}
	if f.Output != "text" && f.Output != "wide" && f.Output != "json" {
		return usageErrorf("status: -o %q: want text, wide or json", f.Output)
	}
	st, err := nodeStatus(f.StateDir)
	if err != nil {
		return err
	}
	dead := daemonAlive(st)
	var doc any = st // --json: status.json as it is
	if f.Output == "json" {
		doc = statusDocument(st, dead)
	}
	switch {
	case f.JSON || f.Output == "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	default:
		if dead != nil {
			fmt.Fprintf(stdout, "daemon     NOT RUNNING: %v; below is its last state\n", dead)
		} else {
			fmt.Fprintf(stdout, "daemon     running, pid %d\n", st.Pid)
		}
		_ = writeStatus(stdout, st, time.Now(), f.Output == "wide") // its errFailing is decided below, after liveness
	}
	switch {
	case dead != nil:
		return &exitError{code: exitNotRunning, err: dead}
	case len(st.Failing) > 0:
		return errFailing
	}
	return nil
}

// exitNotRunning is status's exit code for a daemon that does not run,
// as systemctl status has it.
const exitNotRunning = 3

// nodeStatus reads the status.json of the node whose state dir is dir.
func nodeStatus(dir string) (runner.Status, error) {
	st, err := runner.ReadStatus(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("no status in %s: flexhook run has not acquired a lease with this --state-dir", dir)
	}
	return st, err
}

// errFailing makes `status` exit 1 after printing.
var errFailing = errors.New("hooks are failing")

// writeStatus prints st: counts, and the failing hooks; wide, also every
// applied and refused lease.
func writeStatus(w io.Writer, st runner.Status, now time.Time, wide bool) error {
	applied := make([]string, len(st.Applied))
	for i, p := range st.Applied {
		applied[i] = p.String()
	}
	if st.Version != "" {
		fmt.Fprintf(w, "version    %s\n", st.Version)
	}
	fmt.Fprintf(w, "subnet     %s\n", st.Subnet)
	fmt.Fprintf(w, "public ip  %s\n", st.PublicIP)
	if !st.LeaseExpiry.IsZero() {
		fmt.Fprintf(w, "lease      expires %s (in %s unless renewed)\n", st.LeaseExpiry.Format(time.RFC3339), st.LeaseExpiry.Sub(now).Round(time.Minute))
	}
	if st.MTU > 0 {
		fmt.Fprintf(w, "mtu        %d (%s)\n", st.MTU, st.MTUSource)
	}
	if st.Journal != "" {
		fmt.Fprintf(w, "journal    %s\n", st.Journal)
	}
	fmt.Fprintf(w, "updated    %s (%s ago)\n", st.UpdatedAt.Format(time.RFC3339), now.Sub(st.UpdatedAt).Round(time.Second))
	if wide && len(applied) > 0 {
		fmt.Fprintf(w, "applied    %d: %s\n", len(applied), strings.Join(applied, " "))
	} else {
		fmt.Fprintf(w, "applied    %d\n", len(applied))
	}
	if b := st.Batch; b != nil {
		fmt.Fprintf(w, "batch      %s %d/%d subnets, running for %s\n", b.Phase, b.Done, b.Total, now.Sub(b.Since).Round(time.Second))
	}
	if st.LastSync.IsZero() {
		fmt.Fprintln(w, "last sync  never (not every admitted lease applied yet)")
	} else {
		fmt.Fprintf(w, "last sync  %s (%s ago)\n", st.LastSync.Format(time.RFC3339), now.Sub(st.LastSync).Round(time.Second))
	}
	writeRefused(w, st, wide)
	if len(st.Failing) == 0 {
		fmt.Fprintln(w, "failing    0")
		return nil
	}
	fmt.Fprintf(w, "failing    %d\n", len(st.Failing))
	for _, fl := range st.Failing {
		conflict := ""
		if fl.Conflict != "" {
			conflict = " conflict=" + fl.Conflict
		}
		fmt.Fprintf(w, "  %s %s%s: %d attempts since %s, next in %s: %s\n",
			fl.Subnet, fl.Hook, conflict, fl.Attempts, fl.Since.Format(time.RFC3339),
			max(fl.NextRetry.Sub(now), 0).Round(time.Second), fl.Error)
	}
	return errFailing
}

// writeRefused prints the leases lease admission refuses, counted by
// reason, then one line each: key, reason and why. Keys and details are
// other nodes' data: quoted where not printable, control characters
// replaced.
func writeRefused(w io.Writer, st runner.Status, wide bool) {
	total := 0
	for _, n := range st.RefusedNow {
		total += n
	}
	if total == 0 {
		fmt.Fprintln(w, "refused    0")
		return
	}
	reasons := slices.Sorted(maps.Keys(st.RefusedNow))
	counts := make([]string, len(reasons))
	for i, r := range reasons {
		counts[i] = fmt.Sprintf("%s=%d", r, st.RefusedNow[r])
	}
	fmt.Fprintf(w, "refused    %d: %s\n", total, strings.Join(counts, " "))
	if !wide {
		return
	}
	for _, r := range st.Refused {
		fmt.Fprintf(w, "  %s %s: %s\n", leases.Printable(r.Key), r.Reason, leases.Printable(r.Detail))
	}
	if len(st.Refused) < total {
		fmt.Fprintf(w, "  ... and %d more\n", total-len(st.Refused))
	}
}

// statusAPIVersion versions `status -o json` (and the other -o json
// documents): a field may be added; none is renamed or removed within it.
const statusAPIVersion = "flexhook/v1"

// statusDoc is `flexhook status -o json`.
type statusDoc struct {
	APIVersion  string         `json:"api_version"`
	Kind        string         `json:"kind"`
	Daemon      daemonDoc      `json:"daemon"`
	Subnet      string         `json:"subnet"`
	PublicIP    string         `json:"public_ip"`
	MTU         int            `json:"mtu,omitempty"`
	MTUSource   string         `json:"mtu_source,omitempty"`
	Journal     string         `json:"journal,omitempty"`
	UpdatedAt   time.Time      `json:"updated_at"`
	LastSync    *time.Time     `json:"last_sync,omitempty"`
	Applied     []string       `json:"applied"`
	Failing     []failingDoc   `json:"failing"`
	RefusedNow  map[string]int `json:"refused_now"`
	Refused     []refusedDoc   `json:"refused"`
	Batch       *batchDoc      `json:"batch,omitempty"`
	Version     string         `json:"version,omitempty"`
	LeaseExpiry *time.Time     `json:"lease_expiry,omitempty"`
}

// batchDoc is a batch of hooks running when status.json was written.
type batchDoc struct {
	Phase string    `json:"phase"`
	Done  int       `json:"done"`
	Total int       `json:"total"`
	Since time.Time `json:"since"`
}

type daemonDoc struct {
	Running bool   `json:"running"`
	Pid     int    `json:"pid,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

type failingDoc struct {
	Subnet    string    `json:"subnet"`
	Hook      string    `json:"hook"`
	Error     string    `json:"error"`
	Attempts  int       `json:"attempts"`
	Since     time.Time `json:"since"`
	NextRetry time.Time `json:"next_retry"`
	Conflict  string    `json:"conflict,omitempty"`
}

type refusedDoc struct {
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
}

func statusDocument(st runner.Status, dead error) statusDoc {
	d := statusDoc{APIVersion: statusAPIVersion, Kind: "Status", Daemon: daemonDoc{Running: dead == nil, Pid: st.Pid},
		Subnet: st.Subnet.String(), PublicIP: st.PublicIP.String(), MTU: st.MTU, MTUSource: st.MTUSource,
		Journal: st.Journal, UpdatedAt: st.UpdatedAt, Applied: []string{}, Failing: []failingDoc{},
		RefusedNow: map[string]int{}, Refused: []refusedDoc{}}
	if dead != nil {
		d.Daemon.Reason = dead.Error()
	}
	if !st.LastSync.IsZero() {
		d.LastSync = &st.LastSync
	}
	d.Version = st.Version
	if !st.LeaseExpiry.IsZero() {
		d.LeaseExpiry = &st.LeaseExpiry
	}
	if b := st.Batch; b != nil {
		d.Batch = &batchDoc{Phase: b.Phase, Done: b.Done, Total: b.Total, Since: b.Since}
	}
	for _, p := range st.Applied {
		d.Applied = append(d.Applied, p.String())
	}
	for _, f := range st.Failing {
		d.Failing = append(d.Failing, failingDoc{Subnet: f.Subnet.String(), Hook: f.Hook, Error: f.Error, Attempts: f.Attempts,
			Since: f.Since, NextRetry: f.NextRetry, Conflict: f.Conflict})
	}
	maps.Copy(d.RefusedNow, st.RefusedNow)
	for _, r := range st.Refused {
		d.Refused = append(d.Refused, refusedDoc{Key: r.Key, Reason: r.Reason, Detail: r.Detail, Since: r.Since})
	}
	return d
}
