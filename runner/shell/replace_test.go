package shell_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// fakeIPRoute2 is an ip and bridge stand-in: it records its argv and, when
// its verb is add and $ADD_STDERR is set, prints it and exits 2.
const fakeIPRoute2 = `#!/bin/sh
echo "${0##*/} $*" >> "$RECORD"
case " $* " in
*" add "*) if [ -n "$ADD_STDERR" ]; then echo "$ADD_STDERR" >&2; exit 2; fi ;;
esac
exit 0
`

// TestReplaceExistingMiddleware runs the middleware through the real
// interpreter with ip and bridge stand-ins that fail add as iproute2 does.
func TestReplaceExistingMiddleware(t *testing.T) {
	const (
		exists   = "RTNETLINK answers: File exists"
		assigned = "Error: ipv4: Address already assigned."
		other    = "RTNETLINK answers: Network is unreachable"
		route    = "ip route add 10.50.2.0/24 via 10.50.2.0 dev x onlink"
		replace  = "ip route replace 10.50.2.0/24 via 10.50.2.0 dev x onlink"
		addr     = "ip addr add 10.50.1.0/32 dev x"
		fdb      = "bridge fdb add 02:00:00:00:00:01 dev x self dst 192.0.2.2"
		link     = "ip link add x type vxlan id 1"
	)
	tests := []struct {
		name   string
		src    string
		fail   string // what add fails with; "" for success
		opts   []shell.Option
		calls  []string
		status int
		stderr string
		logged string // the object of the logged replace; "" for none
	}{
		{"route exists", route + " && echo next", exists, nil,
			[]string{route, replace}, 0, "", "route 10.50.2.0/24"},
		{"addr assigned", addr, assigned, nil,
			[]string{addr, "ip addr replace 10.50.1.0/32 dev x"}, 0, "", "addr 10.50.1.0/32 dev x"},
		{"fdb exists", fdb, exists, nil,
			[]string{fdb, "bridge fdb replace 02:00:00:00:00:01 dev x self dst 192.0.2.2"}, 0, "", "fdb 02:00:00:00:00:01 dev x"},
		{"add succeeds", route, "", nil, []string{route}, 0, "", ""},
		{"other error", route, other, nil, []string{route}, 2, other + "\n", ""},
		{"not an add", link, exists, nil, []string{link}, 2, exists + "\n", ""},
		{"off", route, exists, []shell.Option{shell.ReplaceExisting(false)},
			[]string{route}, 2, exists + "\n", ""},
		{"dry-run", route, exists, []shell.Option{shell.DryRun(true)}, nil, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := t.TempDir()
			for _, name := range []string{"ip", "bridge"} {
				require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(fakeIPRoute2), 0o700))
			}
			record := filepath.Join(t.TempDir(), "calls")
			opts := append([]shell.Option{shell.Environ([]string{
				"PATH=" + bin + ":/usr/bin:/bin", "RECORD=" + record, "ADD_STDERR=" + tt.fail,
			})}, tt.opts...)
			f := newFixture(t, opts...)
			res, err := f.sh.Run(t.Context(), shell.Request{
				Hook:   parse(t, hooks.SubnetAdd, tt.src),
				Subnet: "10.50.2.0/24",
			})
			if tt.status != 0 {
				var he *shell.HookError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, tt.status, he.Status)
			} else {
				require.NoError(t, err)
			}
			calls, readErr := os.ReadFile(record)
			if tt.calls == nil {
				assert.ErrorIs(t, readErr, os.ErrNotExist, "dry-run runs nothing")
			} else {
				require.NoError(t, readErr)
				assert.Equal(t, strings.Join(tt.calls, "\n")+"\n", string(calls))
			}
			assert.Equal(t, tt.stderr, res.Stderr, "a handled add hides its stderr")
			logged := strings.Count(f.log.String(), `msg="add: object exists; running replace"`)
			if tt.logged == "" {
				assert.Zero(t, logged, "log: %s", f.log.String())
				assert.Contains(t, f.trace.String(), "+ "+strings.Fields(tt.src)[0]+" ")
				assert.NotContains(t, f.trace.String(), " replace ")
			} else {
				assert.Equal(t, 1, logged, "log: %s", f.log.String())
				assert.Contains(t, f.log.String(), `object="`+tt.logged+`"`)
				assert.Contains(t, f.log.String(), "subnet=10.50.2.0/24")
				assert.Contains(t, f.log.String(), "hook=SubnetAddCommand")
				want := "+ " + tt.calls[0] + "\n# exit status 2\n+ " + tt.calls[1] + "\n"
				assert.Contains(t, f.trace.String(), want, "trace: the failed add, then the replace")
			}
		})
	}
}
