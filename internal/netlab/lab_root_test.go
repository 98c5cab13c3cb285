//go:build integration

package netlab

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

func TestMain(m *testing.M) {
	HandleReexec()
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root: network namespaces")
	}
}

// TestLabPlumbing builds a real 2-node lab, routes the two pod subnets over
// the underlay by hand (as host-gw would) and checks the harness's own
// probes: ping and TCP with pod source addresses, counters, the private
// wireguard run dir of the mount wrapper, and that Close leaves nothing.
func TestLabPlumbing(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := New(ctx, t, Nodes(2))
	require.NoError(t, err)

	pods := map[int]netip.Prefix{1: netip.MustParsePrefix("10.50.1.1/24"), 2: netip.MustParsePrefix("10.50.2.1/24")}
	for i, p := range pods {
		require.NoError(t, lab.setPod(ctx, lab.mustNode(i), p))
	}
	// Before any route: the other pod is unreachable.
	require.Error(t, lab.Ping(ctx, 1, lab.PodAddr(2)))
	_, err = runIP(ctx, "-n", lab.Netns(1), "route", "add", "10.50.2.0/24", "via", lab.Underlay(2).String())
	require.NoError(t, err)
	_, err = runIP(ctx, "-n", lab.Netns(2), "route", "add", "10.50.1.0/24", "via", lab.Underlay(1).String())
	require.NoError(t, err)

	before, err := lab.Stats(ctx, 1, "eth0")
	require.NoError(t, err)
	require.NoError(t, lab.Ping(ctx, 1, lab.PodAddr(2)))
	require.NoError(t, lab.Ping(ctx, 2, lab.PodAddr(1)))
	require.NoError(t, lab.TCP(ctx, 1, 2))
	require.NoError(t, lab.TCP(ctx, 2, 1))
	after, err := lab.Stats(ctx, 1, "eth0")
	require.NoError(t, err)
	require.Greater(t, after.TxPackets, before.TxPackets)

	routes, err := lab.Routes(ctx, 1)
	require.NoError(t, err)
	require.Contains(t, routes, Route{Dst: "10.50.2.0/24", Gateway: "192.0.2.12", Dev: "eth0"})
	ok, err := lab.HasLink(ctx, 2, "cni0")
	require.NoError(t, err)
	require.True(t, ok)

	// The mount wrapper gives the command a private tmpfs on the
	// wireguard run dir and the netns's own /sys.
	out, err := exec2(ctx, lab, 1, modeMountWrap, "cat", "/proc/self/mountinfo")
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), " "+wireguardRunDir()+" ")
	out, err = exec2(ctx, lab, 1, modeMountWrap, "ls", "/sys/class/net")
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "cni0")

	require.NoError(t, lab.Close())
	require.Empty(t, lab.Leftovers())
}

// exec2 runs argv through `ip netns exec` and the re-exec wrapper mode.
func exec2(ctx context.Context, lab *Lab, i int, mode string, argv ...string) ([]byte, error) {
	cmd := execCommand(ctx, "ip", append([]string{"netns", "exec", lab.Netns(i), lab.self}, argv...)...)
	cmd.Env = append(os.Environ(), reexecEnv+"="+mode)
	return cmd.CombinedOutput()
}

// TestSweepRemovesDeadLabs leaves a namespace named like a lab of a dead
// process and checks Sweep deletes it, while the live lab survives.
func TestSweepRemovesDeadLabs(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	lab, err := New(ctx, t, Nodes(1))
	require.NoError(t, err)
	stale := Prefix + "999999999-dead00-n1" // no such pid
	_, err = runIP(ctx, "netns", "add", stale)
	require.NoError(t, err)
	t.Cleanup(func() { _ = removeNetns(context.Background(), stale) })

	require.NoError(t, Sweep(ctx, t))
	names, err := listLabNetns()
	require.NoError(t, err)
	require.NotContains(t, names, stale)
	require.Contains(t, strings.Join(names, " "), lab.Netns(1))
}

// TestSnapshotSeesEverything changes each kind of state a backend can
// change, by hand, on a node whose snapshot was taken before, and checks
// that Diff names each change, a rule added twice as two, and nothing the
// kernel keeps for itself.
func TestSnapshotSeesEverything(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab, err := New(ctx, t, Nodes(1))
	require.NoError(t, err)
	before, err := lab.Snapshot(ctx, 1)
	require.NoError(t, err)
	again, err := lab.Snapshot(ctx, 1)
	require.NoError(t, err)
	require.Empty(t, Diff(before, again), "two snapshots of an idle node are the same")

	ns := lab.Netns(1)
	for _, argv := range [][]string{
		{"ip", "-n", ns, "rule", "add", "to", "10.50.2.0/24", "table", "100"},
		{"ip", "-n", ns, "rule", "add", "to", "10.50.2.0/24", "table", "100"},
		{"ip", "-n", ns, "nexthop", "add", "id", "7", "via", "192.0.2.99", "dev", "eth0"},
		{"ip", "netns", "exec", ns, "nft", "add", "table", "inet", "fxb"},
		{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.eth0.proxy_arp=1"},
		{"tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "pfifo"}, // what this kernel has
		// (No xfrm state: this machine's kernel has no ESP/AH; states
		// are read the same way, see TestXfrmEntries.)
		{"ip", "-n", ns, "xfrm", "policy", "add", "src", "10.50.1.0/24", "dst", "10.50.2.0/24", "dir", "out"},
		// (A plain bridge: this kernel has no bridge VLAN filtering, so
		// "vlan" stays empty here.)
		{"ip", "-n", ns, "link", "add", "fxbr", "type", "bridge"},
	} {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		require.NoError(t, err, "%v: %s", argv, out)
	}
	after, err := lab.Snapshot(ctx, 1)
	require.NoError(t, err)
	diff := strings.Join(Diff(before, after), "\n")
	for _, want := range []string{
		"+ rule: -4 dst 10.50.2.0/24 src all table 100\n+ rule: -4 dst 10.50.2.0/24 src all table 100",
		"+ nexthop: ",
		"+ nft: table inet fxb",
		"+ sysctl: net.ipv4.conf.eth0.proxy_arp = 1",
		"+ qdisc: pfifo dev eth0 root",
		"+ xfrm: policy src 10.50.1.0/24 dst 10.50.2.0/24 dir out",
		"+ link: fxbr kind=bridge",
	} {
		require.Contains(t, diff, want)
	}
	require.NoError(t, lab.Close())
}
