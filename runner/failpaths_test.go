package runner_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// fakePeer puts a remote lease into the in-memory store.
func fakePeer(s *leasestest.Store, subnet, ip, data string) {
	s.Put(leases.Lease{Subnet: netip.MustParsePrefix(subnet),
		Attrs: leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType, BackendData: data}})
}

func logger(b *testutil.SyncBuffer) runner.Option {
	return runner.Logger(slog.New(slog.NewTextHandler(b, nil)))
}

func waitLog(t *testing.T, b *testutil.SyncBuffer, want string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Count(b.String(), want) >= n },
		waitFor, tick, "%d× %q not logged:\n%s", n, want, b.String())
}

// Acquire fails twice, then succeeds: the engine retries with backoff.
func TestFailAcquireRetried(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	s.Fail(leasestest.OpAcquire, 2, errors.New("etcd unavailable"))
	var logs testutil.SyncBuffer
	n := start(t, cfg, s, t.TempDir(), logger(&logs))
	n.lease()
	assert.Equal(t, 3, s.Calls(leasestest.OpAcquire))
	assert.Equal(t, 2, strings.Count(logs.String(), "acquire lease failed; retrying"))
	assert.Contains(t, logs.String(), "etcd unavailable")
}

// A broken watch is restarted, and what changed meanwhile is applied.
func TestFailWatchRestarted(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	var logs testutil.SyncBuffer
	n := start(t, cfg, s, t.TempDir(), logger(&logs))
	n.lease()
	fakePeer(s, "10.50.7.0/24", "192.0.2.7", "a")
	n.waitEvent("add 10.50.7.0/24 192.0.2.7 a")
	s.Fail(leasestest.OpWatch, 1, errors.New("compacted")) // the first restart fails too
	s.BreakWatch()
	fakePeer(s, "10.50.8.0/24", "192.0.2.8", "b")
	n.waitEvent("add 10.50.8.0/24 192.0.2.8 b")
	waitLog(t, &logs, "lease watch failed; restarting", 2)
	assert.GreaterOrEqual(t, s.Calls(leasestest.OpWatch), 3)
}

// Renewals fail, are logged and retried, and recover.
func TestFailRenewRecovers(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	s.TTL = 2 * time.Second
	var logs testutil.SyncBuffer
	n := start(t, cfg, s, t.TempDir(), logger(&logs), runner.RenewMargin(1900*time.Millisecond))
	first := n.lease()
	s.Fail(leasestest.OpRenew, 3, errors.New("timeout"))
	waitLog(t, &logs, "renew lease failed; retrying", 3)
	require.Eventually(t, func() bool {
		l, _ := n.eng.Lease()
		return l.Expiration.After(first.Expiration)
	}, waitFor, tick, "the lease was never renewed after the failures")
	assert.Contains(t, logs.String(), "timeout")
}

// The own lease deleted by someone else: ShutdownCommand runs and Run
// fails with ErrLeaseGone.
func TestFailOwnLeaseLost(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	n := start(t, cfg, s, t.TempDir())
	own := n.lease()
	n.waitEvent(fmt.Sprintf("post %s 192.0.2.1 stdin=[]", own.Subnet))
	require.NoError(t, s.Remove(t.Context(), own.Subnet))
	err := n.wait()
	require.ErrorIs(t, err, leases.ErrLeaseGone)
	n.waitEvent(fmt.Sprintf("shutdown %s 192.0.2.1", own.Subnet))
}

// A slow store does not hold up the hooks: a Renew that takes an hour
// times out at the store timeout while Adds go on.
func TestFailSlowStore(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	s.TTL = 2 * time.Second
	var logs testutil.SyncBuffer
	n := start(t, cfg, s, t.TempDir(), logger(&logs), runner.RenewMargin(1900*time.Millisecond),
		runner.StoreTimeout(500*time.Millisecond))
	n.lease()
	s.Slow(leasestest.OpRenew, time.Hour)
	waitLog(t, &logs, "renew lease failed; retrying", 1)
	fakePeer(s, "10.50.9.0/24", "192.0.2.9", "c")
	n.waitEvent("add 10.50.9.0/24 192.0.2.9 c")
	assert.Contains(t, logs.String(), "context deadline exceeded")
	s.Slow(leasestest.OpRenew, 0)
}
