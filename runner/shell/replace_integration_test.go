//go:build integration

package shell_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner/shell"
)

const replaceInnerEnv = "FLEXHOOK_SHELL_REPLACE_INNER"

// TestReplaceExistingNetns runs SubnetAdd twice for one subnet, the second
// time with a new peer MAC, with real iproute2 in a throwaway network
// namespace: with ReplaceExisting the second run succeeds and the kernel
// holds the new values; without it, it fails at `ip route add`.
func TestReplaceExistingNetns(t *testing.T) {
	if os.Getenv(replaceInnerEnv) == "1" {
		replaceInner(t)
		return
	}
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root: network namespaces")
	}
	for _, bin := range []string{"ip", "bridge", "arp"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.SkipOrFail(t, "needs %s (apt-get install iproute2 net-tools)", bin)
		}
	}
	ns := fmt.Sprintf("flexhook-repl-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
	out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput()
	require.NoError(t, err, "ip netns add: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns,
		helperBin(t), "-test.run=^TestReplaceExistingNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), replaceInnerEnv+"=1")
	out, err = cmd.CombinedOutput()
	t.Logf("inner test:\n%s", out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: TestReplaceExistingNetns")
}

func replaceInner(t *testing.T) {
	t.Run("vxlan recipe", replaceVxlanRecipe)
	t.Run("route neigh addr fdb", replaceEveryAdd)
	t.Run("del of what is absent", deleteAbsent)
}

// deleteAbsent removes a route, a neighbour, an address and an fdb entry
// twice: with ReplaceExisting the second Remove succeeds (what it wanted
// gone is gone); without, it fails. A missing device fails either way.
func deleteAbsent(t *testing.T) {
	const add = `ip route add 10.99.2.0/24 via 10.99.1.2 dev va onlink &&
ip neigh add 10.99.1.2 lladdr 02:00:00:00:00:01 dev va &&
ip addr add 10.99.1.1/32 dev va &&
bridge fdb add 02:00:00:00:00:aa dev vx0 self dst 192.0.2.1`
	const del = `ip route del 10.99.2.0/24 via 10.99.1.2 dev va &&
ip neigh del 10.99.1.2 dev va &&
ip addr del 10.99.1.1/32 dev va &&
bridge fdb del 02:00:00:00:00:aa dev vx0 self`
	for _, replace := range []bool{true, false} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			for _, args := range [][]string{
				{"link", "add", "va", "type", "veth", "peer", "name", "vb"},
				{"link", "set", "va", "up"},
				{"link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "8472", "nolearning"},
				{"link", "set", "vx0", "up"},
			} {
				cmdOut(t, "ip", args...)
			}
			t.Cleanup(func() {
				_ = exec.Command("ip", "link", "del", "va").Run()
				_ = exec.Command("ip", "link", "del", "vx0").Run()
			})
			f := newFixture(t, shell.ReplaceExisting(replace))
			run := func(kind hooks.Kind, src string) error {
				res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, kind, src), Subnet: "10.99.2.0/24"})
				t.Logf("stderr: %s", res.Stderr)
				return err
			}
			require.NoError(t, run(hooks.SubnetAdd, add))
			require.NoError(t, run(hooks.SubnetRemove, del), "the first Remove deletes for real")
			err := run(hooks.SubnetRemove, del) // a Remove again: everything is already gone
			t.Logf("trace:\n%s", f.trace.String())
			assert.NotContains(t, cmdOut(t, "ip", "route", "show", "10.99.2.0/24"), "10.99.2.0")
			if !replace {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, 4, strings.Count(f.log.String(), `msg="del: object already absent; counted as removed"`))
			for _, obj := range []string{"route 10.99.2.0/24", "neigh 10.99.1.2 dev va", "addr 10.99.1.1/32 dev va",
				"fdb 02:00:00:00:00:aa dev vx0"} {
				assert.Contains(t, f.log.String(), `object="`+obj+`"`)
			}
			require.Error(t, run(hooks.SubnetRemove, `ip route del 10.99.2.0/24 dev nodev`), "a missing device is no convergence")
		})
	}
}

// replaceVxlanRecipe runs the published vxlan recipe, unchanged: a peer
// restarts and comes back with a new VTEP MAC.
func replaceVxlanRecipe(t *testing.T) {
	data, err := presets.Get("vxlan")
	require.NoError(t, err)
	cfg, err := hooks.Parse(data)
	require.NoError(t, err)
	const (
		subnet = "10.50.2.0/24"
		peerIP = "192.0.2.2"
		mac1   = "02:00:00:00:00:01"
		mac2   = "02:00:00:00:00:02"
		route  = "ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink"
	)
	for _, replace := range []bool{true, false} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			f := newFixture(t, shell.ReplaceExisting(replace))
			run := func(ctx context.Context, kind hooks.Kind, env []string, stdin string) error {
				req := shell.Request{Hook: cfg.Backend.Hook(kind), Env: env, Stdin: stdin}
				if kind == hooks.SubnetAdd {
					req.Subnet = subnet
				}
				res, err := f.sh.Run(ctx, req)
				t.Logf("%s stderr: %s", kind, res.Stderr)
				return err
			}
			own := []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.1.0/24", "PUBLIC_IP=192.0.2.1"}
			require.NoError(t, run(t.Context(), hooks.PreStartup, own[:1], ""))
			t.Cleanup(func() { // t.Context() is done by now
				assert.NoError(t, run(context.Background(), hooks.Shutdown, own, ""))
			})
			require.NoError(t, run(t.Context(), hooks.PostStartup, own, ""))
			peer := []string{"NETWORK=10.50.0.0/16", "SUBNET=" + subnet, "PUBLIC_IP=" + peerIP}
			require.NoError(t, run(t.Context(), hooks.SubnetAdd, peer, mac1+"\n"))
			err := run(t.Context(), hooks.SubnetAdd, peer, mac2+"\n") // the peer restarted
			t.Logf("trace:\n%s", f.trace.String())

			routes := cmdOut(t, "ip", "route", "show", subnet)
			assert.Contains(t, routes, "via 10.50.2.0 dev flannel-vxlan onlink")
			neigh := cmdOut(t, "ip", "neigh", "show", "10.50.2.0", "dev", "flannel-vxlan")
			fdb := cmdOut(t, "bridge", "fdb", "show", "dev", "flannel-vxlan")
			assert.Contains(t, fdb, mac1+" dst "+peerIP)
			if !replace {
				var he *shell.HookError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, 2, he.Status)
				assert.Contains(t, neigh, "lladdr "+mac1, "arp -s never ran")
				assert.NotContains(t, fdb, mac2)
				assert.NotContains(t, f.trace.String(), "replace")
				return
			}
			require.NoError(t, err)
			assert.Contains(t, neigh, "lladdr "+mac2)
			assert.Contains(t, fdb, mac2+" dst "+peerIP)
			replaced := strings.Replace(route, " add ", " replace ", 1)
			assert.Contains(t, f.trace.String(), "+ "+route+"\n# exit status 2\n+ "+replaced+"\n+ arp -s 10.50.2.0 "+mac2)
			assert.Contains(t, f.log.String(), `msg="add: object exists; running replace" object="route 10.50.2.0/24"`)
		})
	}
}

// replaceEveryAdd changes the value of an existing route, neighbour, fdb
// entry (and re-adds an address) through each of the matched adds.
func replaceEveryAdd(t *testing.T) {
	const src = `ip route add 10.99.2.0/24 via $GW dev va onlink &&
ip neigh add 10.99.1.2 lladdr $MAC dev va &&
ip addr add 10.99.1.1/32 dev va &&
bridge fdb add 02:00:00:00:00:aa dev vx0 self dst $DST`
	h := parse(t, hooks.SubnetAdd, src)
	for _, replace := range []bool{true, false} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			for _, args := range [][]string{
				{"link", "add", "va", "type", "veth", "peer", "name", "vb"},
				{"link", "set", "va", "up"},
				{"link", "set", "vb", "up"},
				{"link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "8472", "nolearning"},
				{"link", "set", "vx0", "up"},
			} {
				cmdOut(t, "ip", args...)
			}
			t.Cleanup(func() {
				_ = exec.Command("ip", "link", "del", "va").Run()
				_ = exec.Command("ip", "link", "del", "vx0").Run()
			})
			f := newFixture(t, shell.ReplaceExisting(replace))
			run := func(gw, mac, dst string) error {
				res, err := f.sh.Run(t.Context(), shell.Request{
					Hook: h, Env: []string{"GW=" + gw, "MAC=" + mac, "DST=" + dst}, Subnet: "10.99.2.0/24",
				})
				t.Logf("stderr: %s", res.Stderr)
				return err
			}
			require.NoError(t, run("10.99.1.2", "02:00:00:00:00:01", "192.0.2.1"))
			err := run("10.99.1.3", "02:00:00:00:00:02", "192.0.2.9")
			t.Logf("trace:\n%s", f.trace.String())
			routes := cmdOut(t, "ip", "route", "show", "10.99.2.0/24")
			neigh := cmdOut(t, "ip", "neigh", "show", "10.99.1.2", "dev", "va")
			addrs := cmdOut(t, "ip", "-4", "addr", "show", "dev", "va")
			fdb := cmdOut(t, "bridge", "fdb", "show", "dev", "vx0")
			assert.Contains(t, addrs, "10.99.1.1/32")
			if !replace {
				require.Error(t, err)
				assert.Contains(t, routes, "via 10.99.1.2 ")
				assert.Contains(t, neigh, "lladdr 02:00:00:00:00:01")
				assert.Contains(t, fdb, "02:00:00:00:00:aa dst 192.0.2.1 ")
				return
			}
			require.NoError(t, err)
			assert.Contains(t, routes, "via 10.99.1.3 ")
			assert.Contains(t, neigh, "lladdr 02:00:00:00:00:02")
			assert.Contains(t, fdb, "02:00:00:00:00:aa dst 192.0.2.9 ")
			assert.NotContains(t, fdb, "192.0.2.1 ", "replaced, not appended")
			// ip fails with 2, bridge with 255: each add of the second run failed.
			assert.Equal(t, 4, strings.Count(f.trace.String(), "# exit status "))
			assert.Equal(t, 4, strings.Count(f.trace.String(), " replace "))
			for _, obj := range []string{"route 10.99.2.0/24", "neigh 10.99.1.2 dev va", "addr 10.99.1.1/32 dev va",
				"fdb 02:00:00:00:00:aa dev vx0"} {
				assert.Contains(t, f.log.String(), `msg="add: object exists; running replace" object="`+obj+`"`)
			}
		})
	}
}

// cmdOut runs a command that must succeed and returns its output.
func cmdOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}
