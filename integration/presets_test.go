//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// reachTimeout bounds how long a change (start, restart, join, removal)
// may take to show in the data path of the other nodes.
const reachTimeout = 20 * time.Second

// preset describes what each recipe leaves in a node, to prove the path.
type preset struct {
	name   string
	tools  []string
	device string // the overlay device ShutdownCommand removes; "" = none
	// identity reads the node's BackendData source (VTEP MAC, public key);
	// nil when the recipe has none.
	identity func(ctx context.Context, lab *netlab.Lab, i int) (string, error)
	// removesPeer says the recipe has a SubnetRemoveCommand whose effect
	// gone() can observe on node i for the departed node's subnet.
	gone func(ctx context.Context, lab *netlab.Lab, i int, subnet, identity string) error
	// proveOverlay checks the packets went the preset's way.
	proveOverlay func(t *testing.T, ctx context.Context, lab *netlab.Lab, nodes []int, before map[int]netlab.LinkStats)
}

var presets = []preset{
	{
		name:   "vxlan",
		tools:  []string{"bridge", "arp"},
		device: "flannel-vxlan",
		identity: func(ctx context.Context, lab *netlab.Lab, i int) (string, error) {
			return linkAddress(ctx, lab, i, "flannel-vxlan")
		},
		proveOverlay: func(t *testing.T, ctx context.Context, lab *netlab.Lab, nodes []int, before map[int]netlab.LinkStats) {
			for _, i := range nodes {
				st, err := lab.Stats(ctx, i, "flannel-vxlan")
				require.NoError(t, err)
				require.Greater(t, st.TxPackets, before[i].TxPackets, "node %d: no packets left through flannel-vxlan", i)
				require.Greater(t, st.RxPackets, before[i].RxPackets, "node %d: no packets came in through flannel-vxlan", i)
			}
		},
	},
	{
		name: "host-gw",
		gone: func(ctx context.Context, lab *netlab.Lab, i int, subnet, _ string) error {
			rs, err := lab.Routes(ctx, i)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Dst == subnet {
					return fmt.Errorf("node %d still routes %s via %s", i, subnet, r.Gateway)
				}
			}
			return nil
		},
		proveOverlay: func(t *testing.T, ctx context.Context, lab *netlab.Lab, nodes []int, _ map[int]netlab.LinkStats) {
			for _, i := range nodes {
				rs, err := lab.Routes(ctx, i)
				require.NoError(t, err)
				for _, j := range nodes {
					if j == i {
						continue
					}
					want := netlab.Route{Dst: lab.Subnet(j).String(), Gateway: lab.Underlay(j).String(), Dev: "eth0"}
					require.Contains(t, rs, want, "node %d lacks the host-gw route to node %d", i, j)
				}
			}
		},
	},
	{
		name:     "wireguard",
		tools:    []string{"wg", "wireguard-go"},
		device:   "flannel-wg",
		identity: wgPublicKey,
		gone: func(ctx context.Context, lab *netlab.Lab, i int, _, key string) error {
			peers, err := lab.Exec(ctx, i, "wg", "show", "flannel-wg", "peers")
			if err != nil {
				return err
			}
			if slices.Contains(strings.Fields(string(peers)), key) {
				return fmt.Errorf("node %d still has wireguard peer %s", i, key)
			}
			return nil
		},
		proveOverlay: func(t *testing.T, ctx context.Context, lab *netlab.Lab, nodes []int, _ map[int]netlab.LinkStats) {
			keys := map[string]int{}
			for _, i := range nodes {
				k, err := wgPublicKey(ctx, lab, i)
				require.NoError(t, err)
				keys[k] = i
			}
			kernel := kernelWireguard(t, ctx, lab, nodes[0])
			for _, i := range nodes {
				// --wireguard-userspace=auto: the kernel's device where
				// the kernel has the module, else the userspace
				// fallback. Prove which one carried the packets.
				if kernel {
					requireNoProcess(t, ctx, lab, i, "wireguard-go")
				} else {
					requireProcess(t, ctx, lab, i, "wireguard-go")
				}
				out, err := lab.Exec(ctx, i, "wg", "show", "flannel-wg", "transfer")
				require.NoError(t, err)
				seen := map[int]bool{}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					f := strings.Fields(line)
					require.Len(t, f, 3, "wg transfer line %q", line)
					j, ok := keys[f[0]]
					if !ok {
						continue // a departed peer
					}
					rx, _ := strconv.ParseUint(f[1], 10, 64)
					tx, _ := strconv.ParseUint(f[2], 10, 64)
					require.NotZero(t, rx, "node %d received nothing from node %d over wireguard", i, j)
					require.NotZero(t, tx, "node %d sent nothing to node %d over wireguard", i, j)
					seen[j] = true
				}
				require.Len(t, seen, len(nodes)-1, "node %d wireguard peers: %s", i, out)
			}
		},
	},
}

// TestPresets runs each preset's recipe as-is on a 3-node lab and walks it
// through the life of a cluster: full mesh, a restart with new BackendData,
// a graceful stop and lease removal, and a fourth node joining.
func TestPresets(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			bin := requireLab(t, p.tools...)
			t.Parallel()
			testPreset(t, bin, p)
		})
	}
}

func testPreset(t *testing.T, bin string, p preset) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var lab *netlab.Lab
	// Registered before New registers Close, so it runs after Close.
	t.Cleanup(func() {
		if lab != nil {
			require.Empty(t, lab.Leftovers(), "lab left things behind")
		}
	})
	lab, err := netlab.New(ctx, t, netlab.Nodes(3), netlab.Flexhook(bin))
	require.NoError(t, err)
	args := []string{"--preset", p.name, "--trace"}
	args = append(args, resyncArgs(ctx, bin)...)

	for i := 1; i <= 3; i++ {
		require.NoError(t, lab.StartNode(ctx, i, args...))
	}
	subnets := map[string]int{}
	for i := 1; i <= 3; i++ {
		subnets[lab.Subnet(i).String()] = i
	}
	require.Len(t, subnets, 3, "nodes must get distinct subnets")

	t.Log("step 1: Every node reaches every other node's pod, over the overlay")
	// 1. Every node reaches every other node's pod, over the overlay.
	before := deviceStats(t, ctx, lab, p, []int{1, 2, 3})
	requireMesh(t, ctx, lab, "after start", []int{1, 2, 3})
	p.proveOverlay(t, ctx, lab, []int{1, 2, 3}, before)

	t.Log("step 2: Node 2 stopped gracefully, its private key deleted, started")
	// 2. Node 2 stopped gracefully, its private key deleted, started
	// again: same subnet, new BackendData (a new VTEP MAC comes with the
	// new link, a new key with the new privatekey), and the others reach
	// it without being restarted.
	sub2 := lab.Subnet(2)
	var id2 string
	if p.identity != nil {
		id2, err = p.identity(ctx, lab, 2)
		require.NoError(t, err)
	}
	require.NoError(t, lab.StopNode(ctx, 2), "SIGTERM must end flexhook with exit 0")
	if p.device != "" { // a stop is a restart: no ShutdownCommand ran
		ok, err := lab.HasLink(ctx, 2, p.device)
		require.NoError(t, err)
		require.True(t, ok, "node 2: a stop removed %s", p.device)
	}
	if err := os.Remove(filepath.Join(lab.StateDir(2), "privatekey")); err != nil && !os.IsNotExist(err) {
		require.NoError(t, err)
	}
	require.NoError(t, lab.StartNode(ctx, 2, args...))
	require.Equal(t, sub2, lab.Subnet(2), "a restarted node keeps its subnet")
	if p.identity != nil {
		newID, err := p.identity(ctx, lab, 2)
		require.NoError(t, err)
		require.NotEqual(t, id2, newID, "restart must bring new BackendData")
	}
	before = deviceStats(t, ctx, lab, p, []int{1, 2, 3})
	requireMesh(t, ctx, lab, "after node 2 restarted with new BackendData", []int{1, 2, 3})
	p.proveOverlay(t, ctx, lab, []int{1, 2, 3}, before)

	t.Log("step 3: Node 3 leaves: ShutdownCommand removes its device")
	// 3. Node 3 leaves the cluster (flexhook leave): ShutdownCommand
	// removes its device and its lease goes; the others run
	// SubnetRemoveCommand.
	sub3 := lab.Subnet(3).String()
	var id3 string
	if p.identity != nil {
		id3, err = p.identity(ctx, lab, 3)
		require.NoError(t, err)
	}
	require.NoError(t, lab.LeaveNode(ctx, 3))
	requireShutdownRan(t, ctx, lab, p, 3)
	out, err := lab.Flexhook(ctx, "leases", "--store", lab.StoreDir())
	require.NoError(t, err, string(out))
	require.NotContains(t, string(out), sub3, "node 3 took its lease with it")
	if p.gone != nil {
		for _, i := range []int{1, 2} {
			eventually(t, ctx, fmt.Sprintf("node %d runs SubnetRemove for %s", i, sub3), func() error {
				return p.gone(ctx, lab, i, sub3, id3)
			})
		}
	}

	t.Log("step 4: A fourth node joins later and is reachable from all")
	// 4. A fourth node joins later and is reachable from all.
	four, err := lab.AddNode(ctx)
	require.NoError(t, err)
	require.NoError(t, lab.StartNode(ctx, four, args...))
	before = deviceStats(t, ctx, lab, p, []int{1, 2, four})
	requireMesh(t, ctx, lab, "after node 4 joined", []int{1, 2, four})
	p.proveOverlay(t, ctx, lab, []int{1, 2, four}, before)

	t.Log("step 5: Node 1 killed (no ShutdownCommand ran) and started again: same")
	// 5. Node 1 killed (no ShutdownCommand ran) and started again: same
	// subnet; its recipe rebuilds the device, so it must set up every
	// peer again, and the peers must take its new BackendData.
	sub1 := lab.Subnet(1)
	require.NoError(t, lab.KillNode(ctx, 1))
	require.NoError(t, lab.StartNode(ctx, 1, args...))
	require.Equal(t, sub1, lab.Subnet(1), "a restarted node keeps its subnet")
	requireMesh(t, ctx, lab, "after node 1 was killed and restarted", []int{1, 2, four})

	t.Log("step 6: Everything goes: every node leaves, then the lab")
	// 6. Everything goes: every node leaves, then the lab.
	for _, i := range []int{1, 2, four} {
		require.NoError(t, lab.LeaveNode(ctx, i))
		requireShutdownRan(t, ctx, lab, p, i)
	}
	require.NoError(t, lab.Close())
}

// requireMesh waits until every node pings every other node's pod address
// from its own pod address, then opens one TCP connection per pair.
func requireMesh(t *testing.T, ctx context.Context, lab *netlab.Lab, step string, nodes []int) {
	t.Helper()
	for _, i := range nodes {
		for _, j := range nodes {
			if i == j {
				continue
			}
			eventually(t, ctx, fmt.Sprintf("%s: ping node %d -> node %d (%s)", step, i, j, lab.PodAddr(j)), func() error {
				return lab.Ping(ctx, i, lab.PodAddr(j))
			})
			eventually(t, ctx, fmt.Sprintf("%s: tcp node %d -> node %d", step, i, j), func() error {
				return lab.TCP(ctx, i, j)
			})
		}
	}
}

// requireShutdownRan checks ShutdownCommand removed the preset's device and
// that no process (wireguard-go) stays in the node's namespace.
func requireShutdownRan(t *testing.T, ctx context.Context, lab *netlab.Lab, p preset, i int) {
	t.Helper()
	if p.device != "" {
		ok, err := lab.HasLink(ctx, i, p.device)
		require.NoError(t, err)
		require.False(t, ok, "node %d: ShutdownCommand left %s behind", i, p.device)
	}
	// The lab's snapshot (the one `flexhook lab verify` diffs): no link is
	// left but the lab's own.
	snap, err := lab.Snapshot(ctx, i)
	require.NoError(t, err)
	for _, l := range snap.WithoutLab()["link"] {
		require.Contains(t, []string{"lo", "eth0"}, strings.Fields(l)[0], "node %d: ShutdownCommand left a link: %s", i, l)
	}
	eventually(t, ctx, fmt.Sprintf("node %d namespace empty of processes", i), func() error {
		ps, err := lab.Processes(ctx, i)
		if err != nil {
			return err
		}
		if len(ps) > 0 {
			return fmt.Errorf("processes left: %v", ps)
		}
		return nil
	})
}

func deviceStats(t *testing.T, ctx context.Context, lab *netlab.Lab, p preset, nodes []int) map[int]netlab.LinkStats {
	t.Helper()
	m := map[int]netlab.LinkStats{}
	if p.device == "" {
		return m
	}
	for _, i := range nodes {
		st, err := lab.Stats(ctx, i, p.device)
		require.NoError(t, err)
		m[i] = st
	}
	return m
}

func requireProcess(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, comm string) {
	t.Helper()
	ps, err := lab.Processes(ctx, i)
	require.NoError(t, err)
	for _, p := range ps {
		if p.Comm == comm {
			return
		}
	}
	t.Fatalf("node %d: no %s process among %v", i, comm, ps)
}

func requireNoProcess(t *testing.T, ctx context.Context, lab *netlab.Lab, i int, comm string) {
	t.Helper()
	ps, err := lab.Processes(ctx, i)
	require.NoError(t, err)
	for _, p := range ps {
		require.NotEqual(t, comm, p.Comm, "node %d", i)
	}
}

func linkAddress(ctx context.Context, lab *netlab.Lab, i int, dev string) (string, error) {
	out, err := lab.Exec(ctx, i, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(string(out)), err
}

func wgPublicKey(ctx context.Context, lab *netlab.Lab, i int) (string, error) {
	out, err := lab.Exec(ctx, i, "wg", "show", "flannel-wg", "public-key")
	return strings.TrimSpace(string(out)), err
}

// eventually polls fn until it succeeds or reachTimeout passes, then fails
// with fn's last error.
func eventually(t *testing.T, ctx context.Context, what string, fn func() error) {
	t.Helper()
	eventuallyWithin(t, ctx, reachTimeout, what, fn)
}

// bulkTimeout bounds a change that runs a hook per lease for hundreds of
// leases (a hang guard: on 2 loaded cores a vxlan Add may take 150 ms).
const bulkTimeout = 2 * time.Minute

// eventuallyWithin is eventually with its own bound.
func eventuallyWithin(t *testing.T, ctx context.Context, bound time.Duration, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, bound, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// resyncArgs asks for a short store re-list when the binary offers it, so
// a dropped fsnotify event costs seconds, not minutes.
func resyncArgs(ctx context.Context, bin string) []string {
	out, _ := exec.CommandContext(ctx, bin, "run", "--help").CombinedOutput()
	if strings.Contains(string(out), "--store-resync") {
		return []string{"--store-resync", "2s"}
	}
	return nil
}
