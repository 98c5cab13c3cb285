package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// fakeMasq writes its calls into the hooks' events file, so their order
// against the hooks' is the file's.
type fakeMasq struct {
	events string
	fail   error
}

func (m fakeMasq) note(line string) error {
	f, err := os.OpenFile(m.events, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

func (m fakeMasq) Ensure(ctx context.Context, cfg *hooks.Config, own leases.Lease) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("no deadline")
	}
	if err := m.note("masq ensure " + cfg.Network.String() + " " + own.Subnet.String()); err != nil {
		return err
	}
	return m.fail
}

func (m fakeMasq) Remove(context.Context) error { return m.note("masq remove") }

// TestIPMasq: the rules go in after PostStartupCommand, before subnet.env
// (which says FLANNEL_IPMASQ=true), at every start; a restart keeps them
// and leaving the cluster removes them after ShutdownCommand.
func TestIPMasq(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	fakePeer(s, "10.50.2.0/24", "192.0.2.2", "a")
	dir := t.TempDir()
	env := filepath.Join(t.TempDir(), "subnet.env")
	m := fakeMasq{events: filepath.Join(dir, "events")}
	opts := []runner.Option{runner.KeepOnStop(true), runner.IPMasq(m), runner.SubnetFile(env)}

	nd := start(t, cfg, s, dir, opts...)
	own := nd.lease()
	nd.waitEvent("add 10.50.2.0/24 192.0.2.2 a")
	data, err := os.ReadFile(env)
	require.NoError(t, err)
	assert.Contains(t, string(data), "FLANNEL_IPMASQ=true\n")
	require.NoError(t, nd.stop())
	ensure := "masq ensure 10.50.0.0/16 " + own.Subnet.String()
	evs := nd.events()
	require.GreaterOrEqual(t, len(evs), 3)
	assert.Regexp(t, `^post `, evs[1])
	assert.Equal(t, ensure, evs[2], "Ensure right after PostStartupCommand")
	assert.NotContains(t, evs, "masq remove", "a restart keeps the rules")

	nd = start(t, cfg, s, dir, opts...)
	nd.lease()
	nd.eng.Leave()
	require.NoError(t, nd.wait())
	evs = nd.events()
	n := 0
	for _, e := range evs {
		if e == ensure {
			n++
		}
	}
	assert.Equal(t, 2, n, "Ensure at each start: %q", evs)
	require.GreaterOrEqual(t, len(evs), 2)
	assert.Equal(t, []string{"shutdown " + own.Subnet.String() + " " + ownIP.String(), "masq remove"}, evs[len(evs)-2:])
}

// TestIPMasqFailureFailsStart: rules that cannot be written fail the
// start as a failed PostStartupCommand does: ShutdownCommand runs, the
// rules are removed, and Run returns the error; subnet.env is not written.
func TestIPMasqFailureFailsStart(t *testing.T) {
	cfg := config(t, recorder)
	dir := t.TempDir()
	env := filepath.Join(t.TempDir(), "subnet.env")
	m := fakeMasq{events: filepath.Join(dir, "events"), fail: errors.New("nft: no such file")}
	nd := start(t, cfg, leasestest.New(), dir, runner.IPMasq(m), runner.SubnetFile(env))
	err := nd.wait()
	require.Error(t, err)
	assert.ErrorContains(t, err, "nft: no such file")
	evs := nd.events()
	require.GreaterOrEqual(t, len(evs), 2)
	assert.Regexp(t, `^shutdown `, evs[len(evs)-2])
	assert.Equal(t, "masq remove", evs[len(evs)-1])
	_, err = os.Stat(env)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// Without IPMasq, subnet.env says FLANNEL_IPMASQ=false (flannel's CNI
// plugin then masquerades with the bridge plugin).
func TestNoIPMasq(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(t.TempDir(), "subnet.env")
	nd := start(t, config(t, recorder), leasestest.New(), dir, runner.SubnetFile(env))
	nd.lease()
	require.Eventually(t, func() bool { _, err := os.Stat(env); return err == nil }, waitFor, tick)
	require.NoError(t, nd.stop())
	data, err := os.ReadFile(env)
	require.NoError(t, err)
	assert.Contains(t, string(data), "FLANNEL_IPMASQ=false\n")
}
