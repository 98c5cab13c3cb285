package netcmd

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// Kernel lists the objects of the network namespace h works in, named as
// Parse names them: links, addresses, routes of every table, and the
// neighbours and fdb entries someone set (permanent or noarp; learned
// ones are left out). (WireGuard peers are not listed: they need the
// wireguard generic netlink family.)
func Kernel(h *netlink.Handle) (map[Object]struct{}, error) {
	set := map[Object]struct{}{}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netcmd: list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		set[LinkObject(l.Attrs().Name)] = struct{}{}
	}
	addrs, err := h.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netcmd: list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := ipmath.FromIPNet(a.IPNet); ok {
			set[AddrObject(p, names[a.LinkIndex])] = struct{}{}
		}
	}
	routes, err := h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netcmd: list routes: %w", err)
	}
	for _, r := range routes {
		dst, ok := ipmath.FromIPNet(r.Dst)
		if !ok {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if r.Family == unix.AF_INET6 {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		}
		set[RouteObject(dst, uint32(r.Table), uint32(r.Priority))] = struct{}{}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
		ns, err := h.NeighList(0, fam)
		if err != nil {
			return nil, fmt.Errorf("netcmd: list neighbours: %w", err)
		}
		for _, n := range ns {
			// Only what someone set: learned neighbours and fdb entries
			// come and go by themselves and belong to nobody.
			if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0 {
				continue
			}
			dev := names[n.LinkIndex]
			ip, _ := netip.AddrFromSlice(n.IP)
			ip = ip.Unmap()
			switch {
			case fam == unix.AF_BRIDGE && len(n.HardwareAddr) == 6:
				set[FDBObject(n.HardwareAddr.String(), dev, ip)] = struct{}{}
			case fam != unix.AF_BRIDGE && ip.IsValid():
				set[NeighObject(ip, dev)] = struct{}{}
			}
		}
	}
	return set, nil
}
