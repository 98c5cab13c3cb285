//go:build integration

package shell_test

import (
	"testing"

	"github.com/flexhook/flexhook/internal/testutil"
)

// runInner runs the test named name again in a throwaway network and
// mount namespace (private propagation) with env=1 set: see
// testutil.RunInner.
func runInner(t *testing.T, name, env string, tools ...string) {
	t.Helper()
	testutil.RunInner(t, name, env, []string{"--net", "--mount", "--propagation", "private"}, tools...)
}
