package netlab

// A pod as the flannel CNI plugin makes one: its own network namespace
// behind a veth on the node's cni0, the veth's MTU the node's
// FLANNEL_MTU, the subnet's .1 as its gateway. Traffic between two pods
// crosses the overlay exactly as a real pod's does, at the size the
// plugin allows it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// podVeth is the node end of a pod's veth pair, on cni0.
const podVeth = "vethpod"

// blackHoleRules drop, in a pod's namespace, what a network that filters
// ICMP drops: "fragmentation needed" and "packet too big". A pod then
// learns no smaller path MTU, and a TCP connection whose segments the
// path cannot carry hangs, as it does in such networks.
const blackHoleRules = `table inet fhlab-pmtu {
	chain in {
		type filter hook input priority 0; policy accept;
		icmp type destination-unreachable icmp code frag-needed drop
		icmpv6 type packet-too-big drop
	}
}
`

// AddPod gives node i a pod: a namespace behind a veth pair whose node
// end is on cni0, both ends at mtu (as the flannel CNI plugin sets them
// from FLANNEL_MTU), the subnet's second address, and a default route via
// the pod address (.1). ICMP "fragmentation needed" is dropped in the pod
// (blackHoleRules), so path MTU discovery cannot rescue an MTU that is too
// big. It returns the pod's address; DelPod removes it.
func (l *Lab) AddPod(ctx context.Context, i, mtu int) (netip.Addr, error) {
	n, err := l.node(i)
	if err != nil {
		return netip.Addr{}, err
	}
	l.mu.Lock()
	gw, have := n.pod, n.podNs != ""
	l.mu.Unlock()
	if !gw.IsValid() {
		return netip.Addr{}, fmt.Errorf("netlab: node %d has no pod subnet yet", i)
	}
	if have {
		return netip.Addr{}, fmt.Errorf("netlab: node %d already has a pod", i)
	}
	addr := gw.Addr().Next()
	if !gw.Contains(addr) {
		return netip.Addr{}, fmt.Errorf("netlab: node %d: subnet %s has no room for a pod", i, gw.Masked())
	}
	ns := n.ns + "-pod"
	if err := l.addNetns(ctx, ns); err != nil {
		return netip.Addr{}, err
	}
	l.mu.Lock()
	n.podNs, n.podAddr = ns, addr
	l.mu.Unlock()
	m := strconv.Itoa(mtu)
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", n.ns, "link", "add", podVeth, "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", ns},
		{"-n", n.ns, "link", "set", podVeth, "master", "cni0"},
		{"-n", n.ns, "link", "set", podVeth, "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(addr, gw.Bits()).String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", gw.Addr().String()},
	} {
		if _, err := runIP(ctx, args...); err != nil {
			return netip.Addr{}, err
		}
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(blackHoleRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return netip.Addr{}, fmt.Errorf("netlab: node %d pod: nft: %w: %s", i, err, bytes.TrimSpace(out))
	}
	return addr, nil
}

// DelPod removes node i's pod (its veth first, so that nothing of it is
// left on the node when this returns); no pod is no error.
func (l *Lab) DelPod(ctx context.Context, i int) error {
	n, err := l.node(i)
	if err != nil {
		return err
	}
	l.mu.Lock()
	ns := n.podNs
	n.podNs, n.podAddr = "", netip.Addr{}
	l.mu.Unlock()
	if ns == "" {
		return nil
	}
	var errs []error
	if _, err := runIP(ctx, "-n", n.ns, "link", "del", podVeth); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	if err := removeNetns(ctx, ns); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Pod is node i's pod address (invalid without AddPod).
func (l *Lab) Pod(i int) netip.Addr {
	n := l.mustNode(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	return n.podAddr
}

// pod returns node i's pod namespace and address.
func (l *Lab) pod(i int) (string, netip.Addr, error) {
	n, err := l.node(i)
	if err != nil {
		return "", netip.Addr{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.podNs == "" {
		return "", netip.Addr{}, fmt.Errorf("netlab: node %d has no pod (AddPod)", i)
	}
	return n.podNs, n.podAddr, nil
}

// PodPingDF sends one Don't-Fragment ping of size bytes, IP header
// included, from node from's pod to node to's pod.
func (l *Lab) PodPingDF(ctx context.Context, from, to, size int) error {
	ns, src, err := l.pod(from)
	if err != nil {
		return err
	}
	_, dst, err := l.pod(to)
	if err != nil {
		return err
	}
	df, err := dfArgs(dst, size)
	if err != nil {
		return err
	}
	if err := pingOnce(ctx, ns, netip.Addr{}, dst, df...); err != nil {
		return fmt.Errorf("netlab: pod ping -M do of %d bytes %s -> %s: %w", size, src, dst, err)
	}
	return nil
}

// podTransferTimeout bounds one PodTransfer: a few MB between namespaces
// take milliseconds; a path MTU black hole holds them until this.
const podTransferTimeout = 10 * time.Second

// PodTransfer sends size bytes over one TCP connection from node from's
// pod to node to's pod and checks that all of them arrived, in time
// (podTransferTimeout). The sender writes at the MSS its pod's MTU
// allows, so a path narrower than that, with ICMP filtered, stalls it.
func (l *Lab) PodTransfer(ctx context.Context, from, to, size int) error {
	fromNs, src, err := l.pod(from)
	if err != nil {
		return err
	}
	toNs, dst, err := l.pod(to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, podTransferTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ln, err := listenIn(ctx, toNs, "tcp4", netip.AddrPortFrom(dst, 0).String())
	if err != nil {
		return fmt.Errorf("netlab: pod tcp listen %s: %w", dst, err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		k, _ := io.Copy(io.Discard, c)
		_, _ = fmt.Fprintf(c, "%d\n", k)
		got <- k
	}()
	go func() { <-ctx.Done(); ln.Close() }()

	conn, err := dialIn(ctx, fromNs, "tcp4", netip.Addr{}, ln.Addr().String())
	if err != nil {
		return fmt.Errorf("netlab: pod tcp %s -> %s: %w", src, ln.Addr(), err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	_, werr := io.Copy(conn, io.LimitReader(zeros{}, int64(size)))
	if werr == nil {
		werr = conn.(*net.TCPConn).CloseWrite()
	}
	var reply []byte
	if werr == nil {
		reply, werr = io.ReadAll(conn)
	}
	conn.Close()
	k := <-got
	if werr == nil && strings.TrimSpace(string(reply)) != strconv.Itoa(size) {
		werr = fmt.Errorf("the receiver counted %q", bytes.TrimSpace(reply))
	}
	if werr != nil {
		return fmt.Errorf("netlab: pod tcp %s -> %s: %d of %d bytes arrived in %v (%w)",
			src, dst, max(k, 0), size, podTransferTimeout, werr)
	}
	return nil
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// DialPod connects from node i's pod (AddPod) to addr, so a test can
// send from a pod's address, e.g. to a listener in the hub (ListenHub)
// and see whether the node masqueraded it. The connection stays in the
// pod's namespace.
func (l *Lab) DialPod(ctx context.Context, i int, network, addr string) (net.Conn, error) {
	ns, _, err := l.pod(i)
	if err != nil {
		return nil, err
	}
	c, err := dialIn(ctx, ns, network, netip.Addr{}, addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: dial %s from node %d's pod: %w", addr, i, err)
	}
	return c, nil
}

// ListenPod listens in node i's pod on its address and the given port
// (0: any), so a test sees the source address other pods' connections
// arrive with.
func (l *Lab) ListenPod(ctx context.Context, i int, network string, port uint16) (net.Listener, error) {
	ns, addr, err := l.pod(i)
	if err != nil {
		return nil, err
	}
	ln, err := listenIn(ctx, ns, network, netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("netlab: listen in node %d's pod: %w", i, err)
	}
	return ln, nil
}
