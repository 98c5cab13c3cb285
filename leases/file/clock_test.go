package file_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

// fakeClock is a wall clock and a monotonic clock that tests move apart.
type fakeClock struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func (c *fakeClock) Wall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// pass moves both clocks: time goes by.
func (c *fakeClock) pass(d time.Duration) {
	c.mu.Lock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
	c.mu.Unlock()
}

// step moves the wall clock alone (NTP, an operator).
func (c *fakeClock) step(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// newClock returns a clock whose monotonic part starts at zero for each
// store opened with it (a fresh process).
func (c *fakeClock) forProcess() file.Option {
	base := c.Mono()
	return file.Clock(c.Wall, func() time.Duration { return c.Mono() - base })
}

func subnetsOf(t *testing.T, s *file.Store) []string {
	t.Helper()
	ls, err := s.List(t.Context())
	require.NoError(t, err)
	var out []string
	for _, l := range ls {
		if l.Invalid == "" {
			out = append(out, l.Subnet.String())
		}
	}
	return out
}

// A forward step of the wall clock expires nothing for a running store,
// and a store started after it deletes no lease that expired within the
// grace (its node may be about to renew).
func TestWallClockStep(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{wall: time.Now()}
	a, logs := open(t, dir, clk.forProcess())
	ctx := t.Context()
	peer, err := a.Acquire(ctx, rangeOf(2), attrs("192.0.2.2", "p"))
	require.NoError(t, err)

	clk.pass(leases.DefaultTTL - 30*time.Minute) // 30 minutes left, the renewal is due soon
	clk.step(2 * time.Hour)
	assert.Equal(t, []string{peer.Subnet.String()}, subnetsOf(t, a), "a +2h step expires nothing")
	assert.Contains(t, logs.String(), "the wall clock stepped")

	// A node starting after the step sees the lease 1h30m expired: gone
	// for its hooks, but its file and its subnet stay within the grace.
	b, _ := open(t, dir, clk.forProcess())
	assert.Empty(t, subnetsOf(t, b))
	mine, err := b.Acquire(ctx, rangeOf(2), attrs("192.0.2.3", "b"))
	require.NoError(t, err)
	assert.NotEqual(t, peer.Subnet, mine.Subnet, "the recently expired lease keeps its subnet")
	assert.FileExists(t, leasePath(dir, peer), "a lease expired within the grace is not deleted")

	// Its node renews (in its own frame): the lease is back for everyone.
	_, err = a.Renew(ctx, peer)
	require.NoError(t, err)
	assert.Contains(t, subnetsOf(t, b), peer.Subnet.String())

	// Past the grace an expired lease is deleted by the next Acquire.
	clk.pass(leases.DefaultTTL + file.DefaultExpiryGrace + time.Minute)
	c, _ := open(t, dir, clk.forProcess())
	got, err := c.Acquire(ctx, rangeOf(9), attrs("192.0.2.4", "c"))
	require.NoError(t, err)
	if got.Subnet == peer.Subnet { // the freed subnet may be drawn again
		ls, err := c.List(ctx)
		require.NoError(t, err)
		for _, l := range ls {
			assert.NotEqual(t, peer.Attrs.PublicIP, l.Attrs.PublicIP, "the expired lease is gone")
		}
		return
	}
	assert.NoFileExists(t, leasePath(dir, peer))
}

// Within the grace an expired lease still yields its subnet when the
// range has no other.
func TestExpiryGraceYieldsWhenFull(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{wall: time.Now()}
	a, _ := open(t, dir, clk.forProcess())
	ctx := t.Context()
	old, err := a.Acquire(ctx, rangeOf(1), attrs("192.0.2.2", "p"))
	require.NoError(t, err)
	clk.pass(leases.DefaultTTL + time.Hour)
	b, _ := open(t, dir, clk.forProcess())
	l, err := b.Acquire(ctx, rangeOf(1), attrs("192.0.2.3", "b"))
	require.NoError(t, err)
	assert.Equal(t, old.Subnet, l.Subnet)
}

// An mtime far in the future (a writer's clock far off, or a hostile
// file) counts as one TTL from when the store first saw it.
func TestFarFutureMtimeIsCapped(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{wall: time.Now()}
	s, _ := open(t, dir, clk.forProcess())
	p := filepath.Join(dir, "subnets", "10.50.7.0-24")
	require.NoError(t, os.WriteFile(p, []byte(`{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"extension"}`), 0o600))
	far := clk.Wall().Add(100 * 24 * time.Hour)
	require.NoError(t, os.Chtimes(p, far, far))

	ls, err := s.List(t.Context())
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.WithinDuration(t, clk.Wall().Add(leases.DefaultTTL), ls[0].Expiration, time.Minute, "capped to a TTL")
	clk.pass(leases.DefaultTTL - time.Minute)
	assert.Equal(t, []string{"10.50.7.0/24"}, subnetsOf(t, s))
	clk.pass(2 * time.Minute)
	assert.Empty(t, subnetsOf(t, s), "it expires a TTL after it was first seen")

	// A rewrite (a new mtime) is a new lease.
	far = far.Add(time.Hour)
	require.NoError(t, os.Chtimes(p, far, far))
	assert.Equal(t, []string{"10.50.7.0/24"}, subnetsOf(t, s))
}
