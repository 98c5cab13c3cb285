package leases_test

import (
	"fmt"
	"net/netip"

	"github.com/flexhook/flexhook/leases"
)

func ExamplePickFree() {
	r := leases.Range{
		Network:   netip.MustParsePrefix("10.50.0.0/16"),
		SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.1.0"),
		SubnetMax: netip.MustParseAddr("10.50.4.0"),
	}
	first, _ := r.Nth(0)
	fmt.Println(r.Len(), "candidates, the first is", first)
	taken := []leases.Lease{
		{Subnet: netip.MustParsePrefix("10.50.1.0/24")},
		{Subnet: netip.MustParsePrefix("10.50.2.0/24")},
		{Subnet: netip.MustParsePrefix("10.50.3.128/25")}, // a narrower lease takes its /24
		{Subnet: netip.MustParsePrefix("0.0.0.0/0")},      // a wider one takes nothing
	}
	v4, _, err := leases.PickFree(r, taken, nil)
	fmt.Println(v4, err)

	taken = append(taken, leases.Lease{Subnet: v4})
	_, _, err = leases.PickFree(r, taken, nil)
	fmt.Println(err)
	// Output:
	// 4 candidates, the first is 10.50.1.0/24
	// 10.50.4.0/24 <nil>
	// out of subnets in 10.50.1.0/24..10.50.4.0/24 in 10.50.0.0/16 (all 4 taken)
}
