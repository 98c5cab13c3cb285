package netcmd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ifIndex is the index of link name in this thread's network namespace,
// found as iproute2 and arp find it (if_nametoindex: one ioctl). An
// RTM_GETLINK would return the whole link, which netlink decodes into a
// Link: a profile of vxlan's SubnetAdd showed that at half the time of
// its three kernel requests.
func ifIndex(name string) (int, error) {
	ifr, err := ifreq(name, unix.SIOCGIFINDEX)
	if err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// ifHardwareType is link name's ARPHRD_* type (ARPHRD_ETHER for
// Ethernet), as arp reads it (SIOCGIFHWADDR).
func ifHardwareType(name string) (uint16, error) {
	ifr, err := ifreq(name, unix.SIOCGIFHWADDR)
	if err != nil {
		return 0, err
	}
	return ifr.Uint16(), nil // the hardware address's sa_family
}

// ifreq does one SIOCGIF* request for name on a socket of its own.
func ifreq(name string, req uint) (*unix.Ifreq, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
		return nil, fmt.Errorf("device %q: %w", name, err)
	}
	return ifr, nil
}
