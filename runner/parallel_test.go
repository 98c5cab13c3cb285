package runner_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
)

// parallelHooks record when each Add and Remove starts and ends. The
// first Adds wait (bounded) until two are inside at once, which only
// concurrent hooks can do. They write with printf: the interpreter's echo
// writes the newline separately, so concurrent echos into one file can
// interleave (docs/speed.md: --parallel).
var parallelHooks = with(with(recorder, hooks.SubnetAdd, `read D
printf '%s\n' "start $SUBNET" >> events
touch "in.${SUBNET%%/*}"
i=0
while [ "$(ls in.* | wc -l)" -lt 2 ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
printf '%s\n' "end $SUBNET $D" >> events`), hooks.SubnetRemove, `printf '%s\n' "start $SUBNET" "remove $SUBNET" "end $SUBNET" >> events`)

// maxInFlight is the most hooks between their start and end lines at once.
func maxInFlight(events []string) int {
	in, most := 0, 0
	for _, e := range events {
		switch {
		case strings.HasPrefix(e, "start "):
			in++
			most = max(most, in)
		case strings.HasPrefix(e, "end "):
			in--
		}
	}
	return most
}

func TestParallelHooks(t *testing.T) {
	cfg := config(t, parallelHooks)
	s := leasestest.New()
	const n = 12
	for i := range n {
		// Each peer its own data: peers sharing BackendData would count as
		// one node, whose Remove of one lease makes the others Add again.
		fakePeer(s, fmt.Sprintf("10.50.%d.0/24", 10+i), fmt.Sprintf("192.0.2.%d", 10+i), fmt.Sprintf("a%d", i))
	}
	nd := start(t, cfg, s, t.TempDir(), runner.Parallel(2))
	nd.lease()
	for i := range n {
		nd.waitEvent(fmt.Sprintf("end 10.50.%d.0/24 a%d", 10+i, i))
	}
	first := nd.events()
	assert.Equal(t, 2, maxInFlight(first), "two subnets at once, never more:\n%s", strings.Join(first, "\n"))
	assert.True(t, strings.HasPrefix(first[0], "pre ") && strings.HasPrefix(first[1], "post "),
		"PreStartup and PostStartup run alone, before any subnet: %q", first[:2])

	// Changed leases: each subnet's Remove runs before its Add.
	for i := range n {
		fakePeer(s, fmt.Sprintf("10.50.%d.0/24", 10+i), fmt.Sprintf("192.0.2.%d", 10+i), fmt.Sprintf("b%d", i))
	}
	for i := range n {
		nd.waitEvent(fmt.Sprintf("end 10.50.%d.0/24 b%d", 10+i, i))
	}
	require.NoError(t, nd.stop())
	evs := nd.events()
	assert.LessOrEqual(t, maxInFlight(evs), 2)
	for i := range n {
		sn := fmt.Sprintf("10.50.%d.0/24", 10+i)
		var seq []string
		for _, e := range evs[len(first):] {
			if strings.HasSuffix(e, sn) || strings.Contains(e, sn+" ") {
				seq = append(seq, e)
			}
		}
		assert.Equal(t, []string{"start " + sn, "remove " + sn, "end " + sn, "start " + sn, "end " + sn + fmt.Sprintf(" b%d", i)}, seq, sn)
	}
	assert.True(t, strings.HasPrefix(evs[len(evs)-1], "shutdown "), "ShutdownCommand runs alone, last")
}

func TestParallelOption(t *testing.T) {
	for _, n := range []int{0, -1, runner.MaxParallel + 1} {
		_, err := runner.New(config(t, recorder), leasestest.New(), nil, runner.Parallel(n))
		require.Error(t, err, "Parallel(%d)", n)
	}
}
