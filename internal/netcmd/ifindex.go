package netcmd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// devices looks up links by name as iproute2 and arp do (if_nametoindex:
// one SIOCGIF* ioctl on an AF_INET datagram socket). An RTM_GETLINK
// would return the whole link, which netlink decodes into a Link: a
// profile of vxlan's SubnetAdd showed that at half the time of its three
// kernel requests.
//
// socket is Env.Ioctl: the caller's socket, kept open between commands.
// Without one, each lookup opens and closes a socket of its own (a
// close is most of a lookup's cost).
type devices struct {
	socket func() (int, error)
}

// index is the index of link name in the socket's network namespace.
func (d devices) index(name string) (int, error) {
	ifr, err := d.ifreq(name, unix.SIOCGIFINDEX)
	if err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// hardwareType is link name's ARPHRD_* type (ARPHRD_ETHER for
// Ethernet), as arp reads it (SIOCGIFHWADDR).
func (d devices) hardwareType(name string) (uint16, error) {
	ifr, err := d.ifreq(name, unix.SIOCGIFHWADDR)
	if err != nil {
		return 0, err
	}
	return ifr.Uint16(), nil // the hardware address's sa_family
}

// ifreq does one SIOCGIF* request for name.
func (d devices) ifreq(name string, req uint) (*unix.Ifreq, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	var fd int
	if d.socket != nil {
		if fd, err = d.socket(); err != nil {
			return nil, err
		}
	} else {
		if fd, err = IoctlSocket(); err != nil {
			return nil, err
		}
		defer unix.Close(fd)
	}
	if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	return ifr, nil
}

// IoctlSocket opens a socket for Env.Ioctl in this thread's network
// namespace (close-on-exec); the caller closes it.
func IoctlSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return fd, nil
}
