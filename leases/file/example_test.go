package file_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

func Example() {
	dir, err := os.MkdirTemp("", "flexhook-store-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := file.New(dir, file.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	// A range of a single subnet, so that the example's output is fixed.
	r := leases.Range{
		Network:   netip.MustParsePrefix("10.50.0.0/16"),
		SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.3.0"),
		SubnetMax: netip.MustParseAddr("10.50.3.0"),
	}
	l, err := s.Acquire(ctx, r, leases.Attrs{
		PublicIP:    netip.MustParseAddr("192.0.2.3"),
		BackendType: leases.BackendType,
		BackendData: "82:87:fe:a4:a9:55",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("lease:", l.Subnet)

	// The file is exactly what flanneld stores in etcd.
	b, _ := os.ReadFile(filepath.Join(dir, "subnets", leases.SubnetKey(l.Subnet, l.IPv6Subnet)))
	fmt.Println(string(b))

	// Another node finds the range full.
	_, err = s.Acquire(ctx, r, leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.4"), BackendType: leases.BackendType})
	fmt.Println(err)
	// Output:
	// lease: 10.50.3.0/24
	// {"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"extension","BackendData":"82:87:fe:a4:a9:55"}
	// acquire: out of subnets in 10.50.3.0/24..10.50.3.0/24 in 10.50.0.0/16 (all 1 taken)
}
