package shell

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// quietRoute makes h's rtnetlink socket a blocking one that Go's poller
// does not watch. netlink opens its sockets non-blocking and hands them
// to the poller, so every answer the kernel queues (an ACK per request)
// wakes a thread parked in epoll_wait: in a profile of the daemon
// converging 1000 vxlan leases that wake-up (sock_def_readable) was a
// tenth of a hook's time, and ip -batch, the floor, pays none. The fast
// path waits for each answer right after its request anyway, so a
// blocking socket loses nothing. The new socket takes the old one's
// descriptor number (dup3), which closes the old one and takes it out
// of the poller's epoll set; netlink's NetlinkSocket goes on using that
// number. netlink keeps the socket in an unexported field: when it is
// not found where v1.3.1 keeps it, h is left as it is (slower, the same
// otherwise), and TestQuietRoute fails.
func quietRoute(h *netlink.Handle) error {
	s, err := routeSocket(h)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink bind: %w", err)
	}
	if err := unix.Dup3(fd, s.GetFd(), unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("rtnetlink dup3: %w", err)
	}
	return nil
}

// routeSocket is h's NETLINK_ROUTE socket.
func routeSocket(h *netlink.Handle) (*nl.NetlinkSocket, error) {
	v := reflect.ValueOf(h).Elem().FieldByName("sockets")
	if !v.IsValid() || v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.Int ||
		v.Type().Elem() != reflect.TypeFor[*nl.SocketHandle]() {
		return nil, errors.New("netlink.Handle keeps no sockets map")
	}
	sh := v.MapIndex(reflect.ValueOf(unix.NETLINK_ROUTE))
	if !sh.IsValid() || sh.IsNil() {
		return nil, errors.New("netlink.Handle has no rtnetlink socket")
	}
	sock := sh.Elem().FieldByName("Socket")
	if sock.IsNil() {
		return nil, errors.New("netlink.Handle has no rtnetlink socket")
	}
	return (*nl.NetlinkSocket)(sock.UnsafePointer()), nil
}
