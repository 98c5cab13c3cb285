package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/runner"
)

// failingAddConfig's SubnetAddCommand fails until the file "ok" exists in
// the node's state dir.
const failingAddConfig = `{
  "Network": "10.61.0.0/16",
  "Backend": {
    "Type": "extension",
    "PostStartupCommand": "echo \"post $SUBNET $PUBLIC_IP\" >> events",
    "SubnetAddCommand": "test -e ok || { echo \"no ok file for $SUBNET\" >&2; exit 1; }; echo \"add $SUBNET\" >> events"
  }
}`

// `flexhook status` shows a hook that keeps failing and exits 1, then 0
// once the hook succeeds on a retry; both daemons are real processes.
func TestStatusShowsFailingHook(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(failingAddConfig), 0o600))
	store := filepath.Join(dir, "leases")
	a := startDaemon(t, bin, cfg, store, "192.0.2.1")
	b := startDaemon(t, bin, cfg, store, "192.0.2.20")
	subA, subB := ownSubnet(t, a), ownSubnet(t, b)

	status := func(extra ...string) (string, int) {
		var out bytes.Buffer
		cmd := exec.Command(bin, append([]string{"status", "--state-dir", a.stateDir}, extra...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		require.NoError(t, err)
		return out.String(), 0
	}
	var out string
	require.Eventually(t, func() bool {
		var code int
		out, code = status()
		return code == 1 && strings.Contains(out, subB+" SubnetAddCommand:")
	}, 30*time.Second, 50*time.Millisecond, "status never showed the failing Add")
	assert.Contains(t, out, "subnet     "+subA+"\n")
	assert.Regexp(t, `(?m)^version    \S+ \(commit \S+\)$`, out, "the daemon's version")
	assert.Regexp(t, `(?m)^lease      expires \d{4}-\d\d-\d\dT.* unless renewed\)$`, out, "the own lease's expiry")
	assert.Contains(t, out, "failing    1\n")
	assert.Contains(t, out, "exit status 1 (stderr: no ok file for "+subB+")", "the failing hook's stderr says why")
	assert.Regexp(t, `(?m)^mtu        \d+ \((underlay|default|path: dev )`, out, "FLANNEL_MTU and where it came from")
	js, code := status("--json")
	assert.Equal(t, 1, code, "--json exits as the text form")
	var st runner.Status
	require.NoError(t, json.NewDecoder(strings.NewReader(js)).Decode(&st), js) // stderr follows: "hooks are failing"
	require.Len(t, st.Failing, 1)
	assert.Equal(t, subB, st.Failing[0].Subnet.String())

	// -o json: a versioned document with snake_case keys.
	js, code = status("-o", "json")
	assert.Equal(t, 1, code, "-o json exits as the text form")
	var doc map[string]any
	require.NoError(t, json.NewDecoder(strings.NewReader(js)).Decode(&doc), js)
	assert.Equal(t, "flexhook/v1", doc["api_version"])
	assert.Equal(t, "Status", doc["kind"])
	assert.Equal(t, subA, doc["subnet"])
	assert.Equal(t, map[string]any{"running": true, "pid": float64(a.cmd.Process.Pid)}, doc["daemon"])
	failing := doc["failing"].([]any)
	require.Len(t, failing, 1)
	f0 := failing[0].(map[string]any)
	assert.Equal(t, subB, f0["subnet"])
	assert.Equal(t, "SubnetAddCommand", f0["hook"])
	for _, k := range []string{"error", "attempts", "since", "next_retry"} {
		assert.Contains(t, f0, k)
	}
	assert.Equal(t, []any{}, doc["applied"], "an empty list, not null")

	require.NoError(t, os.WriteFile(filepath.Join(a.stateDir, "ok"), nil, 0o600))
	require.Eventually(t, func() bool {
		var code int
		out, code = status("-o", "wide")
		return code == 0 && strings.Contains(out, "applied    1: "+subB+"\n")
	}, 30*time.Second, 50*time.Millisecond, "status -o wide never showed the Add applied")
	out, _ = status()
	assert.Contains(t, out, "applied    1\n", "counts by default, the list with -o wide")
	assert.Contains(t, out, "failing    0\n")
	assert.Contains(t, a.events(), "add "+subB+"\n")
	require.Eventually(t, func() bool {
		out, _ = status()
		return !strings.Contains(out, "last sync  never")
	}, 30*time.Second, 50*time.Millisecond, "status never showed a last sync")
	assert.Regexp(t, `last sync  \d{4}-\d\d-\d\dT`, out)
	assert.Contains(t, out, fmt.Sprintf("daemon     running, pid %d\n", a.cmd.Process.Pid))

	// Stopped, the daemon leaves its last status.json: status says it does
	// not run and exits 3, as systemctl status does, text and --json.
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	<-a.done
	out, code = status()
	assert.Equal(t, 3, code, out)
	assert.Contains(t, out, fmt.Sprintf("daemon     NOT RUNNING: the daemon (pid %d) is not running; below is its last state", a.cmd.Process.Pid))
	assert.Contains(t, out, "subnet     "+subA)
	_, code = status("--json")
	assert.Equal(t, 3, code)
}

// A status.json written during a long batch: status shows how far it got,
// in text and -o json.
func TestStatusShowsBatch(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	st := runner.Status{UpdatedAt: now, Batch: &runner.BatchProgress{Phase: "add", Done: 400, Total: 1000, Since: now.Add(-12 * time.Second)},
		Version: "v1.2.3 (commit abc)", LeaseExpiry: now.Add(23*time.Hour + 30*time.Minute)}
	var b bytes.Buffer
	require.NoError(t, writeStatus(&b, st, now, false))
	assert.Contains(t, b.String(), "batch      add 400/1000 subnets, running for 12s\n")
	assert.Contains(t, b.String(), "version    v1.2.3 (commit abc)\n")
	assert.Contains(t, b.String(), "lease      expires 2026-12-04T11:30:00Z (in 23h30m0s unless renewed)\n")
	js, err := json.Marshal(statusDocument(st, nil))
	require.NoError(t, err)
	assert.Contains(t, string(js), `"batch":{"phase":"add","done":400,"total":1000,"since":"2026-12-03T11:59:48Z"}`)
	assert.Contains(t, string(js), `"version":"v1.2.3 (commit abc)","lease_expiry":"2026-12-04T11:30:00Z"`)

	st.Batch = nil
	b.Reset()
	require.NoError(t, writeStatus(&b, st, now, false))
	assert.NotContains(t, b.String(), "batch")
	js, err = json.Marshal(statusDocument(st, nil))
	require.NoError(t, err)
	assert.NotContains(t, string(js), `"batch"`)
}
