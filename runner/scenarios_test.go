package runner_test

// The engine-core scenarios of the review that broke main, each run
// through the real engine, shell and journal files (the simulation in
// sim_test.go covers every interleaving against a fake kernel).

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// crashCopy keeps the journal's files as a kill -9 would leave them now.
func crashCopy(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{runner.JournalFile, runner.JournalLogFile} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			out[name] = b
		}
	}
	return out
}

func restoreCrash(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for _, name := range []string{runner.JournalFile, runner.JournalLogFile} {
		os.Remove(filepath.Join(dir, name))
		if b, ok := files[name]; ok {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600))
		}
	}
}

// A lease moves (10.50.7.0/24 from .2 to .3), the daemon is killed before
// the journal's rewrite, and the lease is deleted while it is down: the
// restart removes the route via .3, the version it added. (main ran the
// Remove with .2, which "converged" as absent, and the route via .3
// stayed for good.)
func TestScenarioMovedLeaseKilledThenDeleted(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	dir := t.TempDir()
	fakePeer(s, "10.50.7.0/24", "192.0.2.2", "a")
	n := start(t, cfg, s, dir)
	n.waitEvent("add 10.50.7.0/24 192.0.2.2 a")
	fakePeer(s, "10.50.7.0/24", "192.0.2.3", "a")
	n.waitEvent("add 10.50.7.0/24 192.0.2.3 a")
	killed := crashCopy(t, dir)
	require.NoError(t, n.stop())
	restoreCrash(t, dir, killed)

	require.NoError(t, s.Remove(t.Context(), netip.MustParsePrefix("10.50.7.0/24")))
	n2 := start(t, cfg, s, dir)
	n2.waitEvent("remove 10.50.7.0/24 192.0.2.3")
}

// A torn line in applied.log (power loss mid-append) with applied.json
// absent: the node starts, says so, and keeps working; so does the start
// after it. (main refused to start: "journal log ...: line 1: invalid
// character".)
func TestScenarioTornJournalLog(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, runner.JournalLogFile), []byte(`{"Op":"add","Subnet":"10.50.9.0/24","Pub`), 0o600))
	fakePeer(s, "10.50.7.0/24", "192.0.2.2", "a")
	n := start(t, cfg, s, dir)
	n.waitEvent("add 10.50.7.0/24 192.0.2.2 a")
	require.Eventually(t, func() bool {
		st, err := runner.ReadStatus(dir)
		return err == nil && st.Journal != ""
	}, waitFor, tick)
	st, err := runner.ReadStatus(dir)
	require.NoError(t, err)
	assert.Contains(t, st.Journal, "cut a torn tail")
	killed := crashCopy(t, dir) // the next append must not land after the torn bytes
	require.NoError(t, n.stop())
	restoreCrash(t, dir, killed)

	require.NoError(t, s.Remove(t.Context(), netip.MustParsePrefix("10.50.7.0/24")))
	n2 := start(t, cfg, s, dir)
	n2.waitEvent("remove 10.50.7.0/24 192.0.2.2")
}

// A lease changes, its new Add fails, then it is deleted: the new
// version's Remove runs (its Add may have got half-way). (main ran none:
// status showed nothing applied and nothing failing.)
func TestScenarioChangedAddFailsThenDeleted(t *testing.T) {
	cfg := config(t, with(recorder, hooks.SubnetAdd, `read D; echo "add $SUBNET $PUBLIC_IP $D" >> events; test "$D" != bad`))
	s := leasestest.New()
	n := start(t, cfg, s, t.TempDir())
	fakePeer(s, "10.50.7.0/24", "192.0.2.2", "good")
	n.waitEvent("add 10.50.7.0/24 192.0.2.2 good")
	fakePeer(s, "10.50.7.0/24", "192.0.2.2", "bad")
	n.waitEvent("add 10.50.7.0/24 192.0.2.2 bad")
	require.NoError(t, s.Remove(t.Context(), netip.MustParsePrefix("10.50.7.0/24")))
	ev := waitEvents(t, n, 2, "remove 10.50.7.0/24 192.0.2.2")
	assert.Equal(t, "remove 10.50.7.0/24 192.0.2.2", ev[len(ev)-1])
	stdin, err := os.ReadFile(filepath.Join(n.dir, "stdin"))
	require.NoError(t, err)
	assert.Equal(t, "good\nbad\n", string(stdin), "the old version's Remove, then the failed new one's")
}

// waitEvents waits until want appears n times in the events.
func waitEvents(t *testing.T, n *node, times int, want string) []string {
	t.Helper()
	require.Eventually(t, func() bool {
		c := 0
		for _, e := range n.events() {
			if e == want {
				c++
			}
		}
		return c >= times
	}, waitFor, tick, "%q not %d times", want, times)
	return n.events()
}

// A key that moved from 10.50.9.0/24 to 10.50.3.0/24 while the daemon was
// down: the old Remove runs before the new Add, also with --parallel, so
// the Remove (wg set ... peer KEY remove) cannot undo the Add. (main ran
// Adds before Removes across subnets, in address order.)
func TestScenarioKeyMovedWhileDown(t *testing.T) {
	for _, parallel := range []int{1, 4} {
		t.Run(fmt.Sprint("parallel ", parallel), func(t *testing.T) {
			cfg := config(t, recorder)
			s := leasestest.New()
			dir := t.TempDir()
			fakePeer(s, "10.50.9.0/24", "192.0.2.9", "KEY")
			fakePeer(s, "10.50.4.0/24", "192.0.2.4", "other")
			n := start(t, cfg, s, dir, runner.Parallel(parallel))
			n.waitEvent("add 10.50.9.0/24 192.0.2.9 KEY")
			n.waitEvent("add 10.50.4.0/24 192.0.2.4 other")
			require.NoError(t, n.stop())

			require.NoError(t, s.Remove(t.Context(), netip.MustParsePrefix("10.50.9.0/24")))
			fakePeer(s, "10.50.3.0/24", "192.0.2.9", "KEY")
			require.NoError(t, os.Remove(filepath.Join(dir, "events")))
			n2 := start(t, cfg, s, dir, runner.Parallel(parallel))
			n2.waitEvent("add 10.50.3.0/24 192.0.2.9 KEY")
			ev := n2.events()
			rm := slices.Index(ev, "remove 10.50.9.0/24 192.0.2.9")
			require.GreaterOrEqual(t, rm, 0, "%v", ev)
			for i, e := range ev {
				if len(e) > 3 && e[:3] == "add" {
					assert.Greater(t, i, rm, "an Add ran before the batch's Remove: %v", ev)
				}
			}
		})
	}
}

// /healthz stays 200 while a batch of hooks runs longer than its bound,
// each hook inside its timeout: a hook starting or ending is progress.
// (main turned 503 once the batch outlasted the bound, and the DaemonSet's
// liveness probe restarted the pod mid-batch.)
func TestScenarioHealthyDuringLongBatch(t *testing.T) {
	const bound = 600 * time.Millisecond
	m := metrics.New(bound, "test", "")
	cfg := config(t, with(recorder, hooks.SubnetAdd, `read D; sleep 0.2; echo "add $SUBNET $PUBLIC_IP $D" >> events`))
	s := leasestest.New()
	for i := range 8 { // 8 × 0.2 s: a batch of 1.6 s, well past the bound
		fakePeer(s, fmt.Sprintf("10.50.%d.0/24", 10+i), fmt.Sprintf("192.0.2.%d", 10+i), "d")
	}
	n := start(t, cfg, s, t.TempDir(), runner.Metrics(m))
	n.waitEvent(fmt.Sprintf("post %s 192.0.2.1 stdin=[]", n.lease().Subnet))
	var first, last time.Time
	require.Eventually(t, func() bool {
		now := time.Now()
		ok, why := m.Healthy(now)
		require.True(t, ok, "unhealthy mid-batch: %s", why)
		if first.IsZero() {
			first = now
		}
		last = now
		return len(n.events()) >= 1+1+8 // pre, post, 8 adds
	}, waitFor, 20*time.Millisecond)
	assert.Greater(t, last.Sub(first), bound, "the probe watched a batch longer than the bound")
}
