package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/internal/wgkey"
)

// The native fast path (see [FastPath]): the commands internal/netcmd
// reads as fast (the presets' ip route|addr|neigh|link, bridge fdb and
// arp -s forms, and wg set's peers, listen port and private key; netcmd's
// files list them) are done in the daemon through rtnetlink, with the
// same messages iproute2 and net-tools send, and through wgctrl, with
// the requests wireguard-tools makes to the kernel or to wireguard-go. A form
// not read, a name that does not resolve to the system's binary, and
// every failure (the object exists or is missing, a device is absent, the
// kernel refuses) run the real binary instead: a refused request changes
// nothing, so the real tool fails the same way and says so in its own
// words, with its exit status. `wg genkey` and `wg pubkey` (internal/wgkey)
// run in the daemon on the command's own streams, their refusals too, in
// wg's words. The trace shows the commands as any other.

// fastDirs are where the fast path's tools must live.
var fastDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// sockets are the Shell's kernel sockets for the fast path, each opened
// at first use in the daemon's network namespace and kept until Close:
// rtnetlink, the datagram socket of the device lookups' ioctls, and
// wgctrl's client (WireGuard's generic netlink family, if the kernel has
// it, and wireguard-go's UAPI sockets). One request at a time.
type sockets struct {
	log    *slog.Logger
	mu     sync.Mutex
	closed bool
	route  *netlink.Handle
	wg     *wgctrl.Client
	// ioctl is the device lookups' socket (netcmd.IoctlSocket), open
	// when hasIoctl.
	ioctl    int
	hasIoctl bool
}

// errClosed is the fast path's error after Close: the real binary runs.
var errClosed = errors.New("fast path sockets closed")

// apply does c through the sockets, relative paths starting at dir.
func (k *sockets) apply(c *netcmd.Cmd, dir string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errClosed
	}
	err := c.Apply(netcmd.Env{Route: k.openRoute, WireGuard: k.openWireGuard, Ioctl: k.openIoctl, Dir: dir})
	if errors.Is(err, os.ErrNotExist) && k.wg != nil {
		// No such WireGuard device to this client, whose kernel half
		// exists only if the kernel had WireGuard when it opened: the
		// next wg command opens a new one, so a module loaded since
		// (ip link add ... type wireguard loads it) is found.
		_ = k.wg.Close()
		k.wg = nil
	}
	return err
}

func (k *sockets) openRoute() (*netlink.Handle, error) {
	if k.route == nil {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("rtnetlink: %w", err)
		}
		if err := quietRoute(h); err != nil {
			// Slower, the same otherwise.
			k.log.Debug("fast path: rtnetlink socket left in the poller", "error", err)
		}
		k.route = h
	}
	return k.route, nil
}

func (k *sockets) openIoctl() (int, error) {
	if !k.hasIoctl {
		fd, err := netcmd.IoctlSocket()
		if err != nil {
			return -1, err
		}
		k.ioctl, k.hasIoctl = fd, true
	}
	return k.ioctl, nil
}

func (k *sockets) openWireGuard() (netcmd.WireGuard, error) {
	if k.wg == nil {
		c, err := wgctrl.New()
		if err != nil {
			return nil, fmt.Errorf("wgctrl: %w", err)
		}
		k.wg = c
	}
	return k.wg, nil
}

// isClosed reports whether Close was called.
func (k *sockets) isClosed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

// close closes the sockets; the fast path then runs the real binaries.
func (k *sockets) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	if k.route != nil {
		k.route.Close()
		k.route = nil
	}
	if k.hasIoctl {
		_ = unix.Close(k.ioctl) // a datagram socket's close does not fail
		k.hasIoctl = false
	}
	if k.wg != nil {
		err := k.wg.Close()
		k.wg = nil
		if err != nil {
			return fmt.Errorf("wgctrl: %w", err)
		}
	}
	return nil
}

// fastPath is the fast-path middleware.
func (st *runState) fastPath(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.mw.fastPath || st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		if run, ok := wgkey.Command(args); ok {
			return st.wgKey(ctx, args, run, next)
		}
		c, err := readCmd(ctx, args)
		if err != nil || !c.Fast || strings.Contains(args[0], "/") {
			return next(ctx, args)
		}
		hc := ioOf(ctx)
		if !st.s.resolve.systemTool(hc, args[0], fastDirs) {
			return next(ctx, args)
		}
		if err := st.s.sockets.apply(c, hc.Dir); err != nil {
			st.s.log.Debug("fast path refused; running the real binary", "hook", st.hook.String(),
				"subnet", st.subnet, "command", args[0], "error", err)
			return next(ctx, args) // the real tool fails the same way, in its words
		}
		if args[0] == "wg" {
			st.s.log.Debug("done through wgctrl", "hook", st.hook.String(), "subnet", st.subnet, "command", args[0])
			return nil
		}
		st.s.log.Debug("done through netlink", "hook", st.hook.String(), "subnet", st.subnet, "command", args[0])
		return nil
	}
}

// wgKey runs `wg genkey` or `wg pubkey` in the daemon on the command's
// stdin, stdout and stderr (a pipe of a pipeline, a redirected file, the
// hook's own), unless wg does not resolve to the system's binary, a
// stream is closed, or the Shell is closed: then the real wg runs. A read
// or write still blocked when the hook's context ends is cut short, and
// the command ends with the context's error, as a killed wg would.
func (st *runState) wgKey(ctx context.Context, args []string, run wgkey.Func, next interp.ExecHandlerFunc) error {
	hc := ioOf(ctx)
	hc.Stdin = stdinFile(hc.Stdin)
	if hc.Stdin == nil || hc.Stdout == nil || st.s.sockets.isClosed() ||
		!st.s.resolve.systemTool(hc, args[0], fastDirs) {
		return next(ctx, args)
	}
	stderr := hc.Stderr
	if w := callOf(ctx).stderr; w != nil {
		stderr = w
	}
	stop := context.AfterFunc(ctx, func() {
		// Only files in Go's poller (the interpreter's pipes) take a
		// deadline; the others do not block past the hook's end: their
		// writers are the hook's commands, killed with it.
		if f, ok := hc.Stdin.(*os.File); ok {
			_ = f.SetReadDeadline(time.Now())
		}
		if f, ok := hc.Stdout.(*os.File); ok {
			_ = f.SetWriteDeadline(time.Now())
		}
	})
	status := run(hc.Stdin, hc.Stdout, stderr)
	stop()
	if err := ctx.Err(); err != nil && status != 0 {
		return err
	}
	st.s.log.Debug("done in process", "hook", st.hook.String(), "subnet", st.subnet,
		"command", args[0]+" "+args[1], "status", status)
	if status != 0 {
		return interp.ExitStatus(status)
	}
	return nil
}

// Close releases the Shell's kernel sockets (the fast path's rtnetlink,
// ioctl and wgctrl handles). Runs after it do every command with the real
// binary. It may be called more than once.
func (s *Shell) Close() error { return s.sockets.close() }
