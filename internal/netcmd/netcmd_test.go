package netcmd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The forms the fast path takes (Fast), and near misses it leaves to the real
// binary (the parity suite, fastpath_integration_test.go, runs both
// against the kernel).
func TestFastOpForms(t *testing.T) {
	for _, r := range []struct {
		cmd  string
		fast bool
	}{
		{"ip route add 10.50.2.0/24 via 192.0.2.2", true},
		{"ip route del 10.50.2.0/24 via 192.0.2.2", true},
		{"ip route delete 10.50.2.0/24", true},
		{"ip route replace 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", true},
		{"ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", true},
		{"ip route add 10.50.0.0/16 dev flannel-wg", true},
		{"ip -4 route add 10.50.2.0/24 via 192.0.2.2 dev eth0 onlink", true},
		{"ip -6 route add fd00:1::/64 via fd00::2", true},
		{"ip -6 route add 10.50.2.0/24 via 192.0.2.2", false},
		{"ip route add 10.50.2.5/24 via 192.0.2.2", false},
		{"ip route add default via 192.0.2.2", false},
		{"ip route add 10.50.2.0/24 via fd00::2", false},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 metric 5", true},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 via 192.0.2.3", false},
		{"ip route del 10.50.2.0/24 nexthop via 192.0.2.2", false},
		{"ip route add 10.50.2.0/24 nexthop", false},
		{"ip r add 10.50.2.0/24 via 192.0.2.2", true},
		{"ip route show", false},
		{"ip -d route add 10.50.2.0/24 via 192.0.2.2", false},
		{"ip addr add 10.50.1.0/32 dev flannel-vxlan", true},
		{"ip address del 10.50.1.0/32 dev flannel-vxlan", true},
		{"ip addr add 10.50.1.0/32 dev flannel-vxlan label x", false},
		{"ip addr add 10.50.1.0 dev flannel-vxlan", true},
		{"ip link set flannel-vxlan up", true},
		{"ip link set mtu 1450 dev flannel-vxlan", true},
		{"ip link set dev flannel-vxlan down mtu 1400", true},
		{"ip link set flannel-vxlan", false},
		{"ip link set flannel-vxlan up down", false},
		{"ip link set flannel-vxlan address 02:00:00:00:00:01", false},
		{"ip link set mtu x dev flannel-vxlan", false},
		{"ip link del flannel-vxlan", true},
		{"ip link delete dev flannel-wg", true},
		{"ip link add flannel-vxlan type vxlan id 1 dstport 8472 nolearning", true},
		{"ip link add flannel-vxlan type vxlan id 1 dstport 8472", true},
		{"ip link add flannel-vxlan type vxlan id 1", false},
		{"ip link add flannel-vxlan type vxlan id 1 dstport 8472 dev eth0", false},
		{"ip link add flannel-wg type wireguard", false},
		{"ip neigh add 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev flannel-vxlan", true},
		{"ip neigh replace 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev flannel-vxlan nud permanent", true},
		{"ip neigh del 10.50.2.0 dev flannel-vxlan", true},
		{"ip neigh add 10.50.2.0 dev flannel-vxlan", false},
		{"ip neigh add 10.50.2.0 lladdr b2-d1-fc-40-8d-2f dev flannel-vxlan", false},
		{"ip neigh add 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev flannel-vxlan nud failed", false},
		{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2", true},
		{"bridge fdb append 00:00:00:00:00:00 dev flannel-vxlan self dst 192.0.2.3", true},
		{"bridge fdb del b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2", true},
		{"bridge fdb del b2:d1:fc:40:8d:2f dev flannel-vxlan self", true},
		{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self", false},
		{"bridge fdb del b2:d1:fc:40:8d:2f dev flannel-vxlan", false},
		{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan dst 192.0.2.2", false},
		{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self master dst 192.0.2.2", false},
		{"bridge fdb show", false},
		{"arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan", true},
		{"arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan temp", false},
		{"arp -s 10.50.2.0 b2:d1:fc:40:8d:2f -i flannel-vxlan", false},
		{"/usr/sbin/ip route add 10.50.2.0/24 via 192.0.2.2", false},
		{"wg set flannel-wg peer x", false},
		// iproute2's words: numbers in base 0, keyword prefixes.
		{"ip link add flannel-vxlan type vxlan id 010 dstport 8472", true},
		{"ip link add flannel-vxlan type vxlan id 0x10 dstport 0x2118", true},
		{"ip link add flannel-vxlan type vxlan id 1 dstport 08472", false},
		{"ip link add flannel-vxlan type vxlan id +1 dstport 8472", false},
		{"ip link set mtu 01400 dev flannel-vxlan", true},
		{"ip link set mtu 0x", false},
		{"ip link set br up", false},
		{"ip link set ty up", false},
		{"ip link set brx up", true},
		{"ip link del master", false},
		{"ip ro a 10.50.2.0/24 via 192.0.2.2", true},
		{"ip ro ap 10.50.2.0/24 via 192.0.2.2", false},
		{"ip a a 10.50.1.0/32 dev x", true},
		{"ip addr add dev x 10.50.1.0/32", true},
		{"ip n r 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev x", true},
		{"ip neigh add 10.50.2.0 l b2:d1:fc:40:8d:2f dev x", true},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 table 100", true},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 ta 0x64", true},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 table mytable", false},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 p 5", true},
		{"ip route add 10.50.2.0/24 via 192.0.2.2 proto static", false},
		{"ip route add to 10.50.2.0/24 via 192.0.2.2", true},
		{"ip route add 010.50.2.0/24 via 192.0.2.2", false},
		{"ip route add 10.50.2.0/24 via 192.0.2.02", false},
		{"bridge f a b2:d1:fc:40:8d:2f dev x self dst 192.0.2.2", true},
		{"bridge fdb add B2:D1:FC:40:8D:2F dev x self dst 192.0.2.2", true},
		{"ip link set " + strings.Repeat("x", 16) + " up", false},
	} {
		c, err := Parse(strings.Fields(r.cmd))
		assert.Equal(t, r.fast, err == nil && c.Fast && !strings.Contains(r.cmd, "/usr"), r.cmd)
	}
}
