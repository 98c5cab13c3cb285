package runner

// The deterministic simulation of the engine's core: a seeded random
// schedule of lease adds, changes (data, PublicIP, a node's move to
// another subnet), deletes, refused leases, store outages (snapshots not
// delivered), hook failures (before, half-way through, after their
// effect), journal write failures (a full disk) and crashes at every
// point (between intent and hook, mid-hook, after a hook before its
// record, mid journal append with a torn tail, between a journal rewrite
// and the log's truncation). After the schedule every fault heals and
// the core runs to quiescence; then the fake kernel must hold exactly the
// objects of the admitted leases in the store, no Remove may have run
// with data that was never admitted and announced, and no Add for a
// refused lease.
//
// go test -run TestSimulation ./runner                 5000 schedules
// go test -run TestSimulation ./runner -sim.seed=N     one, with its events
// make soak (-sim.duration=10m)                        as many as fit
//
// A failing seed is shrunk (events dropped while it still fails) and
// printed as a replay; keep it in simRegressions.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

var (
	simSchedules = flag.Int("sim.schedules", 5000, "schedules TestSimulation runs")
	simSeed      = flag.Uint64("sim.seed", 0, "run only this seed, printing its events")
	simDuration  = flag.Duration("sim.duration", 0, "run schedules for this long instead of -sim.schedules (make soak)")
	simParallel  = flag.Int("sim.parallel", 1, "the core's parallel setting in the simulation (above 1 a schedule's faults reach hooks in the order the workers take them, so a failure may not replay)")
)

// simRegressions are seeds that once failed, each with what it found.
var simRegressions = []uint64{
	541,  // a torn journal tail on a full disk: the start failed (the repair's rewrite was fatal)
	898,  // a full disk healed while no Add waited: the intent error stayed, the node never in sync
	1033, // the same
	2232, // the same
	7661, // a Remove that failed half-way left its version "applied": when the lease came back, no Add ran
}

var (
	simNetwork = netip.MustParsePrefix("10.50.0.0/16")
	simOwn     = leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"),
		Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: leases.BackendType}}
	simPolicy = leases.Policy{Range: leases.Range{Network: simNetwork, SubnetLen: 24}, Own: simOwn, PublicIP: simOwn.Attrs.PublicIP}
)

// fault is what happens to one hook run.
type fault uint8

const (
	ok          fault = iota
	failBefore        // fails before any effect
	failHalf          // fails after half its effect
	failAfter         // fails after its whole effect
	crashBefore       // the process dies as the hook starts
	crashHalf         // dies half-way through its effect
	crashAfter        // dies after the hook succeeded, before it is recorded
)

var faultNames = []string{"ok", "fail-before", "fail-half", "fail-after", "crash-before", "crash-half", "crash-after"}

// event is one step of a schedule.
type event struct {
	kind   string // put, del, snap, step, tick, compact, crash, disk
	lease  leases.Lease
	faults []fault // step: the fault of each hook run, in order (then ok)
	crash  bool    // step: crash in the intent's append; compact: after the rewrite
	keep   float64 // crash: how much of the unsynced bytes survives
	d      time.Duration
	full   bool // disk
}

func (e event) String() string {
	l := e.lease
	switch e.kind {
	case "put":
		return fmt.Sprintf("put %s %s %q", l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData)
	case "del":
		return "del " + l.Subnet.String()
	case "step":
		var fs []string
		for _, f := range e.faults {
			fs = append(fs, faultNames[f])
		}
		return fmt.Sprintf("step faults=[%s] crash-in-intent=%v", strings.Join(fs, " "), e.crash)
	case "tick":
		return "tick " + e.d.String()
	case "compact":
		return fmt.Sprintf("compact crash=%v", e.crash)
	case "crash":
		return fmt.Sprintf("crash keep=%.2f", e.keep)
	case "disk":
		return fmt.Sprintf("disk full=%v", e.full)
	}
	return e.kind
}

// simNode is a node of the generated cluster: its identity (PublicIP,
// key) and where it is.
type simNode struct {
	ip     netip.Addr
	data   string
	subnet netip.Prefix // invalid: not in the store
}

// generate makes the schedule of a seed.
func generate(seed uint64) []event {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	nodes := make([]simNode, 2+rng.IntN(5))
	for i := range nodes {
		nodes[i] = simNode{ip: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), data: fmt.Sprintf("key%d.0", i)}
	}
	used := map[netip.Prefix]int{} // subnet -> node
	freeSubnet := func() netip.Prefix {
		for {
			s := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(2 + rng.IntN(6)), 0}), 24)
			if _, taken := used[s]; !taken {
				return s
			}
		}
	}
	lease := func(n simNode) leases.Lease {
		return leases.Lease{Subnet: n.subnet, Attrs: leases.Attrs{PublicIP: n.ip, BackendType: leases.BackendType, BackendData: n.data}}
	}
	var evs []event
	for range 20 + rng.IntN(40) {
		switch r := rng.IntN(100); {
		case r < 25: // a node joins, moves, changes its key or its address, or leaves
			i := rng.IntN(len(nodes))
			n := &nodes[i]
			switch c := rng.IntN(5); {
			case !n.subnet.IsValid():
				n.subnet = freeSubnet()
				used[n.subnet] = i
			case c == 0: // leaves
				delete(used, n.subnet)
				evs = append(evs, event{kind: "del", lease: lease(*n)})
				n.subnet = netip.Prefix{}
				continue
			case c == 1: // moves to another subnet, keeping its key
				delete(used, n.subnet)
				evs = append(evs, event{kind: "del", lease: lease(*n)})
				n.subnet = freeSubnet()
				used[n.subnet] = i
			case c == 2: // restarts with a new key
				n.data = fmt.Sprintf("key%d.%d", i, rng.IntN(1000))
			default: // its lease moves to another address
				n.ip = netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + 10*i + rng.IntN(10))})
			}
			evs = append(evs, event{kind: "put", lease: lease(*n)})
		case r < 30: // a lease admission refuses comes or goes
			bad := leases.Lease{Subnet: netip.MustParsePrefix("10.99.0.0/24"),
				Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.99"), BackendType: leases.BackendType, BackendData: "evil"}}
			if rng.IntN(2) == 0 {
				bad = leases.Lease{Subnet: netip.MustParsePrefix("10.50.200.0/24"),
					Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.98"), BackendType: leases.BackendType, BackendData: "a\nb"}}
			}
			kind := "put"
			if rng.IntN(3) == 0 {
				kind = "del"
			}
			evs = append(evs, event{kind: kind, lease: bad})
		case r < 45: // a snapshot reaches the core (none for a while: an outage)
			evs = append(evs, event{kind: "snap"})
		case r < 75:
			e := event{kind: "step", crash: rng.IntN(25) == 0}
			for range rng.IntN(4) {
				e.faults = append(e.faults, fault(rng.IntN(len(faultNames))))
			}
			evs = append(evs, e)
		case r < 87:
			evs = append(evs, event{kind: "tick", d: time.Duration(rng.IntN(10_000)) * time.Millisecond})
		case r < 92:
			evs = append(evs, event{kind: "compact", crash: rng.IntN(3) == 0})
		case r < 97:
			evs = append(evs, event{kind: "crash", keep: rng.Float64()})
		default:
			evs = append(evs, event{kind: "disk", full: rng.IntN(2) == 0})
		}
	}
	return evs
}

// memFS is a journalFS that knows what is durable: at a crash, the
// unsynced part of each file survives only in part (a torn tail), and a
// truncation not yet synced may be undone.
type memFS struct {
	visible, durable map[string][]byte
	full             bool // every write fails: a full disk
	crashNextSync    bool // the next synced append tears and kills the process
	crashed          bool
	rng              *rand.Rand
}

var errDiskFull = errors.New("no space left on device")

func newMemFS() *memFS {
	return &memFS{visible: map[string][]byte{}, durable: map[string][]byte{}}
}

func (m *memFS) ReadFile(name string) ([]byte, error) {
	b, ok := m.visible[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), b...), nil
}

func (m *memFS) Append(name string, data []byte, sync bool) error {
	switch {
	case m.crashed:
		return errors.New("dead")
	case m.full:
		return errDiskFull
	case sync && m.crashNextSync:
		m.crashNextSync, m.crashed = false, true
		m.visible[name] = append(m.visible[name], data[:m.rng.IntN(len(data))]...)
		return errors.New("killed mid-append")
	}
	m.visible[name] = append(m.visible[name], data...)
	if sync {
		m.durable[name] = append([]byte(nil), m.visible[name]...)
	}
	return nil
}

func (m *memFS) WriteAtomic(name string, write func(io.Writer) error) error {
	if m.full {
		return errDiskFull
	}
	var b bytes.Buffer
	if err := write(&b); err != nil {
		return err
	}
	m.visible[name] = b.Bytes()
	m.durable[name] = bytes.Clone(b.Bytes())
	return nil
}

func (m *memFS) Truncate(name string, size int64) error {
	if b, ok := m.visible[name]; ok {
		m.visible[name] = b[:min(int(size), len(b))]
	}
	return nil
}

func (m *memFS) Close() error { return nil }

// crash keeps what is durable plus, of what is not, a prefix (keep is
// the fraction).
func (m *memFS) crash(keep float64) {
	for name, v := range m.visible {
		d := m.durable[name]
		if len(v) >= len(d) && string(v[:len(d)]) == string(d) {
			extra := v[len(d):]
			d = append(d, extra[:int(keep*float64(len(extra)))]...)
		} else if keep >= 0.5 { // an unsynced truncation (and what followed it) did reach the disk
			d = v
		}
		m.visible[name] = append([]byte(nil), d...)
		m.durable[name] = append([]byte(nil), d...)
	}
	m.crashed, m.crashNextSync = false, false
}

// kernel is the fake kernel: the objects the hooks make. A lease version
// adds a route to its subnet via its PublicIP and a peer keyed by its
// BackendData allowed its subnet; its Remove deletes the route if it still
// goes via its PublicIP (ip route del S via IP) and the peer whatever it
// allows (wg set peer KEY remove).
type kernel struct {
	routes map[netip.Prefix]netip.Addr
	peers  map[string]netip.Prefix
}

// sim runs one schedule.
type sim struct {
	mu       sync.Mutex // the fake executor's, for -sim.parallel
	events   []event
	store    map[netip.Prefix]leases.Lease
	fs       *memFS
	k        kernel
	core     *core
	now      time.Time
	faults   []fault
	ctx      context.Context
	kill     context.CancelFunc
	admitted map[journalLease]bool // every version admission ever let through
	trace    []string
	err      error // the first property broken during the run
}

func runSchedule(events []event, parallel int) (trace []string, err error) {
	s := &sim{events: events, store: map[netip.Prefix]leases.Lease{}, fs: newMemFS(),
		k:   kernel{routes: map[netip.Prefix]netip.Addr{}, peers: map[string]netip.Prefix{}},
		now: time.Unix(1_800_000_000, 0), admitted: map[journalLease]bool{}}
	s.fs.rng = rand.New(rand.NewPCG(uint64(len(events)), 7))
	if err := s.boot(parallel); err != nil {
		return s.trace, err
	}
	for _, e := range events {
		s.trace = append(s.trace, e.String())
		s.apply(e, parallel)
		if s.err != nil {
			return s.trace, s.err
		}
	}
	return s.trace, s.settle()
}

func (s *sim) boot(parallel int) error {
	j, err := openJournal(s.fs, slog.New(slog.DiscardHandler), func() time.Time { return s.now })
	if err != nil {
		return fmt.Errorf("open journal after a crash: %w", err)
	}
	s.ctx, s.kill = context.WithCancel(context.Background())
	s.core = newCore(s.hook, j, retry.Backoff{Initial: time.Second, Max: 8 * time.Second}, parallel,
		slog.New(slog.DiscardHandler), nil)
	return nil
}

func (s *sim) snapshot() {
	snap := make([]leases.Lease, 0, len(s.store)+1)
	snap = append(snap, simOwn)
	for _, l := range s.store {
		snap = append(snap, l)
	}
	s.core.snapshot(simPolicy, snap, s.now)
	for _, d := range s.core.desired {
		s.admitted[*d] = true
	}
}

func (s *sim) apply(e event, parallel int) {
	switch e.kind {
	case "put":
		s.store[e.lease.Subnet] = e.lease
	case "del":
		delete(s.store, e.lease.Subnet)
	case "snap":
		s.snapshot()
	case "step":
		s.faults = append([]fault(nil), e.faults...)
		s.fs.crashNextSync = e.crash
		s.core.step(s.ctx, s.now)
		s.fs.crashNextSync = false
		if s.ctx.Err() != nil || s.fs.crashed {
			s.restart(s.fs.rng.Float64(), parallel)
		}
	case "tick":
		s.now = s.now.Add(e.d)
	case "compact":
		if e.crash { // the rewrite lands, the process dies before the log's truncation
			data, err := s.core.journal.encode()
			if err == nil && s.fs.WriteAtomic(JournalFile, writeData(data)) == nil {
				s.restart(1, parallel)
			}
			return
		}
		_ = s.core.journal.compact()
	case "crash":
		s.restart(e.keep, parallel)
	case "disk":
		s.fs.full = e.full
	}
}

// restart is a crash and a start: memory is lost, the disk keeps what it
// keeps, the store's watch sends a first snapshot.
func (s *sim) restart(keep float64, parallel int) {
	s.kill()
	s.fs.crash(keep)
	if err := s.boot(parallel); err != nil {
		s.err = err
		return
	}
	s.snapshot()
}

// hook is the fake executor: it applies a version's effect to the fake
// kernel, as far as the next fault lets it.
func (s *sim) hook(ctx context.Context, k hooks.Kind, l leases.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f := ok
	if len(s.faults) > 0 {
		f, s.faults = s.faults[0], s.faults[1:]
	}
	v := journalEntry(l)
	if !s.admitted[v] && s.err == nil {
		s.err = fmt.Errorf("%s ran for %s %s %q, a version admission never let through", k, l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData)
	}
	steps := []func(){}
	if k == hooks.SubnetAdd {
		steps = append(steps, func() { s.k.routes[l.Subnet] = l.Attrs.PublicIP })
		if l.Attrs.BackendData != "" {
			steps = append(steps, func() { s.k.peers[l.Attrs.BackendData] = l.Subnet })
		}
	} else {
		steps = append(steps, func() {
			if s.k.routes[l.Subnet] == l.Attrs.PublicIP {
				delete(s.k.routes, l.Subnet)
			}
		})
		if l.Attrs.BackendData != "" {
			steps = append(steps, func() { delete(s.k.peers, l.Attrs.BackendData) })
		}
	}
	do := func(n int) {
		for _, st := range steps[:n] {
			st()
		}
	}
	switch f {
	case ok:
		do(len(steps))
		return nil
	case failBefore:
		return errors.New("exit status 1")
	case failHalf:
		do(len(steps) / 2)
		return errors.New("exit status 2")
	case failAfter:
		do(len(steps))
		return errors.New("exit status 3")
	case crashBefore:
		s.kill()
		return ctx.Err()
	case crashHalf:
		do(len(steps) / 2)
		s.kill()
		return ctx.Err()
	default: // crashAfter
		do(len(steps))
		s.kill()
		return nil
	}
}

// settle heals every fault and runs the core until nothing is left to
// do, then checks the kernel.
func (s *sim) settle() error {
	s.fs.full = false
	s.faults = nil
	s.snapshot()
	for i := 0; ; i++ {
		if i == 100 {
			return fmt.Errorf("no quiescence after %d steps: queue %d, intent %w", i, s.core.queue.len(), s.core.intent.err)
		}
		s.core.step(s.ctx, s.now)
		if s.err != nil {
			return s.err
		}
		if s.core.inSync() {
			break
		}
		s.now = s.now.Add(9 * time.Second) // past every backoff (Max 8s)
	}
	want := kernel{routes: map[netip.Prefix]netip.Addr{}, peers: map[string]netip.Prefix{}}
	for _, d := range s.core.desired {
		want.routes[d.Subnet] = d.PublicIP
		if d.BackendData != "" {
			want.peers[d.BackendData] = d.Subnet
		}
	}
	if !maps.Equal(want.routes, s.k.routes) || !maps.Equal(want.peers, s.k.peers) {
		return fmt.Errorf("kernel %v %v, want %v %v", s.k.routes, s.k.peers, want.routes, want.peers)
	}
	for _, l := range s.store {
		if simPolicy.Range.Network.Contains(l.Subnet.Addr()) && !strings.Contains(l.Attrs.BackendData, "\n") {
			if _, ok := s.core.desired.get(l.Subnet); !ok {
				return fmt.Errorf("admissible lease %s is not desired", l.Subnet)
			}
		}
	}
	return nil
}

// realistic reports whether a schedule keeps the generator's rule: no
// two leases in the store share a node's identity (PublicIP or key), as
// flannel's stores keep one lease per node. Admission will refuse such
// duplicates (the ownership issue); shrinking must not invent them.
func realistic(events []event) bool {
	store := map[netip.Prefix]leases.Lease{}
	for _, e := range events {
		switch e.kind {
		case "put":
			for s, l := range store {
				if s != e.lease.Subnet && (l.Attrs.PublicIP == e.lease.Attrs.PublicIP || l.Attrs.BackendData == e.lease.Attrs.BackendData) {
					return false
				}
			}
			store[e.lease.Subnet] = e.lease
		case "del":
			delete(store, e.lease.Subnet)
		}
	}
	return true
}

// shrink drops events while the schedule still fails.
func shrink(events []event, parallel int) []event {
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(events); i++ {
			try := append(append([]event(nil), events[:i]...), events[i+1:]...)
			if !realistic(try) {
				continue
			}
			if _, err := runSchedule(try, parallel); err != nil {
				events, changed = try, true
				i--
			}
		}
	}
	return events
}

func checkSeed(t *testing.T, seed uint64, parallel int) bool {
	t.Helper()
	events := generate(seed)
	if _, err := runSchedule(events, parallel); err != nil {
		min := shrink(events, parallel)
		trace, err := runSchedule(min, parallel)
		t.Errorf("seed %d (parallel %d) fails: %v\nminimal replay (%d of %d events):\n  %s", seed, parallel, err, len(min), len(events),
			strings.Join(trace, "\n  "))
		return false
	}
	return true
}

func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		trace, err := runSchedule(generate(*simSeed), *simParallel)
		t.Logf("seed %d:\n  %s", *simSeed, strings.Join(trace, "\n  "))
		if err != nil {
			checkSeed(t, *simSeed, *simParallel)
		}
		return
	}
	for _, seed := range simRegressions {
		checkSeed(t, seed, *simParallel)
	}
	start := time.Now()
	n, failed := 0, 0
	for seed := uint64(1); ; seed++ {
		if *simDuration > 0 && time.Since(start) > *simDuration || *simDuration == 0 && n >= *simSchedules {
			break
		}
		n++
		parallel := *simParallel
		if n%5 == 0 && parallel == 1 { // one in five with workers: Removes, then Adds, each phase in parallel
			parallel = 3
		}
		if !checkSeed(t, seed, parallel) {
			if failed++; failed >= 3 {
				break
			}
		}
	}
	t.Logf("%d schedules in %s", n, time.Since(start).Round(time.Millisecond))
	fmt.Printf("simulation: %d schedules, %d failed\n", n, failed)
}
