package etcd_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
)

// Acquire this node's lease in the etcd that flanneld uses, then follow
// the other nodes' leases.
func Example() {
	ctx := context.Background()
	store, err := etcd.New(ctx, etcd.Config{
		Endpoints: []string{"https://10.0.0.1:2379"},
		CAFile:    "/etc/flexhook/etcd-ca.pem",
		CertFile:  "/etc/flexhook/etcd.pem",
		KeyFile:   "/etc/flexhook/etcd-key.pem",
	})
	if err != nil {
		log.Print(err)
		return
	}
	defer store.Close()

	r := leases.Range{
		Network:   netip.MustParsePrefix("10.50.0.0/16"),
		SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.1.0"),
		SubnetMax: netip.MustParseAddr("10.50.255.0"),
	}
	own, err := store.Acquire(ctx, r, leases.Attrs{
		PublicIP:    netip.MustParseAddr("192.0.2.10"),
		BackendType: leases.BackendType,
		BackendData: "82:87:fe:a4:a9:55",
	})
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println("subnet", own.Subnet, "until", own.Expiration.Format(time.RFC3339))

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snapshots := make(chan []leases.Lease)
	go func() { _ = store.Watch(wctx, snapshots) }()
	for ls := range snapshots {
		fmt.Println(len(ls), "leases")
	}
}
