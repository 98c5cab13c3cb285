package hooks_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/flexhook/flexhook/hooks"
)

func ExampleParse() {
	_, err := hooks.Parse([]byte(`{
  "Network": "10.50.0.0/16",
  "Backend": {
    "Type": "extension",
    "SubnetAddCommand": "read VTEP; bridge fdb add $VTEP dev flannel-vxlan self dst \"$PUBLIC_IP"
  }
}`))
	fmt.Println(err)
	var e *hooks.Error
	if errors.As(err, &e) {
		fmt.Println(e.Field, e.Line, e.Col)
	}
	// Output:
	// SubnetAddCommand:1:60: reached EOF without closing quote `"`
	// SubnetAddCommand 1 60
}

func ExampleKind_Env() {
	v := hooks.Vars{
		Network:  netip.MustParsePrefix("10.50.0.0/16"),
		Subnet:   netip.MustParsePrefix("10.50.2.0/24"),
		PublicIP: netip.MustParseAddr("192.0.2.2"),
	}
	for _, kv := range hooks.SubnetAdd.Env(v) {
		fmt.Println(kv)
	}
	fmt.Println(hooks.PreStartup.Env(v))
	// Output:
	// NETWORK=10.50.0.0/16
	// SUBNET=10.50.2.0/24
	// IPV6SUBNET=
	// PUBLIC_IP=192.0.2.2
	// PUBLIC_IPV6=
	// DIRECT_ROUTING=
	// [NETWORK=10.50.0.0/16 PUBLIC_IP=192.0.2.2 PUBLIC_IPV6= DIRECT_ROUTING=]
}

func ExampleLint() {
	cfg, err := hooks.Parse([]byte(`{
  "Network": "10.50.0.0/16",
  "Backend": {
    "Type": "extension",
    "PreStartupCommand": "read KEY; echo $KEY",
    "SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP"
  }
}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range hooks.Lint(cfg) {
		fmt.Println(w)
	}
	// Output:
	// PreStartupCommand:1:1: warning: read gets nothing: PreStartupCommand is run with an empty stdin; only SubnetAddCommand and SubnetRemoveCommand read the peer's BackendData
	// SubnetRemoveCommand: info: missing while SubnetAddCommand is set: what Add sets up for a peer stays after the peer is gone
}
