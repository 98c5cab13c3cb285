package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a locked OS thread switched into network namespace
// name. Sockets fn creates belong to that namespace; so do children it
// starts. If switching back fails the thread stays locked, so the Go
// runtime retires it instead of reusing it in the wrong namespace.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("setns back from %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// listenIn listens on addr from inside netns ns; the listener stays there.
func listenIn(ctx context.Context, ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(ns, func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, addr)
		return err
	})
	return ln, err
}

// dialIn connects to addr from inside netns ns (from laddr when valid);
// the connection stays there.
func dialIn(ctx context.Context, ns, network string, laddr netip.Addr, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		d := net.Dialer{}
		if laddr.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(laddr, 0))
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// TCP opens one TCP connection from node from's pod address to node to's
// pod address, exchanges a line both ways, and checks that the server saw
// the client's pod address as the source.
func (l *Lab) TCP(ctx context.Context, from, to int) error {
	src, dst := l.PodAddr(from), l.PodAddr(to)
	if !src.IsValid() || !dst.IsValid() {
		return fmt.Errorf("netlab: tcp %d -> %d: node without pod address", from, to)
	}
	nf, err := l.node(from)
	if err != nil {
		return err
	}
	nt, err := l.node(to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ln, err := listenIn(ctx, nt.ns, "tcp4", netip.AddrPortFrom(dst, 0).String())
	if err != nil {
		return fmt.Errorf("netlab: tcp listen on node %d %s: %w", to, dst, err)
	}
	defer ln.Close()
	deadline, _ := ctx.Deadline()

	type result struct {
		peer netip.Addr
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = fmt.Fprintf(c, "%s from %s\n", line[:len(line)-1], peer)
		}
		res <- result{peer: peer, err: err}
	}()
	go func() { <-ctx.Done(); ln.Close() }()

	conn, err := dialIn(ctx, nf.ns, "tcp4", src, ln.Addr().String())
	if err != nil {
		return fmt.Errorf("netlab: tcp %s -> %s (node %d -> %d): %w", src, ln.Addr(), from, to, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	token := fmt.Sprintf("fhlab-%d-%d", from, to)
	if _, err := fmt.Fprintf(conn, "%s\n", token); err != nil {
		return fmt.Errorf("netlab: tcp node %d -> %d write: %w", from, to, err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("netlab: tcp node %d -> %d read: %w", from, to, err)
	}
	r := <-res
	if r.err != nil {
		return fmt.Errorf("netlab: tcp node %d -> %d server: %w", from, to, r.err)
	}
	if r.peer != src {
		return fmt.Errorf("netlab: tcp node %d -> %d: server saw source %s, want pod address %s", from, to, r.peer, src)
	}
	if want := fmt.Sprintf("%s from %s\n", token, src); reply != want {
		return fmt.Errorf("netlab: tcp node %d -> %d: reply %q, want %q", from, to, reply, want)
	}
	return nil
}

// wireguard run dir bookkeeping: the mount wrappers need the directory to
// exist as a mount point on the host; it is removed again when the last
// lab of this process closes, if this process created it and no other
// lab is alive.
var wgDir struct {
	refs    int
	created bool
}
var wgDirMu = make(chan struct{}, 1)

func acquireWireguardDir() error {
	wgDirMu <- struct{}{}
	defer func() { <-wgDirMu }()
	dir := wireguardRunDir()
	if wgDir.refs == 0 {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			switch err := os.Mkdir(dir, 0o700); {
			case errors.Is(err, os.ErrExist):
				// Another process's lab made it meanwhile (`lab verify`
				// runs side by side in TestImage): it is that one's.
			case err != nil:
				return fmt.Errorf("netlab: create %s: %w", dir, err)
			default:
				wgDir.created = true
			}
		}
	}
	wgDir.refs++
	return nil
}

func releaseWireguardDir(otherLabsAlive bool) {
	wgDirMu <- struct{}{}
	defer func() { <-wgDirMu }()
	wgDir.refs--
	if wgDir.refs == 0 && wgDir.created && !otherLabsAlive {
		_ = os.Remove(wireguardRunDir()) // fails harmlessly when not empty
		wgDir.created = false
	}
}
