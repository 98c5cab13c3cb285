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
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// crashConfig routes like host-gw and, once, kills its own daemon with
// SIGKILL right after a hook did its work for the subnet named in the
// state dir's file "crash-at": between the hook and the journal write.
// (cut's parent is the daemon, which runs hooks in-process.) Its nodes
// take their own subnet below 10.50.100.0, where the tests' leases never
// go: a test lease on the node's own subnet would take its lease away.
const crashConfig = `{
  "Network": "10.50.0.0/16",
  "SubnetMin": "10.50.1.0",
  "SubnetMax": "10.50.90.0",
  "Backend": {
    "Type": "extension",
    "SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP && if [ -e crash-at ] && [ \"$(cat crash-at)\" = \"$SUBNET\" ]; then rm crash-at; /usr/bin/kill -9 $(cut -d' ' -f4 /proc/self/stat); fi",
    "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP && if [ -e crash-at ] && [ \"$(cat crash-at)\" = \"$SUBNET\" ]; then rm crash-at; /usr/bin/kill -9 $(cut -d' ' -f4 /proc/self/stat); fi"
  }
}`

// TestKillDuringBurst changes 200 leases in a burst while node 1 is
// killed with SIGKILL at five points: twice by its own hook between the
// hook's work and the journal write (once after an Add, once after a
// Remove), three times by the test in mid-burst. After each kill flexhook
// starts again; in the end the node's routes are exactly the store's
// leases and nothing is failing.
func TestKillDuringBurst(t *testing.T) {
	bin := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 1)
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(crashConfig), 0o600))
	args := append([]string{"--config", cfg, "--log-level", "debug"}, resyncArgs(ctx, bin)...) // debug: a "hook applied" line per hook
	require.NoError(t, lab.StartNode(ctx, 1, args...))

	dir := filepath.Join(lab.StoreDir(), "subnets")
	subnet := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(100 + i), 0}), 24)
	}
	write := func(i int, ip byte) {
		writeLease(t, lab, subnet(i).String(), netip.AddrFrom4([4]byte{192, 0, 2, ip}).String(), "")
	}
	remove := func(i int) {
		require.NoError(t, os.Remove(filepath.Join(dir, leases.SubnetKey(subnet(i), netip.Prefix{}))))
	}
	crashAt := func(p netip.Prefix) {
		require.NoError(t, os.WriteFile(filepath.Join(lab.StateDir(1), "crash-at"), []byte(p.String()+"\n"), 0o600))
	}
	// revive starts the node again once it is dead (killed by its hook or
	// by the test).
	revive := func(why string) {
		t.Helper()
		code, err := lab.ExitCode(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, -1, code, "%s: killed by a signal", why)
		t.Logf("node 1 killed (%s); starting it again", why)
		require.NoError(t, lab.StartNode(ctx, 1, args...))
	}
	applied := func() int { return strings.Count(lab.Logs(1), `msg="hook applied"`) }

	// The burst: 120 new leases, then 40 removed and 40 moved to another
	// PublicIP, 200 changes in all.
	crashAt(subnet(30)) // 1: after an Add, before its journal write
	for i := range 120 {
		write(i, byte(100+i%100))
	}
	revive("by its SubnetAdd of " + subnet(30).String())
	eventuallyWithin(t, ctx, bulkTimeout, "some Adds after the restart", func() error {
		if applied() < 60 {
			return fmt.Errorf("%d hooks applied", applied())
		}
		return nil
	})
	require.NoError(t, lab.KillNode(ctx, 1)) // 2: mid-burst
	require.NoError(t, lab.StartNode(ctx, 1, args...))

	crashAt(subnet(5)) // 3: after a Remove, before its journal write
	for i := range 40 {
		remove(i)
	}
	for i := 40; i < 80; i++ {
		write(i, byte(200+i%50))
	}
	revive("by its SubnetRemove of " + subnet(5).String())
	before := applied()
	eventuallyWithin(t, ctx, bulkTimeout, "some hooks after the restart", func() error {
		if applied() < before+20 {
			return fmt.Errorf("%d hooks applied", applied()-before)
		}
		return nil
	})
	require.NoError(t, lab.KillNode(ctx, 1)) // 4
	require.NoError(t, lab.StartNode(ctx, 1, args...))
	require.NoError(t, lab.KillNode(ctx, 1)) // 5: right after the start
	require.NoError(t, lab.StartNode(ctx, 1, args...))

	// The kernel's routes equal the store's leases.
	ls, err := os.ReadDir(dir)
	require.NoError(t, err)
	want := map[string]string{}
	for i := 40; i < 120; i++ {
		ip := 100 + i%100
		if i < 80 {
			ip = 200 + i%50
		}
		want[subnet(i).String()] = fmt.Sprintf("192.0.2.%d", ip)
	}
	require.Len(t, ls, len(want)+1, "the store: the 80 leases left and node 1's own")
	eventuallyWithin(t, ctx, bulkTimeout, "node 1's routes are the store's leases", func() error {
		rs, err := lab.Routes(ctx, 1)
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, r := range rs {
			if strings.HasPrefix(r.Dst, "10.50.") && r.Gateway != "" {
				got[r.Dst] = r.Gateway
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("%d routes, want %d", len(got), len(want))
		}
		for d, gw := range want {
			if got[d] != gw {
				return fmt.Errorf("route %s via %q, want via %s", d, got[d], gw)
			}
		}
		return nil
	})
	eventuallyWithin(t, ctx, bulkTimeout, "status: nothing failing, all applied", func() error {
		st, err := runner.ReadStatus(lab.StateDir(1))
		if err != nil {
			return err
		}
		if len(st.Failing) > 0 || len(st.Applied) != len(want) {
			return fmt.Errorf("%d applied, failing %+v", len(st.Applied), st.Failing)
		}
		return nil
	})
	require.NoError(t, lab.StopNode(ctx, 1))
	require.NoError(t, lab.Close())
}

// TestStopDuringPreStartup sends SIGTERM while PreStartupCommand sleeps
// after making its device, in a real network namespace. With
// --shutdown-on-stop ShutdownCommand runs all the same and the device is
// gone; by default a stop is a restart, and the device stays for the next
// start (a rolling update during a slow start-up keeps the data path).
func TestStopDuringPreStartup(t *testing.T) {
	bin := requireLab(t)
	for _, leave := range []bool{true, false} {
		t.Run(fmt.Sprintf("shutdown-on-stop=%v", leave), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			lab := newLab(t, ctx, bin, 1)
			cfg := filepath.Join(t.TempDir(), "net-conf.json")
			require.NoError(t, os.WriteFile(cfg, []byte(`{"Network": "10.50.0.0/16", "Backend": {"Type": "extension",
		"PreStartupCommand": "ip link add fh-pre0 type bridge && sleep 60",
		"ShutdownCommand": "ip link del fh-pre0"}}`), 0o600))
			// Not lab.StartNode: it waits for a lease, which PreStartup holds up.
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Netns(1), bin, "run", "--config", cfg,
				"--store", lab.StoreDir(), "--public-ip", lab.Underlay(1).String(), "--state-dir", lab.StateDir(1),
				"--subnet-file", filepath.Join(t.TempDir(), "subnet.env"), fmt.Sprintf("--shutdown-on-stop=%v", leave))
			var out testutil.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			eventually(t, ctx, "PreStartupCommand made its device", func() error {
				ok, err := lab.HasLink(ctx, 1, "fh-pre0")
				if err == nil && !ok {
					err = fmt.Errorf("no fh-pre0 yet")
				}
				return err
			})
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			require.NoError(t, cmd.Wait(), "a stop during start-up is a clean exit:\n%s", out.String())
			ok, err := lab.HasLink(ctx, 1, "fh-pre0")
			require.NoError(t, err)
			require.Equal(t, !leave, ok, "device fh-pre0 there after the stop:\n%s", out.String())
			require.Contains(t, out.String(), "stopped during PreStartupCommand")
			if !leave {
				_, _ = lab.Exec(ctx, 1, "ip", "link", "del", "fh-pre0")
			}
			require.NoError(t, lab.Close())
		})
	}
}
