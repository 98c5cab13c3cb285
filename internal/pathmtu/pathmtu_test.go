package pathmtu_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/internal/pathmtu"
)

func TestSelect(t *testing.T) {
	p := netip.MustParsePrefix
	q := pathmtu.Query{
		Networks: []netip.Prefix{p("10.50.0.0/16"), p("fd50::/56")},
		Own:      []netip.Prefix{p("10.50.1.0/24"), p("fd50:0:0:1::/64")},
	}
	links := map[int]pathmtu.Link{
		1: {"lo", 65536}, 2: {"eth0", 1500}, 3: {"flannel-vxlan", 1450},
		4: {"cni0", 1400}, 5: {"flannel-wg", 1420}, 6: {"jumbo", 9000},
	}
	route := func(dst string, mtu int, devs ...int) pathmtu.Route {
		return pathmtu.Route{Dst: p(dst), MTU: mtu, Devs: devs}
	}
	addr := func(a string, dev int) pathmtu.Addr { return pathmtu.Addr{Prefix: p(a), Dev: dev} }
	for _, r := range []struct {
		name   string
		routes []pathmtu.Route
		addrs  []pathmtu.Addr
		want   string // "" for no path
	}{
		{"nothing", nil, nil, ""},
		{"default route only", []pathmtu.Route{route("0.0.0.0/0", 0, 2)}, nil, ""},
		{"host-gw peer", []pathmtu.Route{route("10.50.2.0/24", 0, 2)}, nil, "1500 (dev eth0, route 10.50.2.0/24)"},
		{"vxlan peer", []pathmtu.Route{route("10.50.2.0/24", 0, 3)}, nil, "1450 (dev flannel-vxlan, route 10.50.2.0/24)"},
		{"vxlan before peers", nil, []pathmtu.Addr{addr("10.50.1.0/32", 3)}, "1450 (dev flannel-vxlan, address 10.50.1.0/32)"},
		{"wireguard network route", []pathmtu.Route{route("10.50.0.0/16", 0, 5)}, nil, "1420 (dev flannel-wg, route 10.50.0.0/16)"},
		{"direct routing: lowest wins", []pathmtu.Route{route("10.50.2.0/24", 0, 2), route("10.50.3.0/24", 0, 3)}, nil,
			"1450 (dev flannel-vxlan, route 10.50.3.0/24)"},
		{"route mtu metric", []pathmtu.Route{route("10.50.2.0/24", 1300, 2)}, nil, "1300 (dev eth0, route 10.50.2.0/24)"},
		{"metric above device", []pathmtu.Route{route("10.50.2.0/24", 9000, 3)}, nil, "1450 (dev flannel-vxlan, route 10.50.2.0/24)"},
		{"multipath", []pathmtu.Route{route("10.50.2.0/24", 0, 6, 5)}, nil, "1420 (dev flannel-wg, route 10.50.2.0/24)"},
		{"own subnet (cni0) left out", []pathmtu.Route{route("10.50.1.0/24", 0, 4), route("10.50.2.0/24", 0, 2)}, nil,
			"1500 (dev eth0, route 10.50.2.0/24)"},
		{"gateway address (cni0) left out", nil, []pathmtu.Addr{addr("10.50.1.1/24", 4)}, ""},
		{"outside the network", []pathmtu.Route{route("10.0.0.0/8", 0, 4), route("192.0.2.0/24", 0, 4)}, nil, ""},
		{"underlay inside the network", []pathmtu.Route{route("10.50.200.0/24", 0, 2)}, []pathmtu.Addr{addr("10.50.200.1/24", 2)},
			"1500 (dev eth0, route 10.50.200.0/24)"},
		{"ipv6 peer", []pathmtu.Route{route("fd50:0:0:2::/64", 0, 5), route("10.50.2.0/24", 0, 2)}, nil,
			"1420 (dev flannel-wg, route fd50:0:0:2::/64)"},
		{"ipv6 own gateway left out", nil, []pathmtu.Addr{addr("fd50:0:0:1::1/64", 4)}, ""},
		{"unknown device skipped", []pathmtu.Route{route("10.50.2.0/24", 0, 99)}, nil, ""},
		{"equal MTUs: first wins", []pathmtu.Route{route("10.50.3.0/24", 0, 3), route("10.50.2.0/24", 0, 3)}, nil,
			"1450 (dev flannel-vxlan, route 10.50.3.0/24)"},
	} {
		got, ok := pathmtu.Select(q, pathmtu.State{Routes: r.routes, Addrs: r.addrs, Links: links})
		if r.want == "" {
			assert.False(t, ok, "%s: got %v", r.name, got)
			continue
		}
		if assert.True(t, ok, r.name) {
			assert.Equal(t, r.want, got.String(), r.name)
		}
	}
}
