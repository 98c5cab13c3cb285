package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

type verifyFlags struct {
	CommonFlags
	SourceFlags
	LabStoreFlags
	Nodes int           `flag:"nodes" envconfig:"NODES" default:"3" arg:"N" usage:"number of nodes (2..20)"`
	JSON  bool          `flag:"json" envconfig:"JSON" usage:"print the report card as JSON (for CI pipelines)"`
	Wait  time.Duration `flag:"wait" envconfig:"WAIT" default:"30s" arg:"DURATION" usage:"how long each check waits for the lab to converge"`
}

const verifySynopsis = "flexhook lab verify (--config FILE | --preset NAME) [--nodes N] [--store file|etcd] [--json]"

// verifyResync is how often the lab's nodes run every applied lease's
// SubnetAddCommand again: check 3 watches one such pass.
const verifyResync = 3 * time.Second

// verifier runs the fixed scenario of `flexhook lab verify` on one lab.
type verifier struct {
	ctx      context.Context
	lab      *netlab.Lab
	store    leases.Store // the nodes' store, as this process reaches it
	f        verifyFlags
	bin      string
	nodeArgs []string
	results  []checkResult
}

// cmdLabVerify runs the scenario on a fresh lab and prints the report
// card; it exits 0 only when every check passes.
func cmdLabVerify(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var f verifyFlags
	if err := parseFlags("lab verify", &f, verifySynopsis, args, stdout); err != nil {
		return err
	}
	switch {
	case f.Nodes < 2 || f.Nodes > 20:
		return usageErrorf("--nodes %d: want 2..20", f.Nodes)
	case f.Config == "" && f.Preset == "":
		return usageErrorf("lab verify: give --config FILE or --preset NAME")
	case f.LabStoreFlags.check() != nil:
		return f.LabStoreFlags.check()
	case os.Geteuid() != 0:
		return usageErrorf("lab verify: needs root: it creates network namespaces, links and mounts")
	}
	if _, _, err := requireSource(ctx, f.SourceFlags); err != nil {
		return err
	}
	v := &verifier{ctx: ctx, f: f}
	v.nodeArgs = []string{"--preset", f.Preset}
	if f.Config != "" {
		abs, err := filepath.Abs(f.Config)
		if err != nil {
			return err
		}
		v.nodeArgs = []string{"--config", abs}
	}
	v.nodeArgs = append(v.nodeArgs, "--trace", "--log-level", "debug", "--resync-interval", verifyResync.String())
	var err error
	if v.bin, err = os.Executable(); err != nil {
		return err
	}
	v.lab, err = netlab.New(ctx, labPrinter{w: io.Discard}, netlab.Nodes(f.Nodes), netlab.Flexhook(v.bin))
	if err != nil {
		return err
	}
	defer v.lab.Close() //nolint:contextcheck // the teardown runs after ctx is done; Close bounds itself
	ls, err := newLabStore(ctx, f.LabStoreFlags, v.lab)
	if err != nil {
		return err
	}
	v.nodeArgs = append(v.nodeArgs, ls.args...)
	if v.store, err = ls.open(ctx); err != nil {
		return err
	}
	defer v.store.Close()
	v.run()
	return v.report(stdout)
}

// run performs the checks in order; a check that cannot start (its
// predecessor left no lab to work on) fails naming why.
func (v *verifier) run() {
	n := v.f.Nodes
	base := make([]netlab.Snapshot, n+1)
	for i := 1; i <= n; i++ {
		s, err := v.lab.Snapshot(v.ctx, i)
		if err != nil {
			v.add(1, "start", []string{err.Error()})
			v.notRun(2, "needs a snapshot of every fresh node (check 1)")
			return
		}
		base[i] = s
	}
	before, up := v.startAll()
	if !up {
		v.notRun(2, "needs every node up (check 1)")
		return
	}
	if !v.connectivity(2, "connectivity: ICMP and TCP between every pair of pod addresses") {
		v.notRun(3, "needs every pod reaching every other (check 2)")
		return
	}
	v.mtu()
	v.idempotence()
	data := v.leaseData(v.lab.Subnet(n)) // leaving takes the lease
	if v.gracefulStop(n, base[n]) {
		v.removal(n, data, before)
	} else {
		v.skip(5, fmt.Sprintf("needs node %d to have left (check 4)", n))
	}
	v.restart()
	v.reboot()
	v.dryRunFidelity()
	v.restartLoss()
}

// restartLoss restarts each node's agent in turn (SIGTERM, then start
// again, as a rolling update does) while the next node pings its pod
// every 10 ms, through the restart and a settling time after it: a
// restart must lose nothing. The card says how much each one lost.
func (v *verifier) restartLoss() {
	const every, settle = 10 * time.Millisecond, 2 * time.Second
	n := v.f.Nodes
	var problems []string
	for i := 1; i <= n; i++ {
		from := i%n + 1
		p, err := v.lab.StartPing(v.ctx, from, v.lab.PodAddr(i), every)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		v.pause(settle / 4) // traffic flows before the restart
		if err := v.lab.RestartNode(v.ctx, i); err != nil {
			problems = append(problems, err.Error())
		}
		v.pause(settle)
		answered, lost, err := p.Stop()
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case lost > 0:
			problems = append(problems, fmt.Sprintf("node %d restart: %d of %d pings from node %d lost (%v without traffic)",
				i, lost, lost+answered, from, time.Duration(lost)*every))
		}
	}
	v.add(10, "restart: pings every 10 ms between pods across an agent restart of each node lose nothing", problems)
}

// pause waits d, or until the verification is cancelled.
func (v *verifier) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-v.ctx.Done():
	}
}

// startAll starts nodes 1..n-1, snapshots them (what the others look like
// without node n, for check 5), starts node n, and checks 1. It reports
// whether every node is up with its own lease.
func (v *verifier) startAll() ([]netlab.Snapshot, bool) {
	n := v.f.Nodes
	var problems []string
	before := make([]netlab.Snapshot, n+1)
	failed := map[int]bool{}
	for i := 1; i <= n; i++ {
		if i == n {
			v.waitSettled(n-1, func(st runner.Status) bool { return len(st.Applied) >= n-2 })
			for j := 1; j < n; j++ {
				if s, err := v.lab.Snapshot(v.ctx, j); err == nil {
					before[j] = s
				}
			}
		}
		if err := v.lab.StartNode(v.ctx, i, v.nodeArgs...); err != nil {
			// The first line says why; the log tail after it is in the
			// hook errors below.
			why, _, _ := strings.Cut(err.Error(), "; log:")
			problems = append(problems, fmt.Sprintf("node %d did not start: %s", i, why))
			problems = append(problems, v.hookErrors(i)...)
			failed[i] = true
		}
	}
	seen := map[netip.Prefix]int{}
	for i := 1; i <= n; i++ {
		s := v.lab.Subnet(i)
		if failed[i] {
			continue
		}
		if !v.lab.Running(i) {
			problems = append(problems, fmt.Sprintf("node %d is not running", i))
			continue
		}
		if !s.IsValid() {
			continue // said above: it did not start
		}
		if j, dup := seen[s]; dup {
			problems = append(problems, fmt.Sprintf("nodes %d and %d both hold %s", j, i, s))
		}
		seen[s] = i
	}
	return before, v.add(1, fmt.Sprintf("start: %d nodes up, leases distinct, PostStartupCommand ok", n), problems)
}

// waitSettled waits until each of nodes 1..upTo fails on nothing and
// its status.json satisfies ok, or the wait passes.
func (v *verifier) waitSettled(upTo int, ok func(runner.Status) bool) {
	poll(v.ctx, v.f.Wait, 200*time.Millisecond, func() bool {
		for i := 1; i <= upTo; i++ {
			st, err := runner.ReadStatus(v.lab.StateDir(i))
			if err != nil || len(st.Failing) > 0 || !ok(st) {
				return false
			}
		}
		return true
	})
}

// connectivity checks ICMP and TCP between every ordered pair of running
// nodes' pod addresses, waiting up to --wait.
func (v *verifier) connectivity(num int, name string) bool {
	n := v.f.Nodes
	var missing []string
	poll(v.ctx, v.f.Wait, 300*time.Millisecond, func() bool {
		missing = missing[:0]
		for i := 1; i <= n; i++ {
			if !v.lab.Running(i) { // a node down is no pair to skip: the mesh is not whole
				missing = append(missing, fmt.Sprintf("node %d is not running", i))
				continue
			}
			for j := 1; j <= n; j++ {
				if i == j || !v.lab.Running(j) {
					continue
				}
				if err := v.lab.Ping(v.ctx, i, v.lab.PodAddr(j)); err != nil {
					missing = append(missing, fmt.Sprintf("node %d -> node %d (%s): no ICMP reply", i, j, v.lab.PodAddr(j)))
					continue
				}
				if err := v.lab.TCP(v.ctx, i, j); err != nil {
					missing = append(missing, fmt.Sprintf("node %d -> node %d (%s): TCP: %v", i, j, v.lab.PodAddr(j), err))
				}
			}
		}
		return len(missing) == 0
	})
	return v.add(num, name, missing)
}

// mtu checks that each node's FLANNEL_MTU is what its pods' packets can
// be. Every node gets a pod as the flannel CNI plugin makes one (its own
// namespace behind a veth at FLANNEL_MTU); from every pod to every other,
// a Don't-Fragment ping of exactly FLANNEL_MTU bytes and a TCP transfer
// of podTransfer bytes must get through while the pods drop ICMP
// "fragmentation needed", as networks that filter ICMP do. Where the MTU
// promises more than the path carries, the ping fails and TCP hangs.
// The pods are removed again, so the checks after this one see the lab
// as before.
func (v *verifier) mtu() {
	n := v.f.Nodes
	var problems []string
	defer func() {
		for i := 1; i <= n; i++ {
			if err := v.lab.DelPod(v.ctx, i); err != nil {
				problems = append(problems, err.Error())
			}
		}
		v.add(9, fmt.Sprintf("mtu: pods at FLANNEL_MTU exchange Don't-Fragment packets of that size and %d MB over TCP, ICMP \"fragmentation needed\" filtered", podTransfer>>20), problems)
	}()
	mtus := make([]int, n+1)
	for i := 1; i <= n; i++ {
		mtu, err := v.lab.SubnetMTU(i)
		if err == nil && v.lab.Running(i) {
			_, err = v.lab.AddPod(v.ctx, i, mtu)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %d: %v", i, err))
			continue
		}
		mtus[i] = mtu
	}
	// All pairs at once: a black-holed transfer holds its pair until
	// the transfer's deadline, not the whole check once per pair.
	var wg sync.WaitGroup
	found := make([][]string, (n+1)*(n+1))
	for i := 1; i <= n; i++ {
		for j := 1; j <= n; j++ {
			if i == j || mtus[i] == 0 || mtus[j] == 0 {
				continue
			}
			wg.Go(func() {
				for _, err := range []error{
					v.lab.PodPingDF(v.ctx, i, j, mtus[i]),
					v.lab.PodTransfer(v.ctx, i, j, podTransfer),
				} {
					if err != nil {
						found[i*(n+1)+j] = append(found[i*(n+1)+j], fmt.Sprintf("node %d -> node %d: FLANNEL_MTU %d: %v", i, j, mtus[i], err))
					}
				}
			})
		}
	}
	wg.Wait()
	for _, f := range found {
		problems = append(problems, f...)
	}
}

// podTransfer is the size of check 9's TCP transfer between pods.
const podTransfer = 4 << 20

// idempotence watches every node run each applied lease's SubnetAdd
// again (the resync pass) and checks it changed nothing and failed
// nowhere.
func (v *verifier) idempotence() {
	n := v.f.Nodes
	var problems []string
	snaps := make([]netlab.Snapshot, n+1)
	passes := make([]int, n+1)
	for i := 1; i <= n; i++ {
		snaps[i], _ = v.lab.Snapshot(v.ctx, i)
		passes[i] = strings.Count(v.lab.Logs(i), "resync: adding every applied lease again")
	}
	start := time.Now()
	for i := 1; i <= n; i++ {
		logOffset := len(v.lab.Logs(i))
		resynced := poll(v.ctx, v.f.Wait-time.Since(start), 200*time.Millisecond, func() bool {
			return strings.Count(v.lab.Logs(i), "resync: adding every applied lease again") >= passes[i]+1 &&
				strings.Contains(v.lab.Logs(i)[logOffset:], `msg="hooks batch done"`)
		})
		if !resynced {
			problems = append(problems, fmt.Sprintf("node %d ran no second SubnetAddCommand in %v", i, v.f.Wait))
		}
		after, err := v.lab.Snapshot(v.ctx, i)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		// Processes are left out: a running node's hooks may be running a
		// command at either snapshot.
		for _, d := range netlab.Diff(snaps[i].Without("process"), after.Without("process")) {
			problems = append(problems, fmt.Sprintf("node %d changed: %s", i, d))
		}
		problems = append(problems, v.hookErrorsSince(i, logOffset)...)
	}
	v.add(3, "idempotence: SubnetAddCommand run again changes nothing and does not fail", problems)
}

// gracefulStop makes node i leave the cluster (flexhook leave) and
// compares it with its fresh namespace.
func (v *verifier) gracefulStop(i int, fresh netlab.Snapshot) (left bool) {
	var problems []string
	left = true
	if err := v.lab.LeaveNode(v.ctx, i); err != nil {
		problems = append(problems, err.Error())
		left = false
	}
	after, err := v.lab.Snapshot(v.ctx, i)
	if err != nil {
		problems = append(problems, err.Error())
	}
	// Routes, neighbours and fdb entries that lead to a peer still up
	// are check 5's (SubnetRemoveCommand); anything else left is the
	// backend's leftover.
	var live []string
	for j := 1; j <= v.f.Nodes; j++ {
		if j != i {
			live = append(live, v.lab.Subnet(j).String(), v.lab.Underlay(j).String(), v.leaseData(v.lab.Subnet(j)))
		}
	}
	for _, d := range netlab.Diff(fresh.WithoutLab(), after.WithoutLab()) {
		if toPeer(d, live) {
			continue
		}
		problems = append(problems, fmt.Sprintf("left behind on node %d: %s", i, d))
	}
	v.add(4, fmt.Sprintf("leave: ShutdownCommand leaves nothing of the backend on node %d", i), problems)
	return left
}

// toPeer reports whether a diff line is a route, neighbour or fdb entry
// naming one of the live peers' words.
func toPeer(d string, live []string) bool {
	if !strings.HasPrefix(d, "+ route:") && !strings.HasPrefix(d, "+ neigh:") && !strings.HasPrefix(d, "+ fdb:") {
		return false
	}
	for _, w := range live {
		if w != "" && strings.Contains(d, w) {
			return true
		}
	}
	return false
}

// removal removes node i's lease from the store and checks the other
// nodes hold nothing that points at it.
func (v *verifier) removal(i int, data string, before []netlab.Snapshot) {
	var problems []string
	sub := v.lab.Subnet(i)
	// The node left (check 4): its lease went with it, and the others
	// run SubnetRemoveCommand.
	if _, ok, err := v.lease(v.ctx, sub); err != nil {
		problems = append(problems, err.Error())
	} else if ok {
		problems = append(problems, fmt.Sprintf("node %d left, but its lease %s is still in the store", i, sub))
	}
	v.waitSettled(i-1, func(st runner.Status) bool { return !slices.Contains(st.Applied, sub) }) // their Remove ran
	words := []string{sub.String(), sub.Addr().String() + " ", v.lab.Underlay(i).String()}
	if data != "" {
		words = append(words, data)
	}
	for j := 1; j < i; j++ {
		after, err := v.lab.Snapshot(v.ctx, j)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		held := map[string]bool{}
		for _, p := range after.Pointing(words...) {
			problems = append(problems, fmt.Sprintf("node %d still holds %s", j, p))
			held[p] = true
		}
		if before[j] != nil {
			for _, d := range netlab.Diff(before[j].Without("process"), after.Without("process")) { // nodes still run hooks
				if strings.HasPrefix(d, "+ ") && !held[strings.TrimPrefix(d, "+ ")] {
					problems = append(problems, fmt.Sprintf("node %d gained since node %d came: %s", j, i, d))
				}
			}
		}
	}
	v.add(5, fmt.Sprintf("removal: after node %d's lease is removed the others hold nothing of it", i), problems)
}

// restart starts the removed node again and restarts node 1 gracefully:
// the mesh is whole again.
func (v *verifier) restart() {
	n := v.f.Nodes
	var problems []string
	oldData := v.leaseData(v.lab.Subnet(1))
	if err := v.lab.StartNode(v.ctx, n, v.nodeArgs...); err != nil {
		problems = append(problems, err.Error())
	}
	if err := v.lab.RestartNode(v.ctx, 1); err != nil {
		problems = append(problems, err.Error())
	}
	same := "the same"
	if v.leaseData(v.lab.Subnet(1)) != oldData {
		same = "new"
	}
	if len(problems) > 0 {
		v.add(6, "restart", problems)
		return
	}
	v.connectivity(6, fmt.Sprintf("restart: node %d back, node 1 restarted (%s BackendData): the mesh is whole", n, same))
}

// reboot makes node 1's namespace anew with its state dir kept.
func (v *verifier) reboot() {
	if err := v.lab.RebootNode(v.ctx, 1); err != nil { // it starts flexhook again
		v.add(7, "reboot", append([]string{err.Error()}, v.hookErrors(1)...))
		return
	}
	v.connectivity(7, "reboot: node 1's namespace made anew, state dir kept: it converges")
}

// dryRunFidelity compares the SubnetAddCommand node 2 traced for node 1's
// lease with what `flexhook dry-run` prints for the same inputs.
func (v *verifier) dryRunFidelity() {
	const name = "dry-run fidelity: dry-run prints the commands the run traced (node 2, node 1's lease)"
	own, peer := v.lab.Subnet(2), v.lab.Subnet(1)
	args := append([]string{"dry-run"}, v.nodeArgs[:2]...)
	args = append(args, "--subnet", own.String(), "--public-ip", v.lab.Underlay(2).String(),
		"--peer", fmt.Sprintf("%s,%s,%s", peer, v.lab.Underlay(1), v.leaseData(peer)))
	if d := v.leaseData(own); d != "" {
		args = append(args, "--backend-data", d)
	}
	out, err := exec.CommandContext(v.ctx, v.bin, args...).Output()
	if err != nil {
		v.add(8, name, []string{fmt.Sprintf("flexhook %s: %v", strings.Join(args, " "), err)})
		return
	}
	dry := dryRunBlock(string(out), "# SubnetAddCommand SUBNET="+peer.String())
	real := addBlock(v.lab.Logs(2), peer.String(), v.leaseData(peer))
	var problems []string
	if len(dry) == 0 && len(real) == 0 {
		problems = append(problems, "nothing to compare: neither the dry-run nor node 2's trace has a command of "+
			"SubnetAddCommand for node 1's lease, so the check proves nothing")
	} else if strings.Join(dry, "\n") != strings.Join(real, "\n") {
		problems = append(problems, "dry-run printed:")
		for _, l := range dry {
			problems = append(problems, "  "+l)
		}
		problems = append(problems, "the run traced:")
		for _, l := range real {
			problems = append(problems, "  "+l)
		}
	}
	v.add(8, name, problems)
}

// hookErrors returns node i's failed hooks and their stderr, last ones
// first, as the detail of a failed check.
func (v *verifier) hookErrors(i int) []string { return v.hookErrorsSince(i, 0) }

func (v *verifier) hookErrorsSince(i, offset int) []string {
	log := v.lab.Logs(i)
	if offset > len(log) {
		offset = len(log)
	}
	var out []string
	for _, line := range strings.Split(log[offset:], "\n") {
		msg, _ := logField(line, "msg")
		switch msg {
		case "hook failed; will retry":
			e, _ := logField(line, "error")
			out = append(out, fmt.Sprintf("node %d: %s", i, e))
		case "hook stderr":
			l, _ := logField(line, "line")
			h, _ := logField(line, "hook")
			out = append(out, fmt.Sprintf("node %d: %s stderr: %s", i, h, l))
		}
	}
	if len(out) > 10 {
		out = out[len(out)-10:]
	}
	return out
}

// lease finds the lease for subnet in the nodes' store.
func (v *verifier) lease(ctx context.Context, subnet netip.Prefix) (leases.Lease, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ls, err := v.store.List(ctx)
	if err != nil {
		return leases.Lease{}, false, fmt.Errorf("list the lab's leases: %w", err)
	}
	for _, l := range ls {
		if l.Subnet == subnet {
			return l, true, nil
		}
	}
	return leases.Lease{}, false, nil
}

// leaseData is the BackendData of the lease for subnet in the nodes'
// store ("" when there is none).
func (v *verifier) leaseData(subnet netip.Prefix) string {
	l, _, _ := v.lease(v.ctx, subnet)
	return l.Attrs.BackendData
}

// errNotYet is poll's "again".
var errNotYet = errors.New("not yet")

// poll asks done every interval until it says yes, wait passes or ctx
// ends, and returns its last answer.
func poll(ctx context.Context, wait, every time.Duration, done func() bool) bool {
	if wait <= 0 {
		return done()
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return retry.Do(pctx, retry.Backoff{Initial: every, Max: every}, func(context.Context) error {
		if done() {
			return nil
		}
		return errNotYet
	}, nil) == nil
}
