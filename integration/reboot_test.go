//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// fakePeers is how many leases of nodes that exist only in the store the
// reboot test adds to its two real nodes.
const fakePeers = 150

// fakeLease is the i-th fake peer: a subnet no real node takes, an
// on-link underlay address nobody answers on, and the preset's kind of
// BackendData.
func fakeLease(preset string, i int) leases.Lease {
	data := ""
	switch preset {
	case "vxlan":
		data = fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)
	case "wireguard":
		var key [32]byte
		key[0], key[1], key[31] = 0xfa, byte(i), 0x40
		data = base64.StdEncoding.EncodeToString(key[:])
	}
	return leases.Lease{
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(100 + i), 0}), 24),
		Attrs: leases.Attrs{PublicIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}),
			BackendType: leases.BackendType, BackendData: data},
	}
}

// peersApplied counts on node i what the preset's SubnetAdd left for the
// given leases: host-gw routes via their PublicIP, vxlan routes and fdb
// entries on flannel-vxlan, wireguard peers.
func peersApplied(ctx context.Context, lab *netlab.Lab, preset string, i int, want []leases.Lease) (int, error) {
	n := 0
	switch preset {
	case "host-gw", "vxlan":
		rs, err := lab.Routes(ctx, i)
		if err != nil {
			return 0, err
		}
		have := map[string]netlab.Route{}
		for _, r := range rs {
			have[r.Dst] = r
		}
		var fdb string
		if preset == "vxlan" {
			out, err := lab.Exec(ctx, i, "bridge", "fdb", "show", "dev", "flannel-vxlan")
			if err != nil {
				return 0, err
			}
			fdb = string(out)
		}
		for _, l := range want {
			r, ok := have[l.Subnet.String()]
			switch {
			case !ok:
			case preset == "host-gw" && r.Gateway == l.Attrs.PublicIP.String():
				n++
			case preset == "vxlan" && r.Dev == "flannel-vxlan" &&
				strings.Contains(fdb, l.Attrs.BackendData+" dst "+l.Attrs.PublicIP.String()+" "):
				n++
			}
		}
	case "wireguard":
		out, err := lab.Exec(ctx, i, "wg", "show", "flannel-wg", "allowed-ips")
		if err != nil {
			return 0, err
		}
		for _, l := range want {
			if strings.Contains(string(out), l.Attrs.BackendData+"\t"+l.Subnet.String()) {
				n++
			}
		}
	}
	return n, nil
}

// TestReboot reboots a node of each preset: its network namespace is
// deleted with everything in it and made anew, its state dir kept, and
// flexhook starts again. With 150 more leases in the store than real
// nodes, every route, fdb entry or peer must come back, the mesh must be
// whole, and status must show nothing failing. (Before flexhook added
// every lease again at every start, a host-gw node came back with none.)
func TestReboot(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			bin := requireLab(t, p.tools...)
			testReboot(t, bin, p) // one at a time: 150 leases each keep the cores busy
		})
	}
}

func testReboot(t *testing.T, bin string, p preset) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)

	var fakes []leases.Lease
	exp := time.Now().Add(time.Hour)
	for i := range fakePeers {
		l := fakeLease(p.name, i)
		fakes = append(fakes, l)
		b, err := leases.MarshalAttrs(l.Attrs)
		require.NoError(t, err)
		path := filepath.Join(lab.StoreDir(), "subnets", leases.SubnetKey(l.Subnet, netip.Prefix{}))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		require.NoError(t, os.WriteFile(path, b, 0o600))
		require.NoError(t, os.Chtimes(path, exp, exp))
	}
	args := append([]string{"--preset", p.name}, resyncArgs(ctx, bin)...)
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StartNode(ctx, i, args...))
	}
	all := func() []leases.Lease {
		peer := leases.Lease{Subnet: lab.Subnet(2).Masked(), Attrs: leases.Attrs{PublicIP: lab.Underlay(2)}}
		if p.identity != nil {
			id, err := p.identity(ctx, lab, 2)
			require.NoError(t, err)
			peer.Attrs.BackendData = id
		}
		return append([]leases.Lease{peer}, fakes...)
	}
	converged := func(step string) {
		want := all()
		eventuallyWithin(t, ctx, bulkTimeout, fmt.Sprintf("%s: node 1 holds what SubnetAdd sets up for all %d peers", step, len(want)), func() error {
			n, err := peersApplied(ctx, lab, p.name, 1, want)
			if err != nil {
				return err
			}
			if n != len(want) {
				return fmt.Errorf("%d of %d", n, len(want))
			}
			return nil
		})
		requireMesh(t, ctx, lab, step, []int{1, 2})
		eventuallyWithin(t, ctx, bulkTimeout, step+": status shows nothing failing", func() error {
			st, err := runner.ReadStatus(lab.StateDir(1))
			if err != nil {
				return err
			}
			if len(st.Failing) > 0 || len(st.Applied) != len(want) {
				return fmt.Errorf("%d applied, failing: %+v", len(st.Applied), st.Failing)
			}
			return nil
		})
	}
	converged("after start")

	sub1 := lab.Subnet(1)
	require.NoError(t, lab.RebootNode(ctx, 1))
	require.Equal(t, sub1, lab.Subnet(1), "a rebooted node keeps its subnet")
	converged("after node 1 rebooted")

	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.LeaveNode(ctx, i))
		requireShutdownRan(t, ctx, lab, p, i)
	}
	require.NoError(t, lab.Close())
}
