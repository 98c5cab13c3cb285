package shell

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// polled reports whether fd is in an epoll set of this process (Go's
// poller has one), as /proc/self/fdinfo lists the sets' targets.
func polled(t *testing.T, fd int) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open(filepath.Join("/proc/self/fdinfo", e.Name()))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[0] == "tfd:" && fields[1] == strconv.Itoa(fd) {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	return false
}

// The fast path's rtnetlink socket is blocking and out of the poller, and
// the handle works through it.
func TestQuietRoute(t *testing.T) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer h.Close()
	s, err := routeSocket(h)
	require.NoError(t, err, "netlink keeps its socket where quietRoute looks (v1.3.1's sockets map)")
	fd := s.GetFd()
	require.True(t, polled(t, fd), "netlink's own socket is in the poller: the check below can fail")

	require.NoError(t, quietRoute(h))
	require.Equal(t, fd, s.GetFd())
	require.False(t, polled(t, fd), "the socket is out of the poller")
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	require.NoError(t, err)
	require.Zero(t, flags&unix.O_NONBLOCK, "the socket blocks")

	links, err := h.LinkList()
	require.NoError(t, err, "a dump through the new socket")
	require.NotEmpty(t, links)
	_, err = h.LinkByName("no-such-link-here")
	require.Error(t, err, "an error answer through the new socket")
}
