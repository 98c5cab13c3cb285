package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// SkipOrFail skips t with the message, or fails it when CI=true, where
// every prerequisite (root, a tool, a kernel feature) must be present and
// a skip would hide a gap.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: a skip is a failure)")
	}
	t.Skip(msg)
}

// RunInner runs the test named name again, in the same test binary, in
// namespaces of its own (unshare with unshareFlags, e.g. "--net"), with
// env=1 set and a scratch working directory, and fails t unless that
// inner run passes; its output goes to t's log. The test checks env
// first and, when set, does its work instead. It needs root, unshare and
// the tools named (SkipOrFail otherwise).
func RunInner(t testing.TB, name, env string, unshareFlags []string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root: namespaces (unshare %s)", strings.Join(unshareFlags, " "))
	}
	for _, bin := range append([]string{"unshare"}, tools...) {
		if _, err := exec.LookPath(bin); err != nil {
			SkipOrFail(t, "needs %s", bin)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), unshareFlags...), exe, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd := exec.CommandContext(t.Context(), "unshare", args...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	t.Logf("inner test:\n%s", out)
	if err != nil {
		t.Fatalf("inner test %s: %v", name, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("inner test %s did not pass", name)
	}
}
