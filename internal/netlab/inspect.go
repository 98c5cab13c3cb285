package netlab

// What the lab reads from a running node: its data path (pings), its
// routes, links and counters, and the processes in its namespace.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ping sends one ICMP echo from node i's pod address to addr and reports
// whether a reply came back within a second.
func (l *Lab) Ping(ctx context.Context, from int, to netip.Addr) error {
	return l.ping(ctx, from, to)
}

// PingDF is Ping with one packet of size bytes, IP header included, and
// Don't Fragment set (ping -M do): it fails where any hop's MTU, the
// sender's own route first, is below size.
func (l *Lab) PingDF(ctx context.Context, from int, to netip.Addr, size int) error {
	df, err := dfArgs(to, size)
	if err != nil {
		return err
	}
	return l.ping(ctx, from, to, df...)
}

// dfArgs are ping's arguments for one Don't-Fragment packet of size
// bytes, IP header included, to to.
func dfArgs(to netip.Addr, size int) ([]string, error) {
	hdr := 28 // IPv4 + ICMP
	if to.Is6() {
		hdr = 48
	}
	if size <= hdr {
		return nil, fmt.Errorf("netlab: ping size %d: at most the headers", size)
	}
	return []string{"-M", "do", "-s", strconv.Itoa(size - hdr)}, nil
}

func (l *Lab) ping(ctx context.Context, from int, to netip.Addr, extra ...string) error {
	n, err := l.node(from)
	if err != nil {
		return err
	}
	src := l.PodAddr(from)
	if to.Is6() {
		src = l.PodAddr6(from)
	}
	if !src.IsValid() {
		return fmt.Errorf("netlab: node %d has no pod address yet", from)
	}
	if err := pingOnce(ctx, n.ns, src, to, extra...); err != nil {
		return fmt.Errorf("netlab: ping %s %s -> %s from node %d: %w", strings.Join(extra, " "), src, to, from, err)
	}
	return nil
}

// pingOnce sends one echo to to from namespace ns (from src when valid)
// and waits a second for the reply; the error ends with ping's last line.
func pingOnce(ctx context.Context, ns string, src, to netip.Addr, extra ...string) error {
	argv := []string{"netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "1"}
	if src.IsValid() {
		argv = append(argv, "-I", src.String())
	}
	argv = append(append(argv, extra...), to.String())
	if out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, lastLine(out))
	}
	return nil
}

// Route is one entry of a node's main routing table.
type Route struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// Routes lists node i's main routing table.
func (l *Lab) Routes(ctx context.Context, i int) ([]Route, error) {
	var rs []Route
	if err := l.ipJSON(ctx, i, &rs, "route", "show"); err != nil {
		return nil, err
	}
	return rs, nil
}

// ipJSON runs `ip -j ARGS...` in node i's namespace and decodes its
// output into v.
func (l *Lab) ipJSON(ctx context.Context, i int, v any, args ...string) error {
	n, err := l.node(i)
	if err != nil {
		return err
	}
	out, err := runIP(ctx, append([]string{"-n", n.ns, "-j"}, args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("netlab: parse `ip %s` of node %d: %w", strings.Join(args, " "), i, err)
	}
	return nil
}

// LinkStats holds a device's packet counters.
type LinkStats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
}

// Links lists the device names in node i's namespace.
func (l *Lab) Links(ctx context.Context, i int) ([]string, error) {
	var ls []struct {
		Name string `json:"ifname"`
	}
	if err := l.ipJSON(ctx, i, &ls, "link", "show"); err != nil {
		return nil, err
	}
	names := make([]string, len(ls))
	for k, x := range ls {
		names[k] = x.Name
	}
	return names, nil
}

// HasLink reports whether device dev exists in node i's namespace.
func (l *Lab) HasLink(ctx context.Context, i int, dev string) (bool, error) {
	names, err := l.Links(ctx, i)
	if err != nil {
		return false, err
	}
	return slices.Contains(names, dev), nil
}

// Stats reads device dev's counters in node i's namespace.
func (l *Lab) Stats(ctx context.Context, i int, dev string) (LinkStats, error) {
	type dir struct {
		Bytes   uint64 `json:"bytes"`
		Packets uint64 `json:"packets"`
	}
	var ls []struct {
		Stats struct {
			Rx dir `json:"rx"`
			Tx dir `json:"tx"`
		} `json:"stats64"`
	}
	if err := l.ipJSON(ctx, i, &ls, "-s", "link", "show", "dev", dev); err != nil {
		return LinkStats{}, err
	}
	if len(ls) != 1 {
		return LinkStats{}, fmt.Errorf("netlab: stats of %s on node %d: %d links listed", dev, i, len(ls))
	}
	s := ls[0].Stats
	return LinkStats{RxPackets: s.Rx.Packets, TxPackets: s.Tx.Packets, RxBytes: s.Rx.Bytes, TxBytes: s.Tx.Bytes}, nil
}

// Process is one process living in a node's network namespace.
type Process struct {
	Pid  int
	Comm string
}

// Processes lists the processes in node i's network namespace.
func (l *Lab) Processes(ctx context.Context, i int) ([]Process, error) {
	n, err := l.node(i)
	if err != nil {
		return nil, err
	}
	return netnsProcesses(ctx, n.ns)
}

func netnsProcesses(ctx context.Context, ns string) ([]Process, error) {
	out, err := runIP(ctx, "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var ps []Process
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		ps = append(ps, Process{Pid: pid, Comm: strings.TrimSpace(string(comm))})
	}
	return ps, nil
}

// PingRun is a ping from a node's pod address every interval, started by
// StartPing; Stop ends it and says what it lost.
type PingRun struct {
	cmd  *exec.Cmd
	out  syncBuffer
	done chan error
}

// StartPing pings to from node from's pod address every interval (ping
// -O: a packet not answered before the next is sent counts as lost)
// until Stop.
func (l *Lab) StartPing(ctx context.Context, from int, to netip.Addr, interval time.Duration) (*PingRun, error) {
	n, err := l.node(from)
	if err != nil {
		return nil, err
	}
	src := l.PodAddr(from)
	if !src.IsValid() {
		return nil, fmt.Errorf("netlab: node %d has no pod address yet", from)
	}
	p := &PingRun{done: make(chan error, 1)}
	p.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", n.ns, "ping", "-n", "-O",
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-I", src.String(), to.String())
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: ping: %w", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

// Stop ends the ping (SIGINT) and returns how many packets were
// answered and how many were lost: reported unanswered when the next one
// was sent (ping -O) and never answered later (a reply that comes late,
// on a busy machine, is no loss).
func (p *PingRun) Stop() (answered, lost int, err error) {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	<-p.done
	replied, late := map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(p.out.String(), "\n") {
		_, seq, ok := strings.Cut(line, "icmp_seq=")
		if !ok {
			continue
		}
		seq, _, _ = strings.Cut(seq, " ")
		switch {
		case strings.Contains(line, " bytes from "):
			replied[seq] = true
		case strings.HasPrefix(line, "no answer yet for "):
			late[seq] = true
		}
	}
	for seq := range late {
		if !replied[seq] {
			lost++
		}
	}
	if len(replied) == 0 && lost == 0 {
		return 0, 0, fmt.Errorf("netlab: ping said nothing: %s", lastLine([]byte(p.out.String())))
	}
	return len(replied), lost, nil
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
