package leases_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/leases"
)

// FuzzDecodeAdmit feeds arbitrary store keys and values through the
// decoder and lease admission. Whatever is admitted must be what the
// rules promise: a canonical key of a SubnetLen subnet inside Network, a
// unicast IPv4 PublicIP, one line of UTF-8 BackendData of the preset's
// shape, and a value that re-encodes to the same lease.
func FuzzDecodeAdmit(f *testing.F) {
	for _, s := range []struct{ key, value string }{
		{"10.50.2.0-24", `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"82:87:fe:a4:a9:55"}`},
		{"10.50.2.0-24&fd50:0:0:2::-64", `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"extension","BackendData":"82:87:fe:a4:a9:55"}`},
		{"0.0.0.0-0", `{"PublicIP":"192.0.2.2","BackendType":"extension"}`},
		{"10.50.3.0-024", `{"PublicIP":"192.0.2.2","BackendType":"extension"}`},
		{"10.50.3.0-24", `{"PublicIP":"fe80::1%a b","BackendType":"extension","BackendData":"$(touch x)"}`},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.2","BackendType":"extension","BackendData":"a\nb\u0000"}`},
		{"10.50.3.0-24", `{"PublicIP":"192.0.2.2","BackendType":"extension","BackendData":{"VtepMAC":"x"}}`},
		{"10.50.3.0-24", "{\"PublicIP\":\"192.0.2.2\",\"BackendType\":\"extension\",\"BackendData\":\"\xff\"}"},
		{"10.50.3.0-24", strings.Repeat("[", 5000)},
	} {
		f.Add(s.key, []byte(s.value))
	}
	network := netip.MustParsePrefix("10.50.0.0/16")
	p := leases.Policy{
		Range:    leases.Range{Network: network, SubnetLen: 24},
		Own:      leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24")},
		PublicIP: netip.MustParseAddr("192.0.2.1"),
		Shape:    leases.ShapeMAC,
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		l := leases.Decode(key, value)
		if l.Key != key {
			t.Fatalf("Decode lost the key: %q", l.Key)
		}
		_ = leases.DisplayKey(l)
		a := p.Admit([]leases.Lease{l}, nil)
		if key == "10.50.1.0-24" && l.Invalid == "" {
			if len(a.Admitted)+len(a.Refused) != 0 {
				t.Fatalf("our own lease was judged: %+v", a)
			}
			return
		}
		if len(a.Admitted)+len(a.Refused) != 1 {
			t.Fatalf("one lease in, %d admitted and %d refused out", len(a.Admitted), len(a.Refused))
		}
		if len(a.Refused) == 1 {
			if a.Refused[0].Reason == "" || a.Refused[0].Detail == "" {
				t.Fatalf("refusal without a reason: %+v", a.Refused[0])
			}
			return
		}
		got := a.Admitted[0]
		switch {
		case got.Invalid != "":
			t.Fatalf("admitted an invalid lease: %+v", got)
		case leases.SubnetKey(got.Subnet, got.IPv6Subnet) != key:
			t.Fatalf("admitted a non-canonical key %q", key)
		case got.Subnet.Bits() != 24 || !network.Contains(got.Subnet.Addr()) || got.IPv6Subnet.IsValid():
			t.Fatalf("admitted subnet %s outside the range", got.Subnet)
		case got.Subnet.Overlaps(p.Own.Subnet):
			t.Fatalf("admitted our own subnet")
		case leases.CheckPublicIP(got.Attrs.PublicIP) != nil || got.Attrs.PublicIP == p.PublicIP:
			t.Fatalf("admitted PublicIP %s", got.Attrs.PublicIP)
		case leases.CheckBackendData(got.Attrs.BackendData) != nil || leases.ShapeMAC.Check(got.Attrs.BackendData) != nil:
			t.Fatalf("admitted BackendData %q", got.Attrs.BackendData)
		case strings.ContainsAny(got.Attrs.BackendData, " \t\n\x00$`;|&<>()'\"\\"):
			t.Fatalf("admitted BackendData with shell or word-splitting characters: %q", got.Attrs.BackendData)
		}
		b, err := leases.MarshalAttrs(got.Attrs)
		if err != nil {
			t.Fatal(err)
		}
		again := leases.Decode(key, b)
		if again.Invalid != "" || again.Attrs != got.Attrs {
			t.Fatalf("re-encoding changed the lease: %+v vs %+v", again, got)
		}
		// Beside a peer admitted before, whose VTEP MAC it may repeat: no
		// two admitted leases name one node, and the peer keeps its place.
		peer := leases.Decode("10.50.200.0-24", []byte(`{"PublicIP":"192.0.2.200","BackendType":"extension","BackendData":"82:87:fe:a4:a9:55"}`))
		two := p.Admit([]leases.Lease{got, peer}, map[netip.Prefix]leases.Lease{peer.Subnet: peer})
		if !slices.ContainsFunc(two.Admitted, func(l leases.Lease) bool { return l.Subnet == peer.Subnet }) {
			t.Fatalf("the incumbent peer lost its place to %q", key)
		}
		seen := map[string]bool{}
		for _, l := range two.Admitted {
			id := strings.ToLower(l.Attrs.BackendData)
			if seen[id] {
				t.Fatalf("two admitted leases with BackendData %q", id)
			}
			seen[id] = true
		}
	})
}
