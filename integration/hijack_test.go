//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// refusedAs waits until node i's status lists key as refused for reason.
func refusedAs(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, key string, reason leases.Reason) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("node %d refuses %s as %s", i, key, reason), func() error {
		st, err := runner.ReadStatus(lab.StateDir(i))
		if err != nil {
			return err
		}
		for _, r := range st.Refused {
			if r.Key == key {
				if r.Reason != string(reason) {
					return fmt.Errorf("refused as %s: %s", r.Reason, r.Detail)
				}
				return nil
			}
		}
		return fmt.Errorf("not refused; refused: %v", st.Refused)
	})
}

// failingAs waits until node i's status lists subnet as failing and ok
// (nil: any failure) accepts the failure.
func failingAs(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, subnet string, ok func(runner.Failure) error) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("node %d shows %s as failing", i, subnet), func() error {
		st, err := runner.ReadStatus(lab.StateDir(i))
		if err != nil {
			return err
		}
		for _, f := range st.Failing {
			if f.Subnet.String() == subnet {
				if ok == nil {
					return nil
				}
				return ok(f)
			}
		}
		return fmt.Errorf("not failing: %+v", st.Failing)
	})
}

// underlayInNetwork writes a host-gw config whose Network holds the
// lab's underlay 192.0.2.0/24; the nodes' own subnets come from
// elsewhere in it.
func underlayInNetwork(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{
  "Network": "192.0.0.0/16", "SubnetMin": "192.0.10.0", "SubnetMax": "192.0.20.0",
  "Backend": {"Type": "extension",
    "SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP",
    "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"}}`), 0o600))
	return cfg
}

// Admitted leases cannot steer a node: a second lease repeating node 2's
// VTEP MAC (or WireGuard key) is refused as duplicate_backend_data, node
// 1's fdb entry (or peer) for node 2 stays where it was and the pods keep
// reaching each other. (Before, the duplicate's Add, through
// replace-existing, moved node 2's fdb entry to the newcomer's address.)
func TestHijackDuplicateIdentity(t *testing.T) {
	for _, c := range []struct {
		preset string
		tools  []string
		id     func(ctx context.Context, lab *netlab.Lab, i int) (string, error)
		holds  func(ctx context.Context, lab *netlab.Lab, id string) (string, error) // what node 1 has for id
		want   func(lab *netlab.Lab) string
	}{
		{"vxlan", []string{"bridge", "arp"},
			func(ctx context.Context, lab *netlab.Lab, i int) (string, error) {
				return linkAddress(ctx, lab, i, "flannel-vxlan")
			},
			func(ctx context.Context, lab *netlab.Lab, mac string) (string, error) {
				out, err := lab.Exec(ctx, 1, "bridge", "fdb", "show", "dev", "flannel-vxlan")
				for _, line := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(line, mac+" ") && strings.Contains(line, " dst ") {
						return strings.Fields(strings.SplitN(line, " dst ", 2)[1])[0], err
					}
				}
				return "", err
			},
			func(lab *netlab.Lab) string { return lab.Underlay(2).String() }},
		{"wireguard", []string{"wg", "wireguard-go"}, wgPublicKey,
			func(ctx context.Context, lab *netlab.Lab, key string) (string, error) {
				out, err := lab.Exec(ctx, 1, "wg", "show", "flannel-wg", "allowed-ips")
				for _, line := range strings.Split(string(out), "\n") {
					if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
						return strings.Join(f[1:], " "), err
					}
				}
				return "", err
			},
			func(lab *netlab.Lab) string { return lab.Subnet(2).String() }},
	} {
		t.Run(c.preset, func(t *testing.T) {
			bin := requireLab(t, c.tools...)
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			lab := newLab(t, ctx, bin, 2)
			for i := 1; i <= 2; i++ {
				require.NoError(t, lab.StartNode(ctx, i, "--preset", c.preset))
			}
			requireMesh(t, ctx, lab, "before", []int{1, 2})
			id, err := c.id(ctx, lab, 2)
			require.NoError(t, err)
			require.NotEmpty(t, id)
			eventually(t, ctx, "node 1 holds node 2's identity", func() error {
				got, err := c.holds(ctx, lab, id)
				if err == nil && got != c.want(lab) {
					err = fmt.Errorf("node 1 has %q for %s, want %q", got, id, c.want(lab))
				}
				return err
			})

			hijack := "10.50.250.0/24"
			if lab.Subnet(1).String() == hijack || lab.Subnet(2).String() == hijack {
				hijack = "10.50.251.0/24"
			}
			dup := id // a key as it is; a MAC in capitals, which names the same VTEP
			if c.preset == "vxlan" {
				dup = strings.ToUpper(id)
			}
			writeLease(t, lab, hijack, "192.0.2.66", dup)
			refusedAs(t, ctx, lab, 1, leases.SubnetKey(netip.MustParsePrefix(hijack), netip.Prefix{}), leases.ReasonDuplicateData)
			got, err := c.holds(ctx, lab, id)
			require.NoError(t, err)
			require.Equal(t, c.want(lab), got, "node 2's %s on node 1 moved", id)
			requireMesh(t, ctx, lab, "after the hijack attempt", []int{1, 2})
			for i := 1; i <= 2; i++ {
				require.NoError(t, lab.StopNode(ctx, i))
			}
		})
	}
}

// A lease for the node's own underlay network (host-gw, with the underlay
// inside Network) is refused as overlaps_node_network: the node's
// connected route stays. (Before, its Add replaced the connected route
// with one via the attacker, and its Remove took the route away for good.)
func TestHijackConnectedRoute(t *testing.T) {
	bin := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	cfg := underlayInNetwork(t)
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StartNode(ctx, i, "--config", cfg))
	}
	requireMesh(t, ctx, lab, "before", []int{1, 2})
	connected := func() error {
		rs, err := lab.Routes(ctx, 1)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Dst == "192.0.2.0/24" {
				if r.Gateway != "" || r.Dev != "eth0" {
					return fmt.Errorf("192.0.2.0/24 goes via %q dev %s", r.Gateway, r.Dev)
				}
				return nil
			}
		}
		return fmt.Errorf("no route to 192.0.2.0/24")
	}
	require.NoError(t, connected())
	writeLease(t, lab, "192.0.2.0/24", "192.0.2.7", "")
	refusedAs(t, ctx, lab, 1, "192.0.2.0-24", leases.ReasonOverlapsNode)
	require.NoError(t, connected(), "the connected route is the node's")
	requireMesh(t, ctx, lab, "after the hijack attempt", []int{1, 2})
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StopNode(ctx, i))
	}
}

// A lease for a subnet the node already routes (a static route the
// operator set before flexhook started, inside Network) is admitted, but
// its Add may not replace that route: the lease shows as conflicting
// (preexisting) in status.json, the route stays as it was, and when the
// lease goes its Remove leaves the route alone. (Before, replace-existing
// replaced the route with one via the lease's PublicIP, and the Remove
// deleted it for good.)
func TestHijackStaticRoute(t *testing.T) {
	bin := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	cfg := underlayInNetwork(t)
	_, err := lab.Exec(ctx, 1, "ip", "route", "add", "192.0.30.0/24", "via", "192.0.2.99", "dev", "eth0")
	require.NoError(t, err)
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StartNode(ctx, i, "--config", cfg))
	}
	requireMesh(t, ctx, lab, "before", []int{1, 2})
	static := func() error {
		out, err := lab.Exec(ctx, 1, "ip", "route", "show", "192.0.30.0/24")
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "via 192.0.2.99 dev eth0") {
			return fmt.Errorf("192.0.30.0/24 is now %q", out)
		}
		return nil
	}
	writeLease(t, lab, "192.0.30.0/24", "192.0.2.7", "")
	failingAs(t, ctx, lab, 1, "192.0.30.0/24", func(f runner.Failure) error {
		if f.Conflict != "preexisting" || !strings.Contains(f.Error, "route 192.0.30.0/24 was on this node before flexhook started") {
			return fmt.Errorf("failing, but as %q: %s", f.Conflict, f.Error)
		}
		return nil
	})
	require.NoError(t, static(), "the operator's route is the node's")
	requireMesh(t, ctx, lab, "during the conflict", []int{1, 2})
	out, err := exec.CommandContext(ctx, bin, "status", "--state-dir", lab.StateDir(1)).CombinedOutput()
	require.Error(t, err, "status exits 1 while a lease conflicts: %s", out)
	require.Contains(t, string(out), "192.0.30.0/24 SubnetAddCommand conflict=preexisting:")

	require.NoError(t, os.Remove(filepath.Join(lab.StoreDir(), "subnets", "192.0.30.0-24")))
	eventually(t, ctx, "node 1 forgets 192.0.30.0/24", func() error {
		st, err := runner.ReadStatus(lab.StateDir(1))
		if err != nil {
			return err
		}
		if len(st.Failing) > 0 {
			return fmt.Errorf("still failing: %+v", st.Failing)
		}
		return nil
	})
	require.NoError(t, static(), "the lease's Remove leaves the node's route alone")
	for i := 1; i <= 2; i++ {
		require.NoError(t, lab.StopNode(ctx, i))
	}
}
