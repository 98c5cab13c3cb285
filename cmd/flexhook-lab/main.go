// Command flexhook-lab is the `make demo` program: it builds an N-node
// network out of Linux network namespaces (internal/netlab), runs the real
// flexhook binary with a preset on every node, shows the traced hook
// commands of one node, prints a ping matrix between the nodes' pod
// addresses, then waits for Ctrl-C (or exits at once with -once) and
// removes everything it made.
//
//	go run ./cmd/flexhook-lab [-preset vxlan|host-gw|wireguard] [-nodes 3] [-flexhook bin/flexhook] [-once]
//
// It needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
)

func main() {
	netlab.HandleReexec()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	preset    string
	nodes     int
	flexhook  string
	once      bool
	traceNode int
	wait      time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("flexhook-lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.preset, "preset", "vxlan", "preset every node runs: vxlan, host-gw or wireguard")
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes (1..50)")
	fs.StringVar(&o.flexhook, "flexhook", "bin/flexhook", "flexhook binary to run on the nodes")
	fs.BoolVar(&o.once, "once", false, "exit right after the ping matrix (for scripts and CI)")
	fs.IntVar(&o.traceNode, "trace-node", 1, "node whose traced hook commands are shown")
	fs.DurationVar(&o.wait, "wait", 20*time.Second, "how long to wait for every pair to reach each other")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.nodes < 1 || o.nodes > 50 {
		return o, fmt.Errorf("-nodes %d: want 1..50", o.nodes)
	}
	if o.traceNode < 1 || o.traceNode > o.nodes {
		return o, fmt.Errorf("-trace-node %d: want 1..%d", o.traceNode, o.nodes)
	}
	return o, nil
}

// run returns the exit code: 0 ok (every pair reached), 1 failure, 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "flexhook-lab: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "flexhook-lab: needs root: it creates network namespaces, links and mounts (try: sudo make demo)")
		return 2
	}
	if _, err := os.Stat(o.flexhook); err != nil {
		fmt.Fprintf(stderr, "flexhook-lab: flexhook binary: %v (build it with: make build)\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := printer{w: stderr}
	lab, err := netlab.New(ctx, log, netlab.WithNodes(o.nodes), netlab.WithFlexhook(o.flexhook))
	if err != nil {
		fmt.Fprintf(stderr, "flexhook-lab: %v\n", err)
		return 1
	}
	defer func() {
		fmt.Fprintln(stderr, "flexhook-lab: tearing down")
		if err := lab.Close(); err != nil {
			fmt.Fprintf(stderr, "flexhook-lab: teardown: %v\n", err)
		}
	}()

	for i := 1; i <= o.nodes; i++ {
		if err := lab.StartNode(ctx, i, "--preset", o.preset, "--trace"); err != nil {
			fmt.Fprintf(stderr, "flexhook-lab: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "\n%d nodes running preset %s (store %s)\n\n", o.nodes, o.preset, lab.StoreDir())
	fmt.Fprintf(stdout, "%-5s %-24s %-12s %-16s %s\n", "node", "netns", "underlay", "subnet", "pod address (cni0)")
	for i := 1; i <= o.nodes; i++ {
		fmt.Fprintf(stdout, "%-5d %-24s %-12s %-16s %s\n", i, lab.Netns(i), lab.Underlay(i), lab.Subnet(i), lab.PodAddr(i))
	}

	ok := pingMatrix(ctx, lab, o, stdout)
	fmt.Fprintf(stdout, "\ntraced hook commands of node %d (log: %s):\n", o.traceNode, lab.LogPath(o.traceNode))
	for _, l := range traceLines(lab.Logs(o.traceNode)) {
		fmt.Fprintln(stdout, "  "+l)
	}
	printMatrix(stdout, lab, o.nodes, ok)

	if ctx.Err() != nil {
		return 1
	}
	if !o.once {
		fmt.Fprintf(stdout, "\nthe lab stays up; try: ip netns exec %s ping %s\npress Ctrl-C to tear it down\n", lab.Netns(1), lab.PodAddr(o.nodes))
		<-ctx.Done()
	}
	if !allReached(ok) {
		return 1
	}
	return 0
}

// pingMatrix pings every ordered pair's pod addresses until each answered
// once or o.wait passed; ok[i][j] says node i reached node j.
func pingMatrix(ctx context.Context, lab *netlab.Lab, o options, stdout io.Writer) [][]bool {
	ok := make([][]bool, o.nodes+1)
	for i := range ok {
		ok[i] = make([]bool, o.nodes+1)
	}
	ctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	fmt.Fprintf(stdout, "\npinging every pod address from every other one (up to %v)...\n", o.wait)
	for {
		missing := 0
		for i := 1; i <= o.nodes; i++ {
			for j := 1; j <= o.nodes; j++ {
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
		msg, ok := field(line, "msg")
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
		hook, _ := field(line, "hook")
		subnet, _ := field(line, "subnet")
		s := hook
		if subnet != "" {
			s += " " + subnet
		}
		s += ": " + msg
		if st, ok := field(line, "status"); ok && st != "0" {
			s += "  [exit " + st + "]"
		}
		out = append(out, s)
	}
	return out
}

// field returns the value of key=value in a slog text line, unquoting a
// quoted value.
func field(line, key string) (string, bool) {
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

// printer writes the lab's progress lines.
type printer struct{ w io.Writer }

func (p printer) Logf(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}
