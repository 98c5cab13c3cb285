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

	"github.com/flexhook/flexhook/runner"
)

type statusFlags struct {
	CommonFlags
	StateDirFlags
	JSON bool `flag:"json" envconfig:"JSON" usage:"print status.json as it is, for scripts (the exit status is the same)"`
}

const statusSynopsis = "flexhook status [--state-dir DIR] [--json]"

// cmdStatus prints what a running (or stopped) `flexhook run` last
// recorded in its state dir: its lease, the remote leases applied, and
// every subnet whose hook keeps failing with its last error. It exits 1
// when a hook is failing, so it serves as a health check.
func cmdStatus(_ context.Context, args []string, stdout, _ io.Writer) error {
	var f statusFlags
	if err := parseFlags("status", &f, statusSynopsis, args, stdout); err != nil {
		return err
	}
	st, err := nodeStatus(f.StateDir)
	if err != nil {
		return err
	}
	dead := daemonAlive(st)
	if f.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		if dead != nil {
			fmt.Fprintf(stdout, "daemon     NOT RUNNING: %v; below is its last state\n", dead)
		} else {
			fmt.Fprintf(stdout, "daemon     running, pid %d\n", st.Pid)
		}
		_ = writeStatus(stdout, st, time.Now()) // its errFailing is decided below, after liveness
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

func writeStatus(w io.Writer, st runner.Status, now time.Time) error {
	applied := make([]string, len(st.Applied))
	for i, p := range st.Applied {
		applied[i] = p.String()
	}
	fmt.Fprintf(w, "subnet     %s\n", st.Subnet)
	fmt.Fprintf(w, "public ip  %s\n", st.PublicIP)
	if st.MTU > 0 {
		fmt.Fprintf(w, "mtu        %d (%s)\n", st.MTU, st.MTUSource)
	}
	if st.Journal != "" {
		fmt.Fprintf(w, "journal    %s\n", st.Journal)
	}
	fmt.Fprintf(w, "updated    %s (%s ago)\n", st.UpdatedAt.Format(time.RFC3339), now.Sub(st.UpdatedAt).Round(time.Second))
	fmt.Fprintf(w, "applied    %d: %s\n", len(applied), strings.Join(applied, " "))
	if st.LastSync.IsZero() {
		fmt.Fprintln(w, "last sync  never (not every admitted lease applied yet)")
	} else {
		fmt.Fprintf(w, "last sync  %s (%s ago)\n", st.LastSync.Format(time.RFC3339), now.Sub(st.LastSync).Round(time.Second))
	}
	writeRefused(w, st)
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
func writeRefused(w io.Writer, st runner.Status) {
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
	for _, r := range st.Refused {
		fmt.Fprintf(w, "  %s %s: %s\n", sanitize(r.Key), r.Reason, sanitize(r.Detail))
	}
	if len(st.Refused) < total {
		fmt.Fprintf(w, "  ... and %d more\n", total-len(st.Refused))
	}
}
