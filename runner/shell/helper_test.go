package shell_test

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/runner/shell"
)

// helperEnv makes the test binary act as a helper program instead of
// running tests (the re-exec pattern): see helperMain.
const helperEnv = "FLEXHOOK_SHELL_TEST_HELPER"

// coverDir is GOCOVERDIR for a re-executed helper given a bare
// environment: a coverage build (go test -cover) otherwise prints
// "warning: GOCOVERDIR not set" into the stderr a test compares. The
// helper's own coverage is not wanted: a scratch dir takes it.
func coverDir(t testing.TB) string { return "GOCOVERDIR=" + t.TempDir() }

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args))
	}
	os.Exit(m.Run())
}

// helperMain is the helper program. By the name it runs as (symlinks):
//
//	ip ARGS...            records ARGS in $RECORD; prints $FAKE_IP_STDERR on
//	                      stderr and exits 2 when it is set
//	wireguard-go ARGS...  records ARGS in $RECORD
//
// otherwise by its first argument:
//
//	fork PIDFILE [ignore-term]  starts a grandchild (sleep), writes its pid
//	                            to PIDFILE, then sleeps
//	sleep [ignore-term]         sleeps for an hour
func helperMain(args []string) int {
	record := func() {
		if p := os.Getenv("RECORD"); p != "" {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err == nil {
				fmt.Fprintln(f, strings.Join(args, " "))
				f.Close()
			}
		}
	}
	switch filepath.Base(args[0]) {
	case "ip":
		args[0] = "ip"
		record()
		if msg := os.Getenv("FAKE_IP_STDERR"); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
			return 2
		}
		return 0
	case "wireguard-go":
		args[0] = "wireguard-go"
		record()
		return 0
	}
	if len(args) < 2 {
		return 2
	}
	ignoreTerm := args[len(args)-1] == "ignore-term"
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	switch args[1] {
	case "fork":
		child := exec.Command(args[0], "sleep")
		if ignoreTerm {
			child.Args = append(child.Args, "ignore-term")
		}
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		tmp := args[2] + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(child.Process.Pid)), 0o600); err != nil {
			return 1
		}
		if err := os.Rename(tmp, args[2]); err != nil {
			return 1
		}
		time.Sleep(time.Hour) // the scenario: a hook that never ends on its own, until its process group is killed
	case "sleep":
		time.Sleep(time.Hour) // the scenario: a command slower than any timeout the test sets
	}
	return 0
}

// helperBin returns the path of the test binary, to run as a helper.
func helperBin(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	return exe
}

// helperPath returns a directory holding ip and wireguard-go stand-ins
// (symlinks to the test binary), for PATH.
func helperPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"ip", "wireguard-go"} {
		require.NoError(t, os.Symlink(helperBin(t), filepath.Join(dir, name)))
	}
	return dir
}

// processGone reports whether pid no longer runs (absent, or a zombie
// nobody has reaped yet).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func parse(t testing.TB, kind hooks.Kind, src string) hooks.Hook {
	t.Helper()
	h, err := hooks.ParseHook(kind, src)
	require.NoError(t, err)
	return h
}

// fixture is a Shell with a temp state dir, a captured log and a text trace.
type fixture struct {
	sh    *shell.Shell
	dir   string
	log   *testutil.SyncBuffer
	trace *testutil.SyncBuffer
}

func newFixture(t testing.TB, opts ...shell.Option) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), log: &testutil.SyncBuffer{}, trace: &testutil.SyncBuffer{}}
	base := []shell.Option{
		shell.Dir(f.dir),
		shell.Logger(slog.New(slog.NewTextHandler(f.log, nil))),
		shell.Trace(shell.NewTextTracer(f.trace)),
	}
	sh, err := shell.New(append(base, opts...)...)
	require.NoError(t, err)
	f.sh = sh
	return f
}

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
