package presets_test

import (
	"fmt"

	"github.com/flexhook/flexhook/presets"
)

func ExampleNames() {
	fmt.Println(presets.Names())
	// Output: [host-gw host-gw-prod vxlan vxlan-prod wireguard wireguard-prod]
}

func ExampleGet() {
	data, err := presets.Get("host-gw")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(data))
	_, err = presets.Get("udp")
	fmt.Println(err)
	// Output:
	// {
	//   "Network": "10.50.0.0/16",
	//   "Backend": {
	//     "Type": "extension",
	//     "SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP",
	//     "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"
	//   }
	// }
	// unknown preset "udp": the presets are host-gw, host-gw-prod, vxlan, vxlan-prod, wireguard, wireguard-prod
}
