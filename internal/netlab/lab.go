// Package netlab builds throw-away multi-node networks out of Linux network
// namespaces for flexhook's integration tests and demo.
//
// A Lab is one hub namespace holding a bridge (the underlay, 192.0.2.0/24)
// and one namespace per node, joined to the hub by a veth pair; node X has
// underlay address 192.0.2.(10+X), lo up and ip_forward on. Nodes run the
// real flexhook binary (StartNode) inside their network namespace and a
// private mount namespace with its own /var/run/wireguard (a directory of
// the node, kept across its agents as a host keeps /run), so that
// wireguard-go's control sockets do not collide. Once a node has its lease,
// the lab gives it a "pod" address: the subnet's .1 on a bridge cni0.
//
// Everything is done with real iproute2 commands run directly (never a
// shell). Namespace steps that must happen right before an exec are done by
// re-executing the current binary, so every program using a Lab must call
// HandleReexec first thing in main or TestMain.
//
// Close removes every namespace, process and file the lab made, also after
// failures; New sweeps leftovers of labs whose process died.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Prefix starts the name of every namespace and temp dir a lab creates.
const Prefix = "fhlab-"

// ErrNotRoot is returned by New when the process is not root.
var ErrNotRoot = errors.New("netlab: needs root (network namespaces)")

// ErrNoReexec is returned by New when HandleReexec was not called.
var ErrNoReexec = errors.New("netlab: HandleReexec must be called first in main or TestMain")

// Logger receives the lab's progress lines; *testing.T satisfies it. When
// it also has Cleanup (testing.TB), New registers Close there, and when it
// has Failed and reports true at Close, the node logs are printed.
type Logger interface {
	Logf(format string, args ...any)
}

// Option configures New.
type Option func(*config) error

type config struct {
	nodes    int
	flexhook string
	sweep    bool
	ipv6     bool
	routed   []int
}

// Nodes sets how many nodes New creates (default 3, at most 200).
func Nodes(n int) Option {
	return func(c *config) error {
		if n < 0 || n > maxNodes {
			return fmt.Errorf("netlab: nodes %d out of range 0..%d", n, maxNodes)
		}
		c.nodes = n
		return nil
	}
}

// Flexhook sets the flexhook binary StartNode runs (required for
// StartNode).
func Flexhook(path string) Option {
	return func(c *config) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("netlab: flexhook path: %w", err)
		}
		c.flexhook = abs
		return nil
	}
}

// IPv6 gives every node an IPv6 underlay address too,
// fd00:192:0:2::(10+i)/64 on eth0, starts flexhook with --public-ipv6,
// and puts the first address of the node's IPv6 subnet (subnet.env's
// FLANNEL_IPV6_SUBNET, for a dual-stack config) on cni0.
func IPv6() Option {
	return func(c *config) error { c.ipv6 = true; return nil }
}

// Routed puts the given nodes on a second L2 segment, 198.51.100.0/24
// (bridge br1 in the hub; node X has 198.51.100.(10+X)), which the hub
// routes to and from the first: the hub gets 192.0.2.1 and 198.51.100.1,
// and every node a route to the other segment through it. A node there
// reaches the others only through a router, as a node in another rack
// does. Not with IPv6.
func Routed(nodes ...int) Option {
	return func(c *config) error {
		for _, i := range nodes {
			if i < 1 || i > maxNodes {
				return fmt.Errorf("netlab: routed node %d out of range 1..%d", i, maxNodes)
			}
		}
		c.routed = append(c.routed, nodes...)
		return nil
	}
}

// NoSweep keeps New from deleting leftovers of dead labs.
func NoSweep() Option {
	return func(c *config) error { c.sweep = false; return nil }
}

const maxNodes = 200

// Lab is a running set of namespaces. Its methods are safe for concurrent
// use; node indexes start at 1.
type Lab struct {
	id       string
	log      Logger
	flexhook string
	self     string
	work     string
	store    string
	hub      string

	mu     sync.Mutex
	nodes  []*node
	inodes map[uint64]string // netns inode -> name, for Leftovers
	closed bool
	wgHeld bool
	ipv6   bool  // IPv6
	routed []int // Routed
}

type node struct {
	index      int
	ns         string
	underlay   netip.Addr
	underlay6  netip.Addr // IPv6 only
	pod6       netip.Prefix
	dir        string
	stateDir   string
	subnetFile string
	logPath    string

	agent agent
	pod   netip.Prefix // subnet's .1 with the subnet's length
	mac   string       // eth0's MAC, kept across RebootNode as a NIC's is

	routed  bool       // on the second segment (Routed)
	podNs   string     // AddPod's namespace ("" without one)
	podAddr netip.Addr // its address
}

// agent is a node's flexhook process: its arguments, the running command
// (nil when stopped), closed done when it exited, with waitErr.
type agent struct {
	args    []string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile *os.File
}

// New creates the hub and the initial nodes. On error everything created
// so far is removed.
func New(ctx context.Context, log Logger, opts ...Option) (*Lab, error) {
	cfg := config{nodes: 3, sweep: true}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.ipv6 && len(cfg.routed) > 0 {
		return nil, errors.New("netlab: Routed does not go with IPv6")
	}
	if !reexecInstalled.Load() {
		return nil, ErrNoReexec
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netlab: iproute2: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("netlab: own executable: %w", err)
	}
	if cfg.sweep {
		if err := Sweep(ctx, log); err != nil {
			log.Logf("netlab: sweep: %v", err)
		}
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("netlab: random id: %w", err)
	}
	id := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	l := &Lab{
		id:       id,
		log:      log,
		flexhook: cfg.flexhook,
		self:     self,
		hub:      Prefix + id + "-hub",
		inodes:   map[uint64]string{},
		ipv6:     cfg.ipv6,
		routed:   cfg.routed,
	}
	if c, ok := log.(interface{ Cleanup(func()) }); ok {
		c.Cleanup(func() { _ = l.Close() }) //nolint:contextcheck // the teardown runs after ctx is done; Close bounds itself
	}
	if err := l.setup(ctx, cfg.nodes); err != nil {
		_ = l.Close() //nolint:contextcheck // a teardown must run even when ctx is what failed; Close bounds itself
		return nil, err
	}
	return l, nil
}

func (l *Lab) setup(ctx context.Context, n int) error {
	work, err := os.MkdirTemp("", Prefix+l.id+"-")
	if err != nil {
		return fmt.Errorf("netlab: work dir: %w", err)
	}
	l.work = work
	l.store = filepath.Join(work, "store")
	if err := os.Mkdir(l.store, 0o700); err != nil {
		return fmt.Errorf("netlab: store dir: %w", err)
	}
	if err := acquireWireguardDir(); err != nil {
		return err
	}
	l.wgHeld = true
	if err := l.addNetns(ctx, l.hub); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", l.hub, "link", "set", "lo", "up"},
		{"-n", l.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", l.hub, "link", "set", "br0", "up"},
	} {
		if _, err := runIP(ctx, args...); err != nil {
			return err
		}
	}
	if len(l.routed) > 0 {
		if err := l.addRouter(ctx); err != nil {
			return err
		}
	}
	for range n {
		if _, err := l.AddNode(ctx); err != nil {
			return err
		}
	}
	l.log.Logf("netlab: lab %s ready: %d nodes, store %s", l.id, n, l.store)
	return nil
}

func (l *Lab) addNetns(ctx context.Context, name string) error {
	if _, err := runIP(ctx, "netns", "add", name); err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, name), &st); err == nil {
		l.mu.Lock()
		l.inodes[st.Ino] = name
		l.mu.Unlock()
	}
	return nil
}

const netnsDir = "/run/netns"

// ID is the lab's unique id ("<pid>-<random>"), part of every name it makes.
func (l *Lab) ID() string { return l.id }

// StoreDir is the file-store directory every node shares.
func (l *Lab) StoreDir() string { return l.store }

// Nodes is the number of nodes (running or not).
func (l *Lab) Nodes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.nodes)
}

// AddNode creates one more node namespace on the underlay and returns its
// index. It does not start flexhook.
func (l *Lab) AddNode(ctx context.Context) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, errors.New("netlab: lab closed")
	}
	i := len(l.nodes) + 1
	if i > maxNodes {
		l.mu.Unlock()
		return 0, fmt.Errorf("netlab: at most %d nodes", maxNodes)
	}
	n := &node{
		index:    i,
		ns:       fmt.Sprintf("%s%s-n%d", Prefix, l.id, i),
		underlay: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
		dir:      filepath.Join(l.work, fmt.Sprintf("n%d", i)),
		routed:   slices.Contains(l.routed, i),
	}
	if n.routed {
		n.underlay = netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
	}
	if l.ipv6 {
		n.underlay6 = netip.MustParseAddr(fmt.Sprintf("fd00:192:0:2::%x", 10+i))
	}
	n.stateDir = filepath.Join(n.dir, "state")
	n.subnetFile = filepath.Join(n.dir, "subnet.env")
	n.logPath = filepath.Join(n.dir, "flexhook.log")
	l.nodes = append(l.nodes, n)
	l.mu.Unlock()

	if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
		return 0, fmt.Errorf("netlab: node %d dirs: %w", i, err)
	}
	if err := l.plumb(ctx, n); err != nil {
		return 0, err
	}
	return i, nil
}

// plumb makes node n's namespace and wires it to the hub: eth0 on the
// underlay, forwarding on.
func (l *Lab) plumb(ctx context.Context, n *node) error {
	i := n.index
	if err := l.addNetns(ctx, n.ns); err != nil {
		return err
	}
	peer := fmt.Sprintf("n%d", i)
	bridge, other := "br0", segment2
	if n.routed {
		bridge, other = "br1", segment1
	}
	steps := [][]string{
		{"-n", n.ns, "link", "set", "lo", "up"},
		append(append([]string{"-n", n.ns, "link", "add", "eth0"}, macArgs(n.mac)...), "type", "veth", "peer", "name", peer, "netns", l.hub),
		{"-n", l.hub, "link", "set", peer, "master", bridge},
		{"-n", l.hub, "link", "set", peer, "up"},
		{"-n", n.ns, "addr", "add", n.underlay.String() + "/24", "dev", "eth0"},
		{"-n", n.ns, "link", "set", "eth0", "up"},
	}
	if len(l.routed) > 0 {
		gw := hubAddr
		if n.routed {
			gw = hubAddr2
		}
		steps = append(steps, []string{"-n", n.ns, "route", "add", other.String(), "via", gw.String()})
	}
	for _, args := range steps {
		if _, err := runIP(ctx, args...); err != nil {
			return err
		}
	}
	if err := inNetns(n.ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("netlab: node %d ip_forward: %w", i, err)
	}
	if n.underlay6.IsValid() {
		if _, err := runIP(ctx, "-n", n.ns, "addr", "add", n.underlay6.String()+"/64", "dev", "eth0", "nodad"); err != nil {
			return err
		}
		if err := inNetns(n.ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1\n"), 0o644)
		}); err != nil {
			return fmt.Errorf("netlab: node %d ipv6 forwarding: %w", i, err)
		}
	}
	return nil
}

func macArgs(mac string) []string {
	if mac == "" {
		return nil
	}
	return []string{"address", mac}
}

// RebootNode is a node's reboot: its flexhook is killed (SIGKILL), every
// process left in its namespace too, the namespace is deleted with all
// it held (devices, addresses, routes, neighbours, fdb) and made anew on
// the same underlay address; the state dir is kept. flexhook then starts
// again with the same arguments. eth0 keeps its MAC, as a NIC does, so
// that the other nodes' ARP caches stay right.
func (l *Lab) RebootNode(ctx context.Context, i int) error {
	n, err := l.node(i)
	if err != nil {
		return err
	}
	if l.Running(i) {
		if err := l.KillNode(ctx, i); err != nil {
			return err
		}
	}
	if err := l.DelPod(ctx, i); err != nil {
		return err
	}
	procs, err := netnsProcesses(ctx, n.ns)
	if err != nil {
		return err
	}
	// Not /sys: sysfs shows the namespace of whoever mounted it.
	out, err := runIP(ctx, "-n", n.ns, "-br", "link", "show", "eth0")
	f := strings.Fields(string(out))
	if err != nil {
		return fmt.Errorf("netlab: node %d eth0 address: %w", i, err)
	}
	if len(f) < 3 {
		return fmt.Errorf("netlab: node %d eth0 address: %q", i, out)
	}
	n.mac = f[2]
	for _, p := range procs {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	// A reboot empties /run: the wireguard sockets go.
	if err := os.RemoveAll(filepath.Join(n.dir, "wireguard-run")); err != nil {
		return fmt.Errorf("netlab: node %d: %w", i, err)
	}
	// The kernel frees a deleted namespace's devices later, in the
	// background: delete the veth pair first so its hub end is gone too.
	if _, err := runIP(ctx, "-n", l.hub, "link", "del", fmt.Sprintf("n%d", i)); err != nil {
		return err
	}
	if _, err := runIP(ctx, "netns", "del", n.ns); err != nil {
		return err
	}
	l.mu.Lock()
	n.pod = netip.Prefix{} // the pod bridge went with the namespace
	l.mu.Unlock()
	if err := l.plumb(ctx, n); err != nil {
		return err
	}
	l.log.Logf("netlab: node %d rebooted: namespace %s made anew", i, n.ns)
	l.mu.Lock()
	args := n.agent.args
	l.mu.Unlock()
	return l.StartNode(ctx, i, args...)
}

func (l *Lab) node(i int) (*node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < 1 || i > len(l.nodes) {
		return nil, fmt.Errorf("netlab: no node %d (have %d)", i, len(l.nodes))
	}
	return l.nodes[i-1], nil
}

func (l *Lab) mustNode(i int) *node {
	n, err := l.node(i)
	if err != nil {
		panic(err)
	}
	return n
}

// Netns is node i's network namespace name.
func (l *Lab) Netns(i int) string { return l.mustNode(i).ns }

// Underlay is node i's underlay (public) address, 192.0.2.(10+i)
// (198.51.100.(10+i) for a Routed node).
func (l *Lab) Underlay(i int) netip.Addr { return l.mustNode(i).underlay }

// Underlay6 is node i's IPv6 underlay address (IPv6; invalid
// otherwise).
func (l *Lab) Underlay6(i int) netip.Addr { return l.mustNode(i).underlay6 }

// PodAddr6 is node i's IPv6 pod address on cni0 (IPv6 and a
// dual-stack config; invalid otherwise).
func (l *Lab) PodAddr6(i int) netip.Addr {
	n := l.mustNode(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	return n.pod6.Addr()
}

// StateDir is node i's --state-dir.
func (l *Lab) StateDir(i int) string { return l.mustNode(i).stateDir }

// LogPath is the file node i's flexhook output goes to.
func (l *Lab) LogPath(i int) string { return l.mustNode(i).logPath }

// Subnet is node i's leased subnet (zero before its first start).
func (l *Lab) Subnet(i int) netip.Prefix {
	n := l.mustNode(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	return n.pod.Masked()
}

// PodAddr is node i's pod address, the subnet's .1 on cni0 (invalid before
// its first start).
func (l *Lab) PodAddr(i int) netip.Addr {
	n := l.mustNode(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	return n.pod.Addr()
}

// `leases list|remove --store DIR`) and returns its combined output.
func (l *Lab) Flexhook(ctx context.Context, args ...string) ([]byte, error) {
	if l.flexhook == "" {
		return nil, errors.New("netlab: no flexhook binary (Flexhook)")
	}
	out, err := exec.CommandContext(ctx, l.flexhook, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: flexhook %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Exec runs argv in node i's network namespace and, while its flexhook
// runs, in that process's mount namespace (so `wg` finds wireguard-go's
// socket). It returns the combined output.
func (l *Lab) Exec(ctx context.Context, i int, argv ...string) ([]byte, error) {
	n, err := l.node(i)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("netlab: exec: empty argv")
	}
	l.mu.Lock()
	pid := 0
	if n.running() {
		pid = n.agent.cmd.Process.Pid
	}
	l.mu.Unlock()
	var cmd *exec.Cmd
	if pid != 0 {
		cmd = exec.CommandContext(ctx, l.self, argv...)
		cmd.Env = append(os.Environ(), reexecEnv+"="+modeEnter, pidEnv+"="+strconv.Itoa(pid))
	} else {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.ns}, argv...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: node %d: %s: %w: %s", i, strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Logs returns node i's flexhook output so far.
func (l *Lab) Logs(i int) string {
	b, _ := os.ReadFile(l.mustNode(i).logPath)
	return string(b)
}

func runIP(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("netlab: ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if k := strings.LastIndexByte(s, '\n'); k >= 0 {
		s = s[k+1:]
	}
	return s
}
