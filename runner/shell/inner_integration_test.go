//go:build integration

package shell_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// runInner runs the test named name again in a throwaway network and
// mount namespace (unshare, private propagation) with env=1 set, in a
// scratch working directory, and fails unless that inner run passes. It
// needs root and the tools named; without them it skips (fails on CI).
func runInner(t *testing.T, name, env string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: network and mount namespaces")
	}
	for _, bin := range append([]string{"unshare"}, tools...) {
		if _, err := exec.LookPath(bin); err != nil {
			skipOrFail(t, "needs "+bin)
		}
	}
	cmd := exec.CommandContext(t.Context(), "unshare", "--net", "--mount", "--propagation", "private",
		helperBin(t), "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	t.Logf("inner test:\n%s", out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: "+name)
}
