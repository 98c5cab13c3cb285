package runner

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// While the journal refuses intent, the next turn waits for the
// intent's backoff, even when a held-back Add is already due by the
// queue: no busy loop of failed synced appends.
func TestIntentFailureBacksOff(t *testing.T) {
	fs := newMemFS()
	j, err := openJournal(fs, slog.New(slog.DiscardHandler), time.Now)
	require.NoError(t, err)
	failS := true
	run := func(_ context.Context, k hooks.Kind, l leases.Lease) error {
		if failS && l.Subnet == netip.MustParsePrefix("10.50.2.0/24") {
			return errors.New("exit status 1")
		}
		return nil
	}
	c := newCore(run, j, retry.Backoff{Initial: time.Second, Max: time.Minute}, 1, slog.New(slog.DiscardHandler), nil)
	s := lease("10.50.2.0/24 192.0.2.2 a")
	now := time.Unix(1_800_000_000, 0)
	c.snapshot(simPolicy, []leases.Lease{simOwn, s}, now)
	res := c.step(context.Background(), now)
	require.Equal(t, 1, res.failed)

	// The disk fills; a new lease comes; S's retry is due.
	fs.full, failS = true, false
	c.snapshot(simPolicy, []leases.Lease{simOwn, s, lease("10.50.3.0/24 192.0.2.3 b")}, now)
	now = now.Add(2 * time.Second)
	res = c.step(context.Background(), now)
	require.Error(t, c.intent.err)
	assert.Zero(t, res.hooks, "no Add runs without intent")
	assert.True(t, res.retryAt.After(now), "the next turn waits: %v after %v", res.retryAt, now)
	assert.Equal(t, c.intent.next, res.retryAt)

	fs.full = false
	res = c.step(context.Background(), res.retryAt)
	assert.Equal(t, 2, res.hooks)
	assert.NoError(t, c.intent.err)
	assert.True(t, c.inSync())
}
