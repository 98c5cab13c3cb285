package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// subnetEnvValue returns the value of key (FLANNEL_SUBNET, ...) in
// flannel's subnet.env at path, unquoted; ok is false when the file or
// the key is missing.
func subnetEnvValue(path, key string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			return strings.Trim(v, `"'`), true
		}
	}
	return "", false
}

// readSubnetEnv parses FLANNEL_SUBNET=10.50.3.1/24 from flannel's subnet.env.
func readSubnetEnv(path string) (netip.Prefix, bool) {
	v, ok := subnetEnvValue(path, "FLANNEL_SUBNET")
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, false
	}
	if p.Addr() == p.Masked().Addr() { // a bare network: use its .1
		p = netip.PrefixFrom(p.Addr().Next(), p.Bits())
	}
	return p, true
}

// readSubnetEnv6 parses FLANNEL_IPV6_SUBNET=fd50:0:0:3::1/64.
func readSubnetEnv6(path string) (netip.Prefix, bool) {
	v, ok := subnetEnvValue(path, "FLANNEL_IPV6_SUBNET")
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(v)
	return p, err == nil && p.Addr().Is6()
}

// SubnetMTU returns FLANNEL_MTU from node i's subnet.env.
func (l *Lab) SubnetMTU(i int) (int, error) {
	n, err := l.node(i)
	if err != nil {
		return 0, err
	}
	v, ok := subnetEnvValue(n.subnetFile, "FLANNEL_MTU")
	if !ok {
		return 0, fmt.Errorf("netlab: node %d: no FLANNEL_MTU in %s", i, n.subnetFile)
	}
	mtu, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("netlab: node %d: FLANNEL_MTU %q: %w", i, v, err)
	}
	return mtu, nil
}
