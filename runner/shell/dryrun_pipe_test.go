package shell_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// In dry-run a skipped command consumes what is piped into it, as the real
// one would, so pipeline stages are traced in their order every time.
func TestDryRunPipelineTracedInOrder(t *testing.T) {
	want := "# PreStartupCommand\n+ wg genkey\n+ tee privatekey\n+ wg pubkey\n"
	for i := range 20 {
		f := newFixture(t, shell.DryRun(true))
		_, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup, `wg genkey | tee privatekey | wg pubkey`)})
		require.NoError(t, err)
		require.Equal(t, want, f.trace.String(), "run %d", i)
	}
}

// The hook's own stdin is not consumed by a skipped command: a later
// `read` still gets the peer's data.
func TestDryRunKeepsHookStdin(t *testing.T) {
	f := newFixture(t, shell.DryRun(true))
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook:  parse(t, hooks.SubnetAdd, `ip link show; read VTEP; echo "vtep=$VTEP"`),
		Stdin: "b2:d1:fc:40:8d:2f\n",
	})
	require.NoError(t, err)
	assert.Equal(t, "vtep=b2:d1:fc:40:8d:2f\n", res.Stdout)
}

// An endless writer piped into a skipped command does not hold the hook:
// the drain is bounded and the writer then gets EPIPE.
func TestDryRunDrainIsBounded(t *testing.T) {
	f := newFixture(t, shell.DryRun(true), shell.Timeout(time.Minute))
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook: parse(t, hooks.SubnetAdd, `seq 1 1000000000 | ip link show; echo done`),
	})
	require.NoError(t, err, "a hang here ends in the timeout error")
	assert.Equal(t, "done\n", res.Stdout)
	assert.True(t, strings.Contains(f.trace.String(), "+ ip link show\n"))
}
