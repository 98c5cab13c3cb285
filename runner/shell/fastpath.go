package shell

import (
	"context"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/interp"
)

// The native fast path (see [FastPath]): the commands internal/netcmd
// reads as fast (the presets' ip route|addr|neigh|link, bridge fdb and
// arp -s forms; netcmd's files list them) are done in the daemon through
// rtnetlink, with the same messages iproute2 and net-tools send. A form
// not read, a name that does not resolve to the system's binary, and
// every failure (the object exists or is missing, a device is absent, the
// kernel refuses) run the real binary instead: a refused request changes
// nothing, so the real tool fails the same way and says so in its own
// words, with its exit status. The trace shows the commands as any other.

// fastDirs are where the fast path's tools must live.
var fastDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// netlinkHandle is the Shell's rtnetlink socket, opened at first use in
// the daemon's network namespace, one request at a time.
type netlinkHandle struct {
	once sync.Once
	mu   sync.Mutex
	h    *netlink.Handle
	err  error
}

func (n *netlinkHandle) do(op func(*netlink.Handle) error) error {
	n.once.Do(func() { n.h, n.err = netlink.NewHandle(unix.NETLINK_ROUTE) })
	if n.err != nil {
		return n.err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return op(n.h)
}

// fastPath is the fast-path middleware.
func (st *runState) fastPath(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.mw.fastPath || st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		c, err := readCmd(ctx, args)
		if err != nil || !c.Fast || strings.Contains(args[0], "/") {
			return next(ctx, args)
		}
		if !st.s.resolve.systemTool(interp.HandlerCtx(ctx), args[0], fastDirs) {
			return next(ctx, args)
		}
		if err := st.s.netlink.do(c.Apply); err != nil {
			st.s.log.Debug("fast path refused; running the real binary", "hook", st.hook.String(),
				"subnet", st.subnet, "command", args[0], "error", err)
			return next(ctx, args) // the real tool fails the same way, in its words
		}
		st.s.log.Debug("done through netlink", "hook", st.hook.String(), "subnet", st.subnet, "command", args[0])
		return nil
	}
}
