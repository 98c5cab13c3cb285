package netcmd

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The device lookups use the caller's socket when Env hands one in (and
// leave it open), and a socket of their own when it does not. They only
// read: lo is in every network namespace, and a missing device or lo's
// hardware type stops each command before it asks the kernel to change
// anything.
func TestDeviceLookupSocket(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)

	own := devices{}
	idx, err := own.index("lo")
	require.NoError(t, err)
	assert.Equal(t, lo.Index, idx)
	_, err = own.index("fh-nodev0")
	assert.ErrorIs(t, err, unix.ENODEV)

	fd, err := IoctlSocket()
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	calls := 0
	handed := func() (int, error) {
		calls++
		return fd, nil
	}
	theirs := devices{socket: handed}
	idx, err = theirs.index("lo")
	require.NoError(t, err)
	assert.Equal(t, lo.Index, idx)
	typ, err := theirs.hardwareType("lo")
	require.NoError(t, err)
	assert.Equal(t, uint16(unix.ARPHRD_LOOPBACK), typ)
	assert.Equal(t, 2, calls)
	_, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	assert.NoError(t, err, "the handed-in socket stays open")

	refused := errors.New("no socket")
	_, err = devices{socket: func() (int, error) { return -1, refused }}.index("lo")
	assert.ErrorIs(t, err, refused)

	// Through Apply: arp -s reads lo's index and hardware type, then
	// refuses (not Ethernet); a route on a missing device stops at the
	// lookup. A nil handle: no request may reach the kernel.
	env := Env{Route: func() (*netlink.Handle, error) { return nil, nil }, Ioctl: handed}
	calls = 0
	for _, r := range []struct {
		argv  []string
		calls int
		err   error
	}{
		{[]string{"arp", "-s", "10.255.0.1", "02:00:00:00:00:01", "dev", "lo"}, 2, errNotEther},
		{[]string{"ip", "route", "del", "10.255.0.0/24", "dev", "fh-nodev0"}, 3, unix.ENODEV},
	} {
		c, err := Parse(r.argv)
		require.NoError(t, err)
		require.True(t, c.Fast, "%v", r.argv)
		assert.ErrorIs(t, c.Apply(env), r.err, "%v", r.argv)
		assert.Equal(t, r.calls, calls, "%v: the handed-in socket", r.argv)
		assert.ErrorIs(t, c.Apply(Env{Route: env.Route}), r.err, "%v: a socket of its own", r.argv)
	}
}
