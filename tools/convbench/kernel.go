package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// pollEvery is how often waitKernel dumps the kernel's tables, unless a
// dump takes more than a fifth of that: then it waits four times as long
// as the dump took, so that polling keeps to a fifth of a core (a count
// of 1000 routes takes about 1.4 ms on the 2-core bench machine).
const pollEvery = 5 * time.Millisecond

// kernelCount is what the kernel holds of the remote leases: routes to a
// /24 inside countRoot in the main table and, on the vxlan device, its
// permanent IPv4 neighbours and its fdb entries with a dst.
type kernelCount struct {
	routes, neighs, fdb int
}

func (k kernelCount) String() string {
	return fmt.Sprintf("%d routes, %d permanent neighbours, %d fdb entries", k.routes, k.neighs, k.fdb)
}

// dumper sends rtnetlink dump requests on a socket of its own and reads
// the answers in place: vishvananda/netlink's RouteList and NeighList
// decode every entry into a struct (about 4 ms for 1000 routes on the
// bench machine), which, every few ms, would take a core from the daemon
// being timed.
type dumper struct {
	fd   int
	seq  uint32
	buf  []byte
	intr bool // the kernel marked a dump since the last count inconsistent
}

func newDumper() (*dumper, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &dumper{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (d *dumper) Close() error { return unix.Close(d.fd) }

// dump sends a dump request of type typ whose body is family followed by
// zeros (rtmsg and ndmsg both start with it) and calls each with every
// answer's body.
func (d *dumper) dump(typ uint16, family uint8, bodyLen int, each func(body []byte)) error {
	d.seq++
	req := make([]byte, unix.SizeofNlMsghdr+bodyLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], typ)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], d.seq)
	req[unix.SizeofNlMsghdr] = family
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for off := 0; off+unix.SizeofNlMsghdr <= n; {
			l := int(ne.Uint32(d.buf[off:]))
			if l < unix.SizeofNlMsghdr || off+l > n {
				return errors.New("netlink: truncated message")
			}
			mtyp, flags, seq := ne.Uint16(d.buf[off+4:]), ne.Uint16(d.buf[off+6:]), ne.Uint32(d.buf[off+8:])
			body := d.buf[off+unix.SizeofNlMsghdr : off+l]
			off += (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
			if seq != d.seq {
				continue // an answer to an earlier request
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 { // the table changed during the dump
				d.intr = true
			}
			switch mtyp {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if errno := int32(ne.Uint32(body)); errno != 0 {
						return fmt.Errorf("netlink dump: %w", unix.Errno(-errno))
					}
				}
				return nil
			default:
				each(body)
			}
		}
	}
}

// attr returns the value of the first attribute of type typ in attrs.
func attr(attrs []byte, typ uint16) ([]byte, bool) {
	ne := binary.NativeEndian
	for len(attrs) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(attrs))
		if l < unix.SizeofRtAttr || l > len(attrs) {
			return nil, false
		}
		if ne.Uint16(attrs[2:])&^unix.NLA_F_NESTED == typ {
			return attrs[unix.SizeofRtAttr:l], true
		}
		attrs = attrs[min((l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(attrs)):]
	}
	return nil, false
}

// routes counts the main table's IPv4 routes to a /24 inside countRoot.
func (d *dumper) routes() (int, error) {
	flush := netip.MustParsePrefix(countRoot)
	n := 0
	err := d.dump(unix.RTM_GETROUTE, unix.AF_INET, unix.SizeofRtMsg, func(b []byte) {
		if len(b) < unix.SizeofRtMsg || b[0] != unix.AF_INET || b[1] != 24 {
			return
		}
		attrs := b[unix.SizeofRtMsg:]
		table := uint32(b[4])
		if t, ok := attr(attrs, unix.RTA_TABLE); ok && len(t) == 4 {
			table = binary.NativeEndian.Uint32(t)
		}
		dst, ok := attr(attrs, unix.RTA_DST)
		if table != unix.RT_TABLE_MAIN || !ok || len(dst) != 4 {
			return
		}
		if flush.Contains(netip.AddrFrom4([4]byte(dst))) {
			n++
		}
	})
	return n, err
}

// neighbours counts link idx's entries of family: with ok(state, dst)
// true.
func (d *dumper) neighbours(family uint8, idx int32, ok func(state uint16, dst []byte) bool) (int, error) {
	n := 0
	err := d.dump(unix.RTM_GETNEIGH, family, unix.SizeofNdMsg, func(b []byte) {
		if len(b) < unix.SizeofNdMsg || int32(binary.NativeEndian.Uint32(b[4:])) != idx {
			return
		}
		dst, _ := attr(b[unix.SizeofNdMsg:], unix.NDA_DST)
		if ok(binary.NativeEndian.Uint16(b[8:]), dst) {
			n++
		}
	})
	return n, err
}

// count dumps the main routing table and, when dev is set (vxlan), dev's
// IPv4 neighbours and fdb. A missing dev counts as empty: the daemon has
// not made it yet. The neighbours and fdb are dumped only once the
// routes are all there (want), as they are all waitKernel needs then.
// consistent is false when the kernel marked a dump as interrupted by a
// change: its counts may be off either way.
func (d *dumper) count(dev string, want int) (k kernelCount, consistent bool, err error) {
	d.intr = false
	if k.routes, err = d.routes(); err != nil || dev == "" || k.routes != want {
		return k, !d.intr, err
	}
	link, err := netlink.LinkByName(dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return k, !d.intr, nil
		}
		return k, false, fmt.Errorf("link %s: %w", dev, err)
	}
	idx := int32(link.Attrs().Index)
	if k.neighs, err = d.neighbours(unix.AF_INET, idx, func(state uint16, _ []byte) bool {
		return state&unix.NUD_PERMANENT != 0
	}); err != nil {
		return k, false, err
	}
	k.fdb, err = d.neighbours(unix.AF_BRIDGE, idx, func(_ uint16, dst []byte) bool {
		return len(dst) == 4 && [4]byte(dst) != [4]byte{}
	})
	return k, !d.intr, err
}

// waitKernel dumps the kernel's tables every pollEvery until they hold
// exactly n routes (and, when dev is set, n permanent neighbours and n
// fdb entries on dev), and returns the time it first saw that; a dump the
// kernel marks inconsistent does not count. It fails when more than n
// show up in two consistent dumps in a row, when exited (if not nil) is
// closed first, or after timeout, saying what it last saw.
func waitKernel(ctx context.Context, dev string, n int, timeout time.Duration, exited <-chan struct{}) (time.Time, error) {
	d, err := newDumper()
	if err != nil {
		return time.Time{}, err
	}
	defer d.Close()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := time.NewTimer(0)
	defer next.Stop()
	want := kernelCount{routes: n}
	if dev != "" {
		want.neighs, want.fdb = n, n
	}
	over := 0
	for {
		t0 := time.Now()
		k, consistent, err := d.count(dev, n)
		if err != nil {
			return time.Time{}, err
		}
		at := time.Now()
		next.Reset(max(pollEvery-at.Sub(t0), 4*at.Sub(t0)))
		switch {
		case !consistent:
		case k == want:
			return at, nil
		case k.routes > n || k.neighs > n || k.fdb > n:
			if over++; over == 2 {
				return time.Time{}, fmt.Errorf("not converged: the kernel holds %s, more than the %d leases", k, n)
			}
		default:
			over = 0
		}
		select {
		case <-next.C:
		case <-exited:
			return time.Time{}, fmt.Errorf("not converged: exited while the kernel held %s of %d", k, n)
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("not converged after %v: the kernel holds %s of %d", timeout, k, n)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
