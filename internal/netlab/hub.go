package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
)

// hubAddr is the hub's own address on the underlay bridge (nodes have
// 192.0.2.(10+i)).
var hubAddr = netip.AddrFrom4([4]byte{192, 0, 2, 1})

// The two segments of a lab with Routed nodes, and the hub's address on
// the second (br1); the hub routes between them.
var (
	segment1 = netip.MustParsePrefix("192.0.2.0/24")
	segment2 = netip.MustParsePrefix("198.51.100.0/24")
	hubAddr2 = netip.AddrFrom4([4]byte{198, 51, 100, 1})
)

// hubMAC2 is br1's fixed MAC address (see AddHubAddress).
const hubMAC2 = "02:00:c6:33:64:01"

// addRouter makes the hub the router between the two segments: br1 with
// 198.51.100.1/24, 192.0.2.1/24 on br0, forwarding on.
func (l *Lab) addRouter(ctx context.Context) error {
	if _, err := l.AddHubAddress(ctx); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", l.hub, "link", "add", "br1", "address", hubMAC2, "type", "bridge"},
		{"-n", l.hub, "link", "set", "br1", "up"},
		{"-n", l.hub, "addr", "add", netip.PrefixFrom(hubAddr2, 24).String(), "dev", "br1"},
	} {
		if _, err := runIP(ctx, args...); err != nil {
			return err
		}
	}
	if err := inNetns(l.hub, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("netlab: hub ip_forward: %w", err)
	}
	return nil
}

// hubMAC is the bridge's fixed, locally administered MAC address.
const hubMAC = "02:00:c0:00:02:01"

// HubNetns is the hub's network namespace, which holds the underlay
// bridge. A shared service the nodes use (etcd) runs there with
// `ip netns exec HubNetns() ...` once AddHubAddress gave the hub an
// address; Close kills every process in it.
func (l *Lab) HubNetns() string { return l.hub }

// AddHubAddress puts 192.0.2.1/24 on the hub's underlay bridge, so that
// every node reaches a service listening there, and returns the address.
// Calling it again does nothing more.
func (l *Lab) AddHubAddress(ctx context.Context) (netip.Addr, error) {
	for _, args := range [][]string{
		// A bridge takes the lowest MAC of its ports unless given one: a
		// node joining later would change it under the ARP caches of the
		// others, whose packets to the hub would then be dropped.
		{"-n", l.hub, "link", "set", "br0", "address", hubMAC},
		{"-n", l.hub, "addr", "replace", netip.PrefixFrom(hubAddr, 24).String(), "dev", "br0"},
	} {
		if _, err := runIP(ctx, args...); err != nil {
			return netip.Addr{}, err
		}
	}
	return hubAddr, nil
}

// DialHub connects from the hub's network namespace, so that the test
// process itself (which lives outside the lab) can talk to a service on
// the underlay, e.g. as a gRPC context dialer. The connection stays in
// that namespace.
func (l *Lab) DialHub(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := dialIn(ctx, l.hub, network, netip.Addr{}, addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: dial %s from the hub: %w", addr, err)
	}
	return c, nil
}

// ListenHub listens in the hub's network namespace, on an address that
// AddHubAddress gave it, so that the test process can serve the nodes a
// service (e.g. a proxy to an API server it runs on loopback). The
// listener stays in that namespace; accepted connections are the nodes'.
func (l *Lab) ListenHub(ctx context.Context, network, addr string) (net.Listener, error) {
	ln, err := listenIn(ctx, l.hub, network, addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: listen on %s in the hub: %w", addr, err)
	}
	return ln, nil
}
