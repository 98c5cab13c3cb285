package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// check --host names each command the hooks use that is not on PATH, with
// where it is used and the package to install, and exits 1; with every
// tool there it says ok.
func TestCheckHost(t *testing.T) {
	bin := t.TempDir()
	tools := map[string]string{} // looked up on the machine's PATH, before the test narrows it
	for _, tool := range []string{"ip", "cat", "cut", "arp", "bridge"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			testutil.SkipOrFail(t, "no %s on this machine to put on the test's PATH", tool)
		}
		tools[tool] = p
	}
	for _, tool := range []string{"ip", "cat", "cut"} {
		require.NoError(t, os.Symlink(tools[tool], filepath.Join(bin, tool)))
	}
	t.Setenv("PATH", bin)
	if !hasNetAdmin(ownStatus()) {
		code, out, _ := cli(t, "check", "--preset", "host-gw", "--host")
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "host: no CAP_NET_ADMIN")
		return // the rest needs a process that may change the network
	}
	code, out, errOut := cli(t, "check", "--preset", "vxlan", "--host")
	assert.Equal(t, 1, code, "a host problem is a runtime failure: %s", errOut)
	assert.Contains(t, out, "host: SubnetAddCommand:1:159: arp: not found on PATH (Debian: apt-get install --no-install-recommends net-tools)\n")
	assert.Contains(t, out, "host: SubnetAddCommand:1:199: bridge: not found on PATH (Debian: apt-get install --no-install-recommends iproute2)\n")
	assert.NotContains(t, out, " ip: not found")
	assert.NotContains(t, out, "read: not found", "builtins are not commands")
	assert.Contains(t, errOut, "vxlan: this host cannot run it: 2 problem(s)")

	for _, tool := range []string{"arp", "bridge"} {
		require.NoError(t, os.Symlink(tools[tool], filepath.Join(bin, tool)))
	}
	code, out, _ = cli(t, "check", "--preset", "vxlan", "--host")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "host: ok: every command the hooks name is on PATH; CAP_NET_ADMIN\n")
}

func TestHasNetAdmin(t *testing.T) {
	for status, want := range map[string]bool{
		"Name:\tflexhook\nCapEff:\t000001ffffffffff\n": true,
		"CapEff:\t0000000000001000\n":                  true, // bit 12 alone
		"CapEff:\t0000000000000000\n":                  false,
		"CapEff:\t0000000000002000\n":                  false,
		"":                                             true, // no /proc: not blamed
	} {
		assert.Equal(t, want, hasNetAdmin(status), "%q", status)
	}
}
