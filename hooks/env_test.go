package hooks

import (
	"net/netip"
	"slices"
	"testing"
)

func TestKindEnv(t *testing.T) {
	full := Vars{
		Network:     netip.MustParsePrefix("10.50.0.0/16"),
		IPv6Network: netip.MustParsePrefix("fd50::/56"),
		Subnet:      netip.MustParsePrefix("10.50.3.0/24"),
		IPv6Subnet:  netip.MustParsePrefix("fd50:0:0:3::/64"),
		PublicIP:    netip.MustParseAddr("192.0.2.3"),
		PublicIPv6:  netip.MustParseAddr("2001:db8::3"),

		DirectRouting: true,
	}
	v4 := Vars{Network: full.Network, Subnet: full.Subnet, PublicIP: full.PublicIP}
	allFull := []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.3.0/24", "IPV6SUBNET=fd50:0:0:3::/64",
		"PUBLIC_IP=192.0.2.3", "PUBLIC_IPV6=2001:db8::3", "DIRECT_ROUTING=true"}
	allV4 := []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.3.0/24", "IPV6SUBNET=",
		"PUBLIC_IP=192.0.2.3", "PUBLIC_IPV6=", "DIRECT_ROUTING="}
	tests := []struct {
		kind Kind
		vars Vars
		want []string
	}{
		{PreStartup, full, []string{"NETWORK=10.50.0.0/16", "PUBLIC_IP=192.0.2.3", "PUBLIC_IPV6=2001:db8::3", "DIRECT_ROUTING=true"}},
		{PreStartup, v4, []string{"NETWORK=10.50.0.0/16", "PUBLIC_IP=192.0.2.3", "PUBLIC_IPV6=", "DIRECT_ROUTING="}},
		{PreStartup, Vars{}, []string{"NETWORK=", "PUBLIC_IP=", "PUBLIC_IPV6=", "DIRECT_ROUTING="}},
		{PostStartup, full, allFull},
		{PostStartup, v4, allV4},
		{SubnetAdd, full, allFull},
		{SubnetAdd, v4, allV4},
		{SubnetRemove, v4, allV4},
		{Shutdown, full, allFull},
		{Shutdown, Vars{}, []string{"NETWORK=", "SUBNET=", "IPV6SUBNET=", "PUBLIC_IP=", "PUBLIC_IPV6=", "DIRECT_ROUTING="}},
	}
	for _, tt := range tests {
		if got := tt.kind.Env(tt.vars); !slices.Equal(got, tt.want) {
			t.Errorf("%v.Env(%+v)\n got %q\nwant %q", tt.kind, tt.vars, got, tt.want)
		}
	}
}

func TestKindEnvNamesMatchEnv(t *testing.T) {
	for _, k := range Kinds {
		env := k.Env(Vars{})
		names := k.EnvNames()
		if len(env) != len(names) {
			t.Fatalf("%v: %d names, %d values", k, len(names), len(env))
		}
		for i := range env {
			if env[i] != names[i]+"=" {
				t.Errorf("%v: %q does not match name %q", k, env[i], names[i])
			}
		}
	}
}

func TestKindHasStdin(t *testing.T) {
	want := map[Kind]bool{PreStartup: false, PostStartup: false, SubnetAdd: true, SubnetRemove: true, Shutdown: false}
	for k, w := range want {
		if got := k.HasStdin(); got != w {
			t.Errorf("%v.HasStdin() = %v, want %v", k, got, w)
		}
	}
}
