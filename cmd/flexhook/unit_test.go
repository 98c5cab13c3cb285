package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// The example unit is one systemd accepts (systemd-analyze verify, with
// ExecStart pointing at a binary that exists), is Type=notify with a
// watchdog (flexhook sends READY=1 and pets it), takes its config from
// the environment, and is hardened.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("../../contrib/flexhook.service")
	require.NoError(t, err)
	unit := string(raw)
	for _, want := range []string{"Type=notify\n", "WatchdogSec=", "NotifyAccess=main\n",
		"EnvironmentFile=-/etc/flexhook/env\n",
		"ExecStart=/usr/local/bin/flexhook run\n", "NoNewPrivileges=yes\n", "ProtectSystem=strict\n",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n", "RestrictAddressFamilies=", "RuntimeDirectory=flannel wireguard\n"} {
		assert.Contains(t, unit, want)
	}
	// The config is named in /etc/flexhook/env alone: a unit that set
	// FLEXHOOK_CONFIG too would make the README's FLEXHOOK_PRESET there
	// fail as --config and --preset together (TestSystemdBoot).
	assert.NotContains(t, unit, "Environment=FLEXHOOK_CONFIG")
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testutil.SkipOrFail(t, "no systemd-analyze (Debian: systemd) to verify the unit with")
	}
	self, err := os.Executable() // a binary that exists, in place of /usr/local/bin/flexhook
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "flexhook.service")
	require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/flexhook", self)), 0o600))
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze has nothing to say")
}
