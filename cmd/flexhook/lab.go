package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
)

type labFlags struct {
	CommonFlags
	SourceFlags
	Nodes     int           `flag:"nodes" envconfig:"NODES" default:"3" arg:"N" usage:"number of nodes (1..50)"`
	Once      bool          `flag:"once" envconfig:"ONCE" usage:"exit right after the ping matrix (for scripts and CI) instead of keeping the lab up until Ctrl-C"`
	TraceNode int           `flag:"trace-node" envconfig:"TRACE_NODE" default:"1" arg:"N" usage:"node whose traced hook commands are shown"`
	Wait      time.Duration `flag:"wait" envconfig:"WAIT" default:"20s" arg:"DURATION" usage:"how long to wait for every pair of pod addresses to reach each other"`
	LabStoreFlags
}

const labSynopsis = "flexhook lab (--config FILE | --preset NAME) [--nodes N] [--store file|etcd] [--once]"

// cmdLab is `make demo` for any config: it builds an N-node network out of
// Linux network namespaces (internal/netlab: a hub bridge as underlay, a
// cni0 bridge with a pod address per node, a shared file store), runs this
// very binary's `flexhook run` with the config on every node, shows one
// node's traced hook commands and a ping matrix between the pod addresses,
// then keeps the lab up until Ctrl-C (or ends at once with --once) and
// removes everything it made. It exits 1 when a pair cannot reach.
func cmdLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		return cmdLabVerify(ctx, args[1:], stdout, stderr)
	}
	var f labFlags
	if err := parseFlags("lab", &f, labSynopsis, args, stdout); err != nil {
		return err
	}
	if err := checkLabFlags(f); err != nil {
		return err
	}
	if _, _, err := requireSource(ctx, f.SourceFlags); err != nil { // a broken config stops here, not on every node
		return err
	}
	nodeArgs := []string{"--preset", f.Preset, "--trace"}
	name := "preset " + f.Preset
	if f.Config != "" {
		abs, err := filepath.Abs(f.Config)
		if err != nil {
			return err
		}
		nodeArgs, name = []string{"--config", abs, "--trace"}, f.Config
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	lab, err := netlab.New(ctx, labPrinter{w: stderr}, netlab.Nodes(f.Nodes), netlab.Flexhook(self))
	if err != nil {
		return err
	}
	defer func() { //nolint:contextcheck // the teardown runs after ctx (Ctrl-C) is done; Close bounds itself
		fmt.Fprintln(stderr, "flexhook lab: tearing down")
		if err := lab.Close(); err != nil {
			fmt.Fprintf(stderr, "flexhook lab: teardown: %v\n", err)
		}
	}()
	ls, err := newLabStore(ctx, f.LabStoreFlags, lab)
	if err != nil {
		return err
	}
	nodeArgs = append(nodeArgs, ls.args...)
	store := ls.where
	for i := 1; i <= f.Nodes; i++ {
		if err := lab.StartNode(ctx, i, nodeArgs...); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\n%d nodes running %s (store %s)\n\n", f.Nodes, name, store)
	fmt.Fprintf(stdout, "%-5s %-24s %-12s %-16s %s\n", "node", "netns", "underlay", "subnet", "pod address (cni0)")
	for i := 1; i <= f.Nodes; i++ {
		fmt.Fprintf(stdout, "%-5d %-24s %-12s %-16s %s\n", i, lab.Netns(i), lab.Underlay(i), lab.Subnet(i), lab.PodAddr(i))
	}
	ok := pingMatrix(ctx, lab, f, stdout)
	fmt.Fprintf(stdout, "\ntraced hook commands of node %d (log: %s):\n", f.TraceNode, lab.LogPath(f.TraceNode))
	for _, l := range traceLines(lab.Logs(f.TraceNode)) {
		fmt.Fprintln(stdout, "  "+l)
	}
	printMatrix(stdout, lab, f.Nodes, ok)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !f.Once {
		fmt.Fprintf(stdout, "\nthe lab stays up; try: ip netns exec %s ping %s\npress Ctrl-C to tear it down\n", lab.Netns(1), lab.PodAddr(f.Nodes))
		<-ctx.Done()
	}
	if !allReached(ok) {
		return &exitError{code: exitFailure, err: fmt.Errorf("lab: some pod addresses did not reach each other")}
	}
	return nil
}

// checkLabFlags rejects lab's flags that cannot work, and a machine that
// cannot run a lab (exit 2).
func checkLabFlags(f labFlags) error {
	switch {
	case f.Nodes < 1 || f.Nodes > 50:
		return usageErrorf("--nodes %d: want 1..50", f.Nodes)
	case f.TraceNode < 1 || f.TraceNode > f.Nodes:
		return usageErrorf("--trace-node %d: want 1..%d", f.TraceNode, f.Nodes)
	case f.Config == "" && f.Preset == "":
		return usageErrorf("lab: give --config FILE or --preset NAME")
	case f.LabStoreFlags.check() != nil:
		return f.LabStoreFlags.check()
	case runtime.GOOS != "linux":
		return usageErrorf("lab: needs Linux network namespaces")
	case os.Geteuid() != 0:
		return usageErrorf("lab: needs root: it creates network namespaces, links and mounts (try: sudo flexhook lab ...)")
	}
	return nil
}

// pingMatrix pings every ordered pair's pod addresses until each answered
// once or o.wait passed; ok[i][j] says node i reached node j.
func pingMatrix(ctx context.Context, lab *netlab.Lab, o labFlags, stdout io.Writer) [][]bool {
	ok := make([][]bool, o.Nodes+1)
	for i := range ok {
		ok[i] = make([]bool, o.Nodes+1)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	fmt.Fprintf(stdout, "\npinging every pod address from every other one (up to %v)...\n", o.Wait)
	for {
		missing := 0
		for i := 1; i <= o.Nodes; i++ {
			for j := 1; j <= o.Nodes; j++ {
				if i == j || ok[i][j] {
					continue
				}
				if lab.Ping(ctx, i, lab.PodAddr(j)) == nil {
					ok[i][j] = true
				} else {
					missing++
				}
			}
		}
		if missing == 0 {
			return ok
		}
		select {
		case <-ctx.Done():
			return ok
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// allReached reports whether every node reached every other one.
func allReached(ok [][]bool) bool {
	for i := 1; i < len(ok); i++ {
		for j := 1; j < len(ok); j++ {
			if i != j && !ok[i][j] {
				return false
			}
		}
	}
	return true
}

func printMatrix(w io.Writer, lab *netlab.Lab, n int, ok [][]bool) {
	fmt.Fprintf(w, "\nping matrix (row = from pod address, column = to pod address):\n%-16s", "")
	for j := 1; j <= n; j++ {
		fmt.Fprintf(w, " %-14s", addr(lab.PodAddr(j)))
	}
	fmt.Fprintln(w)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "%-16s", addr(lab.PodAddr(i)))
		for j := 1; j <= n; j++ {
			mark := "-"
			switch {
			case i == j:
			case ok[i][j]:
				mark = "✓"
			default:
				mark = "✗"
			}
			fmt.Fprintf(w, " %-14s", mark)
		}
		fmt.Fprintln(w)
	}
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return "?"
	}
	return a.String()
}

// traceLines picks flexhook's --trace records (slog text lines whose
// message starts with "+ ") out of a node log and formats them as
// "<hook> <subnet>: + argv [exit N]".
func traceLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		msg, ok := logField(line, "msg")
		if !ok {
			continue
		}
		if strings.Contains(msg, "wireguard-go") { // the userspace fallback at work
			out = append(out, "("+msg+")")
			continue
		}
		if !strings.HasPrefix(msg, "+ ") {
			continue
		}
		hook, _ := logField(line, "hook")
		subnet, _ := logField(line, "subnet")
		s := hook
		if subnet != "" {
			s += " " + subnet
		}
		s += ": " + msg
		if st, ok := logField(line, "status"); ok && st != "0" {
			s += "  [exit " + st + "]"
		}
		out = append(out, s)
	}
	return out
}

// logField returns the value of key=value in a slog text line, unquoting a
// quoted value.
func logField(line, key string) (string, bool) {
	k := strings.Index(line, " "+key+"=")
	if k < 0 {
		return "", false
	}
	rest := line[k+len(key)+2:]
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", false
		}
		v, err := strconv.Unquote(q)
		return v, err == nil
	}
	if sp := strings.IndexByte(rest, ' '); sp >= 0 {
		rest = rest[:sp]
	}
	return rest, true
}

// labPrinter writes the lab's progress lines.
type labPrinter struct{ w io.Writer }

func (p labPrinter) Logf(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}
