package runner_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// TestBatchProgress: a running batch says how far it got, in the log and
// in status.json, before it ends. The fourth Add waits until status.json
// shows three done, so it fails (after 20 s) unless status.json is
// rewritten during the batch.
func TestBatchProgress(t *testing.T) {
	add := `read D; echo "$SUBNET" >> adds; n=$(wc -l < adds | tr -d ' ')
if [ "$n" = 4 ]; then
  i=0
  until grep -Eq '"Phase": "add"' status.json && grep -Eq '"Done": 3' status.json && grep -Eq '"Total": 4' status.json; do
    i=$((i+1)); if [ $i -gt 400 ]; then echo "status.json never showed 3 of 4 done" >&2; exit 1; fi
    sleep 0.05
  done
fi`
	hs := with(recorder, hooks.SubnetAdd, add)
	s := leasestest.New()
	for i, ip := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
		fakePeer(s, "10.50."+string(rune('2'+i))+".0/24", ip, "x")
	}
	var logs testutil.SyncBuffer
	n := start(t, config(t, hs), s, t.TempDir(), runner.ProgressInterval(0), logger(&logs))
	waitLog(t, &logs, "hooks batch done", 1)
	require.NoError(t, n.stop())
	for _, want := range []string{
		`msg="hooks batch in progress" phase=add done=1 total=4`,
		`msg="hooks batch in progress" phase=add done=3 total=4`,
		`msg="hooks batch in progress" phase=add done=4 total=4`,
		"failed=0",
	} {
		assert.Contains(t, logs.String(), want)
	}
	st, err := runner.ReadStatus(n.dir)
	require.NoError(t, err)
	assert.Nil(t, st.Batch, "status.json still shows a batch after it ended")
	assert.Len(t, st.Applied, 4)
}
