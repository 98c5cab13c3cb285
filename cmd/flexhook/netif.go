package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// defaultRouteIface returns the interface of the IPv4 default route with
// the lowest metric, read from /proc/net/route (no shelling out to ip).
func defaultRouteIface() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", fmt.Errorf("find the default route: %w", err)
	}
	defer f.Close()
	return parseDefaultRoute(f)
}

// parseDefaultRoute parses /proc/net/route: a header line, then
// "Iface Destination Gateway Flags RefCnt Use Metric Mask ..." with hex
// fields. A default route has destination and mask 0 and the RTF_UP flag.
func parseDefaultRoute(r io.Reader) (string, error) {
	const rtfUp = 0x1
	sc := bufio.NewScanner(r)
	best, bestMetric := "", int64(-1)
	for first := true; sc.Scan(); first = false {
		fields := strings.Fields(sc.Text())
		if first || len(fields) < 8 {
			continue
		}
		flags, err1 := strconv.ParseUint(fields[3], 16, 32)
		metric, err2 := strconv.ParseInt(fields[6], 10, 64)
		if err1 != nil || err2 != nil || fields[1] != "00000000" || fields[7] != "00000000" || flags&rtfUp == 0 {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = fields[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read /proc/net/route: %w", err)
	}
	if best == "" {
		return "", fmt.Errorf("no IPv4 default route: give --public-ip or --iface")
	}
	return best, nil
}

// ifaceAddrs returns an interface's MTU, first IPv4 address and first
// global unicast IPv6 address (zero when absent).
func ifaceAddrs(name string) (mtu int, v4, v6 netip.Addr, err error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		var have []string
		if all, lerr := net.Interfaces(); lerr == nil {
			for _, i := range all {
				have = append(have, i.Name)
			}
		}
		return 0, v4, v6, usageErrorf("--iface %s: %v (this host has: %s)", name, err, strings.Join(have, ", "))
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return 0, v4, v6, fmt.Errorf("interface %s: addresses: %w", name, err)
	}
	for _, a := range addrs {
		ipn, _ := a.(*net.IPNet)
		p, ok := ipmath.FromIPNet(ipn)
		if !ok {
			continue
		}
		switch ip := p.Addr(); {
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && ip.IsGlobalUnicast() && !v6.IsValid():
			v6 = ip
		}
	}
	return ifi.MTU, v4, v6, nil
}

// ifaceWithAddr returns the name of the interface holding ip, or "".
func ifaceWithAddr(ip netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, _ := a.(*net.IPNet)
			if p, ok := ipmath.FromIPNet(ipn); ok && p.Addr() == ip {
				return ifi.Name
			}
		}
	}
	return ""
}

// nodeAddrs returns the addresses of this network namespace's interfaces
// with their prefix lengths, loopback and link-local left out: what lease
// admission protects (runner.NodeAddrs). Read before any hook runs.
func nodeAddrs() ([]netip.Prefix, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this node's addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range as {
		n, _ := a.(*net.IPNet)
		p, ok := ipmath.FromIPNet(n)
		if !ok || p.Addr().IsLoopback() || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
