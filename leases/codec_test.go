package leases

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flanneldValue is a lease value written by a real flanneld running the
// extension backend (issue 4).
const flanneldValue = `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"e2:0f:cf:6a:41:69"}`

func TestMarshalAttrsGolden(t *testing.T) {
	tests := []struct {
		name string
		a    Attrs
		want string
	}{
		{"flanneld", Attrs{PublicIP: addr("192.0.2.2"), BackendType: BackendType, BackendData: "e2:0f:cf:6a:41:69"}, flanneldValue},
		{"no BackendData", Attrs{PublicIP: addr("192.0.2.2"), BackendType: BackendType},
			`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension"}`},
		{"PublicIPv6", Attrs{PublicIP: addr("192.0.2.2"), PublicIPv6: addr("2001:db8::2"), BackendType: BackendType, BackendData: "x"},
			`{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"extension","BackendData":"x"}`},
		// flanneld encodes with json.Marshal, which escapes HTML characters.
		{"escaping like flanneld", Attrs{PublicIP: addr("192.0.2.2"), BackendType: BackendType, BackendData: "a&b<c>\"d\"\\\n"},
			`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"a\u0026b\u003cc\u003e\"d\"\\\n"}`},
		{"wireguard key", Attrs{PublicIP: addr("192.0.2.2"), BackendType: BackendType, BackendData: "kW2+/Q0aB1c=,fd00::1"},
			`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"kW2+/Q0aB1c=,fd00::1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := MarshalAttrs(tt.a)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(b))
			back, err := UnmarshalAttrs(b)
			require.NoError(t, err)
			assert.Equal(t, tt.a, back)
		})
	}
}

func TestUnmarshalAttrsFlanneld(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Attrs
	}{
		{"with BackendData", flanneldValue, Attrs{PublicIP: addr("192.0.2.2"), BackendType: "extension", BackendData: "e2:0f:cf:6a:41:69"}},
		{"without BackendData", `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"extension"}`,
			Attrs{PublicIP: addr("192.0.2.3"), BackendType: "extension"}},
		{"PublicIPv6 set", `{"PublicIP":"192.0.2.4","PublicIPv6":"2001:db8::4","BackendType":"extension","BackendData":"d"}`,
			Attrs{PublicIP: addr("192.0.2.4"), PublicIPv6: addr("2001:db8::4"), BackendType: "extension", BackendData: "d"}},
		{"PublicIPv6 omitted", `{"PublicIP":"192.0.2.5","BackendType":"extension"}`,
			Attrs{PublicIP: addr("192.0.2.5"), BackendType: "extension"}},
		{"BackendData null", `{"PublicIP":"192.0.2.6","PublicIPv6":null,"BackendType":"extension","BackendData":null}`,
			Attrs{PublicIP: addr("192.0.2.6"), BackendType: "extension"}},
		{"vxlan object kept raw", `{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1}}`,
			Attrs{PublicIP: addr("192.0.2.7"), BackendType: "vxlan", BackendData: `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`}},
		{"escaped", `{"PublicIP":"192.0.2.8","PublicIPv6":null,"BackendType":"extension","BackendData":"a\u0026b\n"}`,
			Attrs{PublicIP: addr("192.0.2.8"), BackendType: "extension", BackendData: "a&b\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := UnmarshalAttrs([]byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, a)
		})
	}
}

func TestUnmarshalAttrsErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not JSON", `{"PublicIP":`, "decode lease"},
		{"bad PublicIP", `{"PublicIP":"192.0.2.300","PublicIPv6":null,"BackendType":"extension"}`, "PublicIP"},
		{"bad PublicIPv6", `{"PublicIP":"192.0.2.1","PublicIPv6":"fd00:::1","BackendType":"extension"}`, "PublicIPv6"},
		{"PublicIP not a string", `{"PublicIP":7}`, "decode lease"},
		{"array", `[]`, "decode lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := UnmarshalAttrs([]byte(tt.in))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSubnetKeyRoundTrip(t *testing.T) {
	tests := []struct {
		key    string
		v4, v6 string
	}{
		{"10.50.39.0-24", "10.50.39.0/24", ""},
		{"10.50.39.0-24&fd00::-64", "10.50.39.0/24", "fd00::/64"},
		{"10.50.3.0-24&fd00:0:0:3::-64", "10.50.3.0/24", "fd00:0:0:3::/64"},
		{"10.0.0.7-32", "10.0.0.7/32", ""},
		{"0.0.0.0-0", "0.0.0.0/0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			v4, v6, err := ParseSubnetKey(tt.key)
			require.NoError(t, err)
			assert.Equal(t, tt.v4, prefixString(v4))
			assert.Equal(t, tt.v6, prefixString(v6))
			assert.Equal(t, tt.key, SubnetKey(v4, v6))
		})
	}
	assert.Equal(t, "10.50.39.0-24&fd00::-64", SubnetKey(pfx("10.50.39.0/24"), pfx("fd00::/64")))
	assert.Equal(t, "10.50.39.0-24", SubnetKey(pfx("10.50.39.0/24"), netip.Prefix{}))
}

func TestParseSubnetKeyErrors(t *testing.T) {
	for _, key := range []string{
		"", "10.50.39.0", "10.50.39.0/24", "10.50.39.0-33", "10.50.39.0-x", "10.50.39.1-24",
		"fd00::-64", "10.50.39.0-24&10.0.0.0-8", "10.50.39.0-24&fd00::1-64", "10.50.39.0-24&",
		"10.50.39.0--24", "config", ".tmp-123", "10.50.39.0-24&fd00::-129",
	} {
		t.Run(key, func(t *testing.T) {
			_, _, err := ParseSubnetKey(key)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "subnet key")
		})
	}
}

func TestUnmarshalAttrsRefusesHugeValue(t *testing.T) {
	big := `{"PublicIP":"192.0.2.2","BackendType":"extension","BackendData":"` + strings.Repeat("a", MaxValueSize) + `"}`
	_, err := UnmarshalAttrs([]byte(big))
	require.ErrorContains(t, err, "larger than")
	_, err = UnmarshalAttrs([]byte(`{"PublicIP":"192.0.2.2","BackendType":"extension","BackendData":"` + strings.Repeat("a", 1000) + `"}`))
	require.NoError(t, err)
}

func TestAttrsOwner(t *testing.T) {
	tests := []struct {
		a    Attrs
		want string
	}{
		{Attrs{PublicIP: netip.MustParseAddr("192.0.2.2")}, "192.0.2.2"},
		{Attrs{PublicIP: netip.MustParseAddr("::ffff:192.0.2.2")}, "192.0.2.2"},
		{Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), PublicIPv6: netip.MustParseAddr("2001:db8::2")}, "192.0.2.2"},
		{Attrs{PublicIPv6: netip.MustParseAddr("2001:db8::2")}, "2001:db8::2"},
		{Attrs{}, "invalid IP"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.a.Owner().String())
	}
}
