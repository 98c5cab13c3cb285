package runner_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
	"github.com/flexhook/flexhook/runner/shell"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOnStarted: the function runs once, after PostStartupCommand, with
// the own lease and a deadline; its error is logged and the node runs on.
func TestOnStarted(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "ok", true: "error"}[fail], func(t *testing.T) {
			dir := t.TempDir()
			type call struct {
				lease       leases.Lease
				postRan     bool
				hasDeadline bool
			}
			calls := make(chan call, 4)
			fn := func(ctx context.Context, l leases.Lease) error {
				_, err := os.Stat(filepath.Join(dir, "post-ran"))
				_, dl := ctx.Deadline()
				calls <- call{l, err == nil, dl}
				if fail {
					return errors.New("node status not patched")
				}
				return nil
			}
			hs := with(with(recorder, hooks.PostStartup, `echo ran > post-ran`), hooks.SubnetAdd, `read D; echo "add $SUBNET $PUBLIC_IP $D" >> events`)
			s := leasestest.New()
			fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
			n := start(t, config(t, hs), s, dir, runner.OnStarted(fn))
			c := <-calls
			assert.True(t, c.postRan, "ran before PostStartupCommand")
			assert.True(t, c.hasDeadline, "no deadline")
			assert.Equal(t, n.lease().Subnet, c.lease.Subnet)
			n.waitEvent("add 10.50.2.0/24 192.0.2.2 a") // runs on either way
			require.NoError(t, n.stop())
			assert.Empty(t, calls, "called more than once")
		})
	}
	sh, err := shell.New(shell.Dir(t.TempDir()))
	require.NoError(t, err)
	_, err = runner.New(config(t, recorder), leasestest.New(), sh, runner.OnStarted(nil))
	if err == nil || !strings.Contains(err.Error(), "OnStarted") {
		t.Errorf("OnStarted(nil): %v", err)
	}
}

// TestPeekInDryRun: with Peek, a dry-run's own lease is what Peek says
// (a kube Node's pod CIDR), not a guess from the store's list, and
// nothing is acquired.
func TestPeekInDryRun(t *testing.T) {
	cfg := config(t, map[hooks.Kind]string{hooks.PostStartup: `ip addr add $SUBNET dev flannel0`})
	s := leasestest.New()
	fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
	want := netip.MustParsePrefix("10.50.77.0/24")
	peeked := 0
	peek := func(_ context.Context, r leases.Range, a leases.Attrs) (leases.Lease, error) {
		peeked++
		assert.Equal(t, cfg.Range, r)
		return leases.Lease{Subnet: want, Attrs: a}, nil
	}
	var tl traceLog
	sh, err := shell.New(shell.Dir(t.TempDir()), shell.DryRun(true), shell.Trace(&tl), shell.Logger(testLogger(t)))
	require.NoError(t, err)
	eng, err := runner.New(cfg, s, sh, runner.PublicIP(ownIP), runner.ReadOnly(true), runner.StateDir(filepath.Join(t.TempDir(), "state")),
		runner.Logger(testLogger(t)), runner.Peek(peek))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	require.Eventually(t, func() bool { return tl.has("PostStartupCommand ip addr add 10.50.77.0/24 dev flannel0") }, waitFor, tick)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, 1, peeked)
	ls, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, ls, 1, "a dry-run acquired a lease")
}
