package hooks

import "net/netip"

// Vars are the values a hook is given through its environment. Which of
// them a hook sees depends on its Kind (see [Kind.Env]). For SubnetAdd and
// SubnetRemove, Subnet, IPv6Subnet, PublicIP and PublicIPv6 are the remote
// lease's; for the other hooks they are this node's own.
type Vars struct {
	Network     netip.Prefix
	IPv6Network netip.Prefix
	Subnet      netip.Prefix
	IPv6Subnet  netip.Prefix
	PublicIP    netip.Addr
	PublicIPv6  netip.Addr
	// DirectRouting is Backend.DirectRouting, the same for every hook.
	DirectRouting bool
}

// Names of the contract variables, as flannel sets them.
const (
	EnvNetwork    = "NETWORK"
	EnvSubnet     = "SUBNET"
	EnvIPv6Subnet = "IPV6SUBNET"
	EnvPublicIP   = "PUBLIC_IP"
	EnvPublicIPv6 = "PUBLIC_IPV6"
	// EnvDirectRouting is flexhook's own: "true" when the Backend has
	// "DirectRouting": true, else empty. flannel's compiled vxlan backend
	// reads the key itself; a hook needs it as a variable.
	EnvDirectRouting = "DIRECT_ROUTING"
)

// EnvNames returns the names of the variables hook k is given, in the
// order [Kind.Env] returns them.
func (k Kind) EnvNames() []string {
	if k == PreStartup {
		return []string{EnvNetwork, EnvPublicIP, EnvPublicIPv6, EnvDirectRouting}
	}
	return []string{EnvNetwork, EnvSubnet, EnvIPv6Subnet, EnvPublicIP, EnvPublicIPv6, EnvDirectRouting}
}

// Env returns the contract variables of hook k as NAME=value pairs.
// PreStartupCommand gets NETWORK, PUBLIC_IP and PUBLIC_IPV6; the other
// hooks get NETWORK, SUBNET, IPV6SUBNET, PUBLIC_IP and PUBLIC_IPV6; all
// of them get DIRECT_ROUTING. A zero
// value becomes an empty string: the variable is still set, so a hook
// never picks it up from the daemon's own environment.
func (k Kind) Env(v Vars) []string {
	names := k.EnvNames()
	out := make([]string, 0, len(names))
	for _, name := range names {
		var val string
		switch name {
		case EnvNetwork:
			val = prefixString(v.Network)
		case EnvSubnet:
			val = prefixString(v.Subnet)
		case EnvIPv6Subnet:
			val = prefixString(v.IPv6Subnet)
		case EnvPublicIP:
			val = addrString(v.PublicIP)
		case EnvPublicIPv6:
			val = addrString(v.PublicIPv6)
		case EnvDirectRouting:
			if v.DirectRouting {
				val = "true"
			}
		}
		out = append(out, name+"="+val)
	}
	return out
}

// HasStdin reports whether hook k is given data on stdin: SubnetAdd and
// SubnetRemove read the remote lease's BackendData followed by "\n"; the
// other hooks get an empty stdin.
func (k Kind) HasStdin() bool { return k == SubnetAdd || k == SubnetRemove }

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
