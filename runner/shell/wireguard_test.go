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

func TestWireguardLinkName(t *testing.T) {
	tests := []struct {
		argv string
		name string // "" for no match
	}{
		{"ip link add flannel-wg type wireguard", "flannel-wg"},
		{"ip link add dev wg0 type wireguard", "wg0"},
		{"ip link add name wg0 type wireguard", "wg0"},
		{"/usr/sbin/ip link add wg0 type wireguard", "wg0"},
		{"ip l a wg0 type wireguard", "wg0"},
		{"ip li add wg0 type wireguard", "wg0"},
		{"ip link add wg0 type vxlan", ""},
		{"ip link add wg0 type wireguard extra", ""},
		{"ip link add wg0 mtu 1420 type wireguard", ""},
		{"ip -n ns link add wg0 type wireguard", ""},
		{"ip link set wg0 type wireguard", ""},
		{"ip link add -f type wireguard", ""},
		{"ip link add a/b type wireguard", ""},
		{"ip link add abcdefghijklmnop type wireguard", ""},
		{"ip link add dev type wireguard", ""},
		{"ipx link add wg0 type wireguard", ""},
		{"wg set wg0 listen-port 1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.argv, func(t *testing.T) {
			name, ok := shell.WireguardLinkName(strings.Fields(tt.argv))
			assert.Equal(t, tt.name != "", ok)
			assert.Equal(t, tt.name, name)
		})
	}
}

func TestParseWireguardMode(t *testing.T) {
	tests := []struct {
		in   string
		want shell.WireguardMode
		err  bool
	}{
		{"auto", shell.WireguardAuto, false},
		{"", shell.WireguardAuto, false},
		{"always", shell.WireguardAlways, false},
		{"never", shell.WireguardNever, false},
		{"yes", 0, true},
	}
	for _, tt := range tests {
		got, err := shell.ParseWireguardMode(tt.in)
		if tt.err {
			assert.ErrorContains(t, err, "wireguard-userspace")
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
		if tt.in != "" {
			assert.Equal(t, tt.in, got.String())
		}
	}
}

// TestWireguardModes runs the middleware through the real interpreter with
// ip and wireguard-go stand-ins (the test binary) that record their argv.
func TestWireguardModes(t *testing.T) {
	const src = `ip link add flannel-wg type wireguard && ip link set flannel-wg up`
	tests := []struct {
		name     string
		mode     shell.WireguardMode
		ipStderr string // what the ip stand-in fails with; "" for success
		calls    string
		status   int
		stderr   string
	}{
		{"never", shell.WireguardNever, "Error: Unknown device type.",
			"ip link add flannel-wg type wireguard\n", 2, "Error: Unknown device type.\n"},
		{"always", shell.WireguardAlways, "",
			"wireguard-go flannel-wg\nip link set flannel-wg up\n", 0, ""},
		{"auto, kernel has it", shell.WireguardAuto, "",
			"ip link add flannel-wg type wireguard\nip link set flannel-wg up\n", 0, ""},
		{"auto, unknown type", shell.WireguardAuto, "Error: Unknown device type.",
			"ip link add flannel-wg type wireguard\nwireguard-go flannel-wg\nip link set flannel-wg up\n", 0, ""},
		{"auto, old iproute2", shell.WireguardAuto, "RTNETLINK answers: Operation not supported",
			"ip link add flannel-wg type wireguard\nwireguard-go flannel-wg\nip link set flannel-wg up\n", 0, ""},
		{"auto, other error", shell.WireguardAuto, "RTNETLINK answers: File exists",
			"ip link add flannel-wg type wireguard\n", 2, "RTNETLINK answers: File exists\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := helperPath(t)
			record := filepath.Join(t.TempDir(), "calls")
			f := newFixture(t, shell.Wireguard(tt.mode), shell.Environ([]string{
				"PATH=" + bin, helperEnv + "=1", "RECORD=" + record, coverDir(t),
			}))
			// Only `ip link add` gets FAKE_IP_STDERR; `ip link set` succeeds.
			res, err := f.sh.Run(t.Context(), shell.Request{
				Hook: parse(t, hooks.PostStartup, `FAKE_IP_STDERR=$FAIL_WITH `+src),
				Env:  []string{"FAIL_WITH=" + tt.ipStderr},
			})
			if tt.status != 0 {
				var he *shell.HookError
				require.ErrorAs(t, err, &he)
				assert.Equal(t, tt.status, he.Status)
			} else {
				require.NoError(t, err)
			}
			calls, readErr := os.ReadFile(record)
			require.NoError(t, readErr)
			assert.Equal(t, tt.calls, string(calls))
			assert.Equal(t, tt.stderr, res.Stderr, "a fallback hides the failed ip's stderr")
		})
	}
}
