//go:build integration

package shell_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

const (
	fastInnerEnv = "FLEXHOOK_SHELL_FAST_INNER"
	fastModeEnv  = "FLEXHOOK_SHELL_FAST_MODE" // real or fast
	fastOutEnv   = "FLEXHOOK_SHELL_FAST_OUT"  // where the inner run writes its steps
)

// paritySteps run in order in a fresh namespace holding lo and a veth pair
// (veth0 172.16.0.1/16 and fd00::1/64). fast marks the steps the fast path
// must do itself; every other step must end as the real tool does, by
// falling back to it.
var paritySteps = []struct {
	cmd  string
	fast bool
}{
	{"ip link add flannel-vxlan type vxlan id 1 dstport 8472 nolearning", true},
	{"ip link add flannel-vxlan type vxlan id 1 dstport 8472 nolearning", false}, // exists
	{"ip link set mtu 1450 dev flannel-vxlan", true},
	{"ip addr add 10.50.1.0/32 dev flannel-vxlan", true},
	{"ip addr add 10.50.1.0/32 dev flannel-vxlan", false}, // exists
	{"ip link set flannel-vxlan up", true},
	{"ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", true},
	{"arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan", true},
	{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2", true},
	{"ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", false}, // File exists
	{"bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2", false},    // exists
	{"ip route replace 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink", true},
	{"arp -s 10.50.2.0 b2:d1:fc:40:8d:30 dev flannel-vxlan", true}, // replaces
	{"bridge fdb append 00:00:00:00:00:00 dev flannel-vxlan self dst 192.0.2.3", true},
	{"bridge fdb replace b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.4", true},
	{"ip neigh add 10.50.3.0 lladdr 02:00:00:00:00:03 dev flannel-vxlan", true},
	{"ip neigh add 10.50.3.0 lladdr 02:00:00:00:00:03 dev flannel-vxlan", false}, // exists
	{"ip neigh replace 10.50.3.0 lladdr 02:00:00:00:00:04 dev flannel-vxlan nud permanent", true},
	{"ip neigh add 10.50.4.0 lladdr 02:00:00:00:00:05 dev flannel-vxlan nud noarp", true},
	{"ip route add 10.60.1.0/24 via 172.16.1.1", true},
	{"ip route add 10.60.1.0/24 via 172.16.1.1", false}, // File exists
	{"ip route del 10.60.1.0/24 via 172.16.1.1", true},
	{"ip route del 10.60.1.0/24 via 172.16.1.1", false}, // No such process
	{"ip route add 10.60.2.0/24 via 172.16.1.1 dev veth0", true},
	{"ip route add 10.60.5.0/24 via 172.16.1.1 dev veth0 onlink", true},
	{"ip -4 route add 10.70.0.0/16 dev flannel-vxlan", true},
	{"ip route del 10.70.0.0/16", true},
	{"ip route add 10.60.3.0/24 via 172.16.1.1 dev nosuchdev", false}, // Cannot find device
	{"ip route add 10.60.4.5/24 via 172.16.1.1", false},               // bad prefix
	{"ip route add bogus via 172.16.1.1", false},                      // bad argument
	{"ip route add 10.60.6.0/24 via 10.99.9.9", false},                // gateway not on-link
	{"ip -6 route add fd00:1::/64 via fd00::2", true},
	{"ip -6 route add fd00:2::/64 dev veth0", true},
	{"ip -6 route del fd00:1::/64 via fd00::2", true},
	{"ip addr add 10.99.0.1/24 dev veth0", true},
	{"ip addr del 10.99.0.1/24 dev veth0", true},
	{"ip addr del 10.99.0.1/24 dev veth0", false}, // not there
	{"ip addr add 10.99.0.1/24 dev nosuchdev", false},
	{"ip neigh del 10.50.3.0 dev flannel-vxlan", true},
	{"ip neigh del 10.50.3.0 dev flannel-vxlan", false}, // not there
	{"bridge fdb del b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.4", true},
	{"bridge fdb del b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.4", false}, // not there
	{"arp -s 10.50.5.0 b2:d1:fc:40:8d:2f dev nosuchdev", false},
	// Where the fast path read words unlike iproute2 (issue 19): numbers
	// in base 0, nexthop and loopback scopes, arp on a non-Ethernet
	// device, a device named like a keyword prefix, abbreviations.
	{"ip link add vx8 type vxlan id 010 dstport 8472", true}, // VNI 8
	{"ip link add vx9 type vxlan id 9 dstport 08472", false}, // no number
	{"ip link set mtu 01400 dev vx8", true},                  // 768
	{"ip link set mtu 0x578 dev vx8", true},                  // 1400
	{"ip route add 10.60.8.0/24 nexthop dev veth0", true},    // scope global
	{"ip addr add 127.1.0.1/32 dev veth0", true},             // scope host
	{"ip addr del 127.1.0.1/32 dev veth0", true},
	{"arp -s 10.50.6.0 b2:d1:fc:40:8d:2f dev lo", false}, // SIOCSARP: EINVAL
	{"ip link set br up", false},                         // br is broadcast
	{"ip r a 10.60.9.0/24 via 172.16.1.1", true},
	{"ip ro add 10.60.10.0/24 via 172.16.1.1 metric 0x10 table 100", true},
	{"ip route del 10.60.10.0/24 via 172.16.1.1 metric 16 table 100", true},
	{"ip n a 10.50.7.0 l 02:00:00:00:00:07 dev flannel-vxlan", true},
	{"ip addr add dev veth0 10.99.1.1", true},
	{"ip -6 route add fd00:3::/64 via fd00::2 metric 256", true},
	{"ip link del vx8", true},
	{"ip link set dev flannel-vxlan down", true},
	{"ip link set nosuchdev up", false},
	{"ip link del flannel-vxlan", true},
	{"ip link del flannel-vxlan", false}, // Cannot find device
	{"ip link add flannel-vxlan type vxlan id 2 dstport 4789", true},
	{"ip link delete dev flannel-vxlan", true},
}

// parityStep is what one step did, as the inner run reports it.
type parityStep struct {
	Cmd    string
	Status int
	Stdout string
	Stderr string
	State  string // the namespace after the step, normalised
	Fast   bool   // done through netlink (only meaningful in fast mode)
}

func TestFastPathParity(t *testing.T) {
	dir := t.TempDir()
	runs := map[string][]parityStep{}
	for _, mode := range []string{"real", "fast"} {
		out := filepath.Join(dir, mode+".json")
		t.Setenv(fastModeEnv, mode)
		t.Setenv(fastOutEnv, out)
		runInner(t, "TestFastPathParityInner", fastInnerEnv, "ip", "bridge", "arp")
		data, err := os.ReadFile(out)
		require.NoError(t, err)
		var steps []parityStep
		require.NoError(t, json.Unmarshal(data, &steps))
		require.Len(t, steps, len(paritySteps))
		runs[mode] = steps
	}
	for i, want := range runs["real"] {
		got := runs["fast"][i]
		assert.Equal(t, want.Status, got.Status, "%s: exit status", want.Cmd)
		assert.Equal(t, want.Stdout, got.Stdout, "%s: stdout", want.Cmd)
		assert.Equal(t, want.Stderr, got.Stderr, "%s: stderr", want.Cmd)
		assert.Equal(t, want.State, got.State, "%s: kernel state after it", want.Cmd)
		assert.Equal(t, paritySteps[i].fast, got.Fast, "%s: done through netlink", want.Cmd)
		if !paritySteps[i].fast {
			assert.NotZero(t, want.Status, "%s: a fallback step is one that fails", want.Cmd)
		}
	}
}

// TestFastPathParityInner runs paritySteps in its own namespace, real or
// fast, and writes what each did.
func TestFastPathParityInner(t *testing.T) {
	if os.Getenv(fastInnerEnv) != "1" {
		t.Skip("runs only inside TestFastPathParity")
	}
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"}, // no link-local addresses from random MACs
		{"sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"},
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"},
		{"ip", "addr", "add", "172.16.0.1/16", "dev", "veth0"},
		{"ip", "addr", "add", "fd00::1/64", "dev", "veth0"},
		{"ip", "link", "set", "veth0", "up"},
		{"ip", "link", "set", "veth1", "up"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		require.NoError(t, err, "%v: %s", c, out)
	}
	var logs bytes.Buffer
	sh, err := shell.New(shell.Dir(t.TempDir()), shell.ReplaceExisting(false),
		shell.FastPath(os.Getenv(fastModeEnv) == "fast"),
		shell.Logger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	require.NoError(t, err)
	var steps []parityStep
	for _, p := range paritySteps {
		logs.Reset()
		res, err := sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.SubnetAdd, p.cmd), Subnet: "10.50.2.0/24"})
		st := parityStep{Cmd: p.cmd, Stdout: res.Stdout, Stderr: res.Stderr, State: nsState(t),
			Fast: strings.Contains(logs.String(), `msg="done through netlink"`)}
		var he *shell.HookError
		if err != nil {
			require.ErrorAs(t, err, &he, p.cmd)
			st.Status = he.Status
		}
		steps = append(steps, st)
	}
	data, err := json.MarshalIndent(steps, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(os.Getenv(fastOutEnv), data, 0o600))
}

// nsState is the namespace's links, addresses, routes (all tables, both
// families), neighbours and fdb as iproute2 shows them in JSON, plus the
// raw neighbour states and flags from rtnetlink; the MACs the kernel
// picked at random are replaced by the link's name.
func nsState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, c := range [][]string{
		{"ip", "-d", "-j", "link", "show"},
		{"ip", "-j", "addr", "show"},
		{"ip", "-4", "-d", "-j", "route", "show", "table", "all"},
		{"ip", "-6", "-d", "-j", "route", "show", "table", "all"},
		{"ip", "-d", "-j", "neigh", "show"},
		{"bridge", "-d", "-j", "fdb", "show"},
	} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		require.NoError(t, err, "%v", c)
		// One object per line, sorted: the kernel's dump order (hash
		// tables) is no part of the state.
		var objs []json.RawMessage
		require.NoError(t, json.Unmarshal(out, &objs), "%v: %s", c, out)
		lines := make([]string, len(objs))
		for i, o := range objs {
			lines[i] = string(o)
		}
		slices.Sort(lines)
		fmt.Fprintf(&b, "%s\n%s\n", strings.Join(c, " "), strings.Join(lines, "\n"))
	}
	var raw []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
		ns, err := netlink.NeighList(0, fam)
		require.NoError(t, err)
		for _, n := range ns {
			raw = append(raw, fmt.Sprintf("neigh fam=%d if=%d ip=%v ll=%v state=%#x flags=%#x type=%d",
				fam, n.LinkIndex, n.IP, n.HardwareAddr, n.State, n.Flags, n.Type))
		}
	}
	slices.Sort(raw)
	b.WriteString(strings.Join(raw, "\n"))
	s := b.String()
	links, err := netlink.LinkList()
	require.NoError(t, err)
	for _, l := range links {
		if m := l.Attrs().HardwareAddr.String(); m != "" && m != "00:00:00:00:00:00" {
			s = strings.ReplaceAll(s, m, "mac-of-"+l.Attrs().Name)
		}
	}
	return s
}
