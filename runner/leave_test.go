package runner_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// With KeepOnStop a stop is a restart: no ShutdownCommand, no Remove; the
// journal keeps the applied leases, and the next start adds them again.
func TestKeepOnStop(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
	dir := t.TempDir()
	nd := start(t, cfg, s, dir, runner.KeepOnStop(true))
	nd.lease()
	nd.waitEvent("add 10.50.2.0/24 192.0.2.2 a")
	require.NoError(t, nd.stop())
	for _, e := range nd.events() {
		assert.NotRegexp(t, `^(shutdown|remove) `, e, "a restart leaves the kernel as it is")
	}
	data, err := os.ReadFile(filepath.Join(dir, runner.JournalFile))
	require.NoError(t, err)
	assert.Contains(t, string(data), "10.50.2.0/24", "the journal still knows the applied lease")
	ls, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, ls, 2, "the own lease stays in the store")
}

// Leave leaves nothing behind: every applied remote lease is removed,
// ShutdownCommand runs last, the own lease is deleted from the store, and
// Run returns nil.
func TestLeave(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
	fakePeer(s, "10.50.3.0/24", "192.0.2.3", "b")
	dir := t.TempDir()
	nd := start(t, cfg, s, dir, runner.KeepOnStop(true))
	own := nd.lease()
	nd.waitEvent("add 10.50.3.0/24 192.0.2.3 b")
	nd.eng.Leave()
	require.NoError(t, nd.wait())
	evs := nd.events()
	require.GreaterOrEqual(t, len(evs), 3)
	assert.Contains(t, evs, "remove 10.50.2.0/24 192.0.2.2")
	assert.Contains(t, evs, "remove 10.50.3.0/24 192.0.2.3")
	assert.Equal(t, "shutdown "+own.Subnet.String()+" "+ownIP.String(), evs[len(evs)-1], "ShutdownCommand last")
	ls, err := s.List(t.Context())
	require.NoError(t, err)
	for _, l := range ls {
		assert.NotEqual(t, own.Subnet, l.Subnet, "the own lease is gone from the store")
	}
	data, err := os.ReadFile(filepath.Join(dir, runner.JournalFile))
	require.NoError(t, err)
	assert.NotContains(t, string(data), "10.50.2.0/24", "nothing left to remove")
}
