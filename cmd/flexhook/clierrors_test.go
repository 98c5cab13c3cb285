package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestCLIErrorsGolden keeps every CLI error an operator meets in one
// golden file (testdata/cli-errors.golden, go test ./cmd/flexhook -run
// TestCLIErrorsGolden -update): the command, its exit code and its whole
// stderr, so a change of wording or of exit code shows in review.
func TestCLIErrorsGolden(t *testing.T) {
	for _, k := range []string{"FLEXHOOK_PRESET", "FLEXHOOK_CONFIG", "KUBECONFIG"} {
		t.Setenv(k, "")
	}
	var b strings.Builder
	for _, tc := range []struct {
		env  [2]string
		args []string
	}{
		{args: []string{}},
		{args: []string{"rnu"}},
		{args: []string{"frobnicate"}},
		{args: []string{"help", "chek"}},
		{args: []string{"run", "--hook-timout", "5s"}},
		{args: []string{"check", "--bogus"}},
		{args: []string{"run", "--hook-timeout", "5x"}},
		{args: []string{"run", "--state-dir"}},
		{args: []string{"run", "--parallel", "two"}},
		{args: []string{"run", "--trace=maybe"}},
		{args: []string{"check"}},
		{args: []string{"check", "--preset", "vxlan", "--config", "net-conf.json"}},
		{args: []string{"check", "--preset", "vxlna"}},
		{args: []string{"check", "--preset", "vxlan", "-o", "yaml"}},
		{args: []string{"status", "-o", "yaml"}},
		{args: []string{"completion", "bsh"}},
		{env: [2]string{"FLEXHOOK_HOOK_TIMEOUT", "5x"}, args: []string{"run", "--preset", "vxlan"}},
		{env: [2]string{"FLEXHOOK_TRACE", "yes please"}, args: []string{"run", "--preset", "vxlan"}},
		{env: [2]string{"FLEXHOOK_MTU", "1450a"}, args: []string{"run", "--preset", "vxlan"}},
		{env: [2]string{"FLEXHOOK_SUBNET_LEASE_RENEW_MARGIN", "soon"}, args: []string{"run", "--preset", "vxlan"}},
	} {
		prefix := ""
		if tc.env[0] != "" {
			t.Setenv(tc.env[0], tc.env[1])
			prefix = fmt.Sprintf("%s=%q ", tc.env[0], tc.env[1])
		}
		code, _, errOut := cli(t, tc.args...)
		if tc.env[0] != "" {
			t.Setenv(tc.env[0], "")
		}
		if code == 0 {
			t.Errorf("%s%v: exit 0, want an error", prefix, tc.args)
		}
		fmt.Fprintf(&b, "$ %sflexhook %s\nexit %d\n%s\n", prefix, strings.Join(tc.args, " "), code, errOut)
	}
	golden(t, "cli-errors", b.String())
}
