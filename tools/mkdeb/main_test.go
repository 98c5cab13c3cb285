package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

func TestPackageVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3-4-gabcdef0": "1.2.3-4-gabcdef0", "2c37ce5": "0~git2c37ce5",
		"2c37ce5-dirty": "0~git2c37ce5+dirty", "devel": "0~devel", "v0.1.0-rc1": "0.1.0-rc1",
	} {
		assert.Equal(t, want, packageVersion(in), in)
	}
}

// The package is one Debian's own dpkg installs: into a scratch root
// (dpkg --root), with the binary, the unit pointing at /usr/bin/flexhook,
// /etc/flexhook/env as a 0600 conffile, and the Depends the presets
// need.
func TestPackageInstalls(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "no %s to install the package with", tool)
		}
	}
	dir := t.TempDir()
	bin, err := os.Executable() // any executable stands in for flexhook
	require.NoError(t, err)
	deb := filepath.Join(dir, "flexhook.deb")
	require.NoError(t, run([]string{"-arch", "amd64", "-version", "v1.2.3", "-bin", bin,
		"-unit", "../../contrib/flexhook.service", "-out", deb}))

	info, err := exec.Command("dpkg-deb", "--info", deb).CombinedOutput()
	require.NoError(t, err, "%s", info)
	for _, want := range []string{"Package: flexhook", "Version: 1.2.3", "Architecture: amd64",
		"Depends: iproute2, net-tools, wireguard-tools, procps"} {
		assert.Contains(t, string(info), want)
	}

	root := filepath.Join(dir, "root")
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates"} {
		require.NoError(t, os.MkdirAll(filepath.Join(admin, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(admin, "status"), nil, 0o644))
	out, err := exec.Command("dpkg", "--root="+root, "--admindir="+admin, "--force-depends", "--force-not-root",
		"--force-script-chrootless", "-i", deb).CombinedOutput()
	require.NoError(t, err, "%s", out)

	status, err := os.ReadFile(filepath.Join(admin, "status"))
	require.NoError(t, err)
	assert.Contains(t, string(status), "Package: flexhook\nStatus: install ok installed\n")
	assert.Contains(t, string(status), "Conffiles:\n /etc/flexhook/env ")

	got, err := os.ReadFile(filepath.Join(root, "usr/bin/flexhook"))
	require.NoError(t, err)
	want, err := os.ReadFile(bin)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "the binary as built")
	for path, mode := range map[string]os.FileMode{"usr/bin/flexhook": 0o755, "etc/flexhook/env": 0o600,
		"lib/systemd/system/flexhook.service": 0o644} {
		st, err := os.Stat(filepath.Join(root, path))
		require.NoError(t, err)
		assert.Equal(t, mode, st.Mode().Perm(), path)
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/flexhook.service"))
	require.NoError(t, err)
	assert.Contains(t, string(unit), "ExecStart=/usr/bin/flexhook run\n")
	assert.NotContains(t, string(unit), "/usr/local/bin")
	assert.True(t, strings.HasPrefix(string(unit), "#"), "the unit as shipped")
}
