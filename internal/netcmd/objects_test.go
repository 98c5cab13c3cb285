package netcmd

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What each command changes, as the ownership table names it, and the
// argv replace-existing runs after its add found the object.
func TestObjects(t *testing.T) {
	for _, r := range []struct {
		cmd, verb, objects, replace string
	}{
		{"ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", "add",
			"route 10.50.2.0/24", "ip route replace 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink"},
		{"ip r a 10.50.2.0/24 via 192.0.2.2 metric 010 table 100", "add",
			"route 10.50.2.0/24 table 100 metric 8", "ip r replace 10.50.2.0/24 via 192.0.2.2 metric 010 table 100"},
		{"ip -6 route add fd00:1::/64 via fd00::2", "add", "route fd00:1::/64", "ip -6 route replace fd00:1::/64 via fd00::2"},
		{"ip -6 route add fd00:1::/64 via fd00::2 metric 256", "add", "route fd00:1::/64 metric 256", "ip -6 route replace fd00:1::/64 via fd00::2 metric 256"},
		{"/usr/sbin/ip route del 10.50.2.0/24 via 192.0.2.2", "del", "route 10.50.2.0/24", ""},
		{"ip route replace 10.50.2.0/32 dev x", "replace", "route 10.50.2.0/32", ""},
		{"ip route add 10.50.2.7 dev x", "add", "route 10.50.2.7/32", "ip route replace 10.50.2.7 dev x"},
		{"ip addr add 10.50.1.0/32 dev flannel-vxlan", "add", "addr 10.50.1.0/32 dev flannel-vxlan", "ip addr replace 10.50.1.0/32 dev flannel-vxlan"},
		{"ip a d 10.50.1.0/32 dev x", "del", "addr 10.50.1.0/32 dev x", ""},
		{"ip -6 addr add fd00::1/64 dev x", "add", "addr fd00::1 dev x", "ip -6 addr replace fd00::1/64 dev x"},
		{"ip neigh add 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev x", "add", "neigh 10.50.2.0 dev x", "ip neigh replace 10.50.2.0 lladdr b2:d1:fc:40:8d:2f dev x"},
		{"arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan", "replace", "neigh 10.50.2.0 dev flannel-vxlan", ""},
		{"bridge fdb add B2:D1:FC:40:8D:2F dev flannel-vxlan self dst 192.0.2.2", "add",
			"fdb b2:d1:fc:40:8d:2f dev flannel-vxlan", "bridge fdb replace B2:D1:FC:40:8D:2F dev flannel-vxlan self dst 192.0.2.2"},
		{"bridge fdb append 00:00:00:00:00:00 dev flannel-vxlan self dst 192.0.2.3", "append",
			"fdb 00:00:00:00:00:00 dev flannel-vxlan dst 192.0.2.3", ""},
		{"bridge f a 02:00:00:00:00:01 dev x", "add", "fdb 02:00:00:00:00:01 dev x", "bridge f replace 02:00:00:00:00:01 dev x"},
		{"ip link add flannel-wg type wireguard", "add", "link flannel-wg", ""},
		{"ip l a dev wg0 type wireguard", "add", "link wg0", ""},
		{"ip link set flannel-vxlan up", "set", "link flannel-vxlan", ""},
		{"ip link delete dev flannel-vxlan", "del", "link flannel-vxlan", ""},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24", "set",
			"wg-peer " + key1 + " dev flannel-wg", ""},
		{"wg set flannel-wg peer " + key1 + " remove peer " + key2 + " remove", "del",
			"wg-peer " + key1 + " dev flannel-wg,wg-peer " + key2 + " dev flannel-wg", ""},
		{"wg set flannel-wg listen-port 51820 private-key privatekey", "set", "link flannel-wg", ""},
	} {
		c, err := Parse(strings.Fields(r.cmd))
		require.NoError(t, err, r.cmd)
		assert.Equal(t, r.verb, c.Verb.String(), r.cmd)
		var objs []string
		for _, o := range c.Objects {
			objs = append(objs, string(o))
		}
		assert.Equal(t, r.objects, strings.Join(objs, ","), r.cmd)
		repl, ok := c.AsReplace()
		assert.Equal(t, r.replace, strings.Join(repl, " "), r.cmd)
		assert.Equal(t, r.replace != "", ok, r.cmd)
	}
}

const (
	key1 = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	key2 = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
)

// Commands Parse does not read: they run as written and are never
// replaced.
func TestNotRead(t *testing.T) {
	for _, cmd := range []string{
		"ip route", "ip route show", "ip -n ns route add 10.0.0.0/8 dev x", "ip -force route add 10.0.0.0/8 dev x",
		"ip -batch routes.txt", "ip rule add from all", "ip addrlabel add prefix ::/0 label 1",
		"ip route add default via 192.0.2.1", "ip route flush 10.50.2.0/24", "ip route change 10.50.2.0/24 dev x",
		"ip neigh add 10.0.0.1 dev x", "ip link add x type vxlan id 1 dstport 4789 dev eth0",
		"wg set flannel-wg peer short", "wg set flannel-wg peer " + key1 + " remove peer " + key2,
		"wg show", "ipx route add 10.0.0.0/8 dev x", "ip a d 10.50.1.0 dev x", "bridge link set dev x", "arp -s 10.0.0.1 02:00:00:00:00:01",
	} {
		_, err := Parse(strings.Fields(cmd))
		assert.ErrorIs(t, err, ErrNotRead, cmd)
	}
}

// number is strtoul(s, &end, 0) where iproute2 accepts the result.
func TestNumber(t *testing.T) {
	for _, r := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1400", 1400, true}, {"01400", 768, true}, {"0x578", 1400, true}, {"0X578", 1400, true},
		{"0", 0, true}, {"00", 0, true}, {"08472", 0, false}, {"0x", 0, false}, {"", 0, false},
		{"+1", 0, false}, {"-1", 0, false}, {"1_000", 0, false}, {" 1", 0, false}, {"1e3", 0, false},
		{"65536", 0, false}, {"65535", 65535, true},
	} {
		got, ok := number(r.in, 65535)
		assert.Equal(t, r.ok, ok, r.in)
		assert.Equal(t, r.want, got, r.in)
	}
}
