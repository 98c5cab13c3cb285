package shell_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/runner/shell"
)

// An in-process wg pubkey whose input never ends (a writer that is the
// hook's own loop, or a process) ends with the hook at its timeout.
func TestWgPubkeyEndsWithTheHook(t *testing.T) {
	for _, src := range []string{
		`while :; do echo; done | wg pubkey`,
		`sleep 60 | wg pubkey`,
		`{ echo; sleep 60; } | wg pubkey`,
	} {
		f := newFixture(t, shell.FastPath(true), shell.Timeout(300*time.Millisecond))
		_, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup, src)})
		require.Error(t, err, src)
		assert.ErrorIs(t, err, shell.ErrTimeout, src)
	}
}

// Nor does it wait for a writer that outlives the hook (in a session of
// its own, out of reach of the hook's kill): its read ends at the hook's
// timeout, as the real wg would be killed then, while the writer still
// runs.
func TestWgPubkeyLeavesAnOrphanWriter(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		testutil.SkipOrFail(t, "needs setsid (util-linux)")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	f := newFixture(t, shell.FastPath(true), shell.Timeout(500*time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := f.sh.Run(t.Context(), shell.Request{
			Hook: parse(t, hooks.PreStartup, `setsid "$HELPER" fork "$PIDFILE" | wg pubkey`),
			Env:  []string{helperEnv + "=1", "HELPER=" + helperBin(t), "PIDFILE=" + pidfile, coverDir(t)},
		})
		done <- err
	}()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidfile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(data))
		return err == nil
	}, 30*time.Second, 10*time.Millisecond, "the writer started")
	parent := ppid(t, pid)
	t.Cleanup(func() { // the writer and its parent (the helper), out of the hook's reach
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", parent)); err == nil && exe == helperBin(t) {
			_ = syscall.Kill(parent, syscall.SIGKILL)
		}
	})
	select {
	case err := <-done:
		assert.ErrorIs(t, err, shell.ErrTimeout)
	case <-time.After(30 * time.Second): // the writer sleeps an hour
		t.Fatal("the hook waited for its orphan writer past its timeout")
	}
	assert.False(t, processGone(pid), "the hook ended while its orphan writer still held the pipe")
}

// ppid is pid's parent, from /proc.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	p, err := strconv.Atoi(fields[1])
	require.NoError(t, err)
	return p
}
