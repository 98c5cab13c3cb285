package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/presets"
)

// The bench network: leases from 10.0.0.0/8 (remote ones from 10.1.0.0
// up, 256 /24s per second octet, flushed as 10.0.0.0/8 between rounds:
// the namespace has no other route in it), public IPs on the
// 172.16.0.0/16 underlay, this node at 172.16.0.1.
const (
	network   = "10.0.0.0/8"
	flushRoot = network
	// countRoot holds the remote leases the flanneld section counts in
	// the kernel (lease(i) up to i = 32511), not the daemons' own subnet
	// (ownSubnetMin, 10.128.0.0 up).
	countRoot   = "10.0.0.0/9"
	ownPublicIP = "172.16.0.1"
	vxlanDev    = "flannel-vxlan"
)

// maxLeases is how many leases lease(i) can address: 172.16.255.250 is
// the last public IP (10.250.5.0/24 the last subnet).
const maxLeases = 255 * 250

// lease returns remote lease i < maxLeases: 10.(1+i/256).(i%256).0/24 on
// 172.16.(1+i/250).(1+i%250), with a unicast MAC as vxlan BackendData.
func lease(i int, withMAC bool) leases.Lease {
	sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + i/256), byte(i % 256), 0}), 24)
	ip := netip.AddrFrom4([4]byte{172, 16, byte(1 + i/250), byte(1 + i%250)})
	l := leases.Lease{Subnet: sub, Attrs: leases.Attrs{PublicIP: ip, BackendType: leases.BackendType}}
	if withMAC {
		l.Attrs.BackendData = fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
	}
	return l
}

// benchConfig is the preset's net-conf.json with the bench's Network, so
// that thousands of /24 leases fit; its hooks are the preset's, byte for
// byte (flexhook gives it the preset's BackendData shape).
func benchConfig(preset string) ([]byte, map[string]string, error) {
	raw, err := presets.Get(preset)
	if err != nil {
		return nil, nil, err
	}
	var c struct {
		Backend map[string]string
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(map[string]any{"Network": network, "SubnetLen": 24, "Backend": c.Backend})
	return out, c.Backend, err
}

// writeFileStore writes leases into a fresh file store at dir, in the
// store's own format (the file's mtime is the expiration).
func writeFileStore(dir string, ls []leases.Lease) error {
	sub := filepath.Join(dir, "subnets")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return err
	}
	exp := time.Now().Add(24 * time.Hour)
	for _, l := range ls {
		if err := writeLeaseFile(sub, l, exp, nil); err != nil {
			return err
		}
	}
	return nil
}

// writeLeaseFile writes one lease atomically; before, if set, runs just
// before the rename that makes it visible.
func writeLeaseFile(sub string, l leases.Lease, exp time.Time, before func()) error {
	v, err := leases.MarshalAttrs(l.Attrs)
	if err != nil {
		return err
	}
	key := leases.SubnetKey(l.Subnet, l.IPv6Subnet)
	tmp := filepath.Join(sub, ".tmp-bench-"+key)
	if err := os.WriteFile(tmp, v, 0o600); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, exp, exp); err != nil {
		return err
	}
	if before != nil {
		before()
	}
	return os.Rename(tmp, filepath.Join(sub, key))
}

// contractEnv is the SubnetAdd environment flannel gives a hook for l.
func contractEnv(l leases.Lease) []string {
	return []string{"NETWORK=" + network, "SUBNET=" + l.Subnet.String(), "PUBLIC_IP=" + l.Attrs.PublicIP.String()}
}
