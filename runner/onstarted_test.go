package runner_test

import (
	"context"
	"errors"
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
