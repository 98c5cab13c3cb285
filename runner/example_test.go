package runner_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
	"github.com/flexhook/flexhook/runner/shell"
)

// flannel's documented vxlan recipe for the extension backend.
const vxlanConf = `{
  "Network": "10.50.0.0/16",
  "Backend": {
    "Type": "extension",
    "PreStartupCommand": "export VNI=1; export IF_NAME=flannel-vxlan; ip link del $IF_NAME 2>/dev/null; ip link add $IF_NAME type vxlan id $VNI dstport 8472 nolearning && ip link set mtu 1450 dev $IF_NAME && cat /sys/class/net/$IF_NAME/address",
    "PostStartupCommand": "export IF_NAME=flannel-vxlan; export SUBNET_IP=` + "`echo $SUBNET | cut -d'/' -f 1`" + `; ip addr add $SUBNET_IP/32 dev $IF_NAME && ip link set $IF_NAME up",
    "ShutdownCommand": "export IF_NAME=flannel-vxlan; ip link del $IF_NAME",
    "SubnetAddCommand": "export SUBNET_IP=` + "`echo $SUBNET | cut -d'/' -f 1`" + `; export IF_NAME=flannel-vxlan; read VTEP; ip route add $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink && arp -s $SUBNET_IP $VTEP dev $IF_NAME && bridge fdb add $VTEP dev $IF_NAME self dst $PUBLIC_IP"
  }
}`

// Simulate shows what the vxlan recipe would do on a node with one peer,
// without changing anything: the shell is in dry-run mode and prints every
// command. Text tools such as cut still run, so SUBNET_IP is computed.
func ExampleSimulate() {
	cfg, err := hooks.Parse([]byte(vxlanConf))
	if err != nil {
		fmt.Println(err)
		return
	}
	sh, err := shell.New(shell.DryRun(true), shell.Trace(shell.NewTextTracer(os.Stdout)))
	if err != nil {
		fmt.Println(err)
		return
	}
	own := leases.Lease{
		Subnet: netip.MustParsePrefix("10.50.1.0/24"),
		Attrs:  leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendData: "82:87:fe:a4:a9:55"},
	}
	peer := leases.Lease{
		Subnet: netip.MustParsePrefix("10.50.2.0/24"),
		Attrs:  leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendData: "b2:d1:fc:40:8d:2f"},
	}
	if err := runner.Simulate(context.Background(), cfg, sh, own, []leases.Lease{peer}, nil); err != nil {
		fmt.Println(err)
	}
	// Output:
	// # PreStartupCommand
	// + ip link del flannel-vxlan
	// + ip link add flannel-vxlan type vxlan id 1 dstport 8472 nolearning
	// + ip link set mtu 1450 dev flannel-vxlan
	// + cat /sys/class/net/flannel-vxlan/address
	// # PostStartupCommand SUBNET=10.50.1.0/24
	// + cut -d/ -f 1
	// + ip addr add 10.50.1.0/32 dev flannel-vxlan
	// + ip link set flannel-vxlan up
	// # SubnetAddCommand SUBNET=10.50.2.0/24
	// + cut -d/ -f 1
	// + ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink
	// + arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan
	// + bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2
	// # ShutdownCommand SUBNET=10.50.1.0/24
	// + ip link del flannel-vxlan
}
