package shell_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/runner/shell"
)

func TestNewNeedsDir(t *testing.T) {
	_, err := shell.New()
	require.ErrorContains(t, err, "dir: required")
	_, err = shell.New(shell.Dir(filepath.Join(t.TempDir(), "missing")))
	require.Error(t, err)
	_, err = shell.New(shell.DryRun(true))
	require.NoError(t, err)
}

func TestEnvStdinAndOutput(t *testing.T) {
	tests := []struct {
		name, src, stdin, want string
		env                    []string
	}{
		{"read stdin", `read X; echo "got $X"`, "b2:d1\n", "got b2:d1\n", nil},
		{"env var", `echo "$SUBNET"`, "", "10.50.2.0/24\n", []string{"SUBNET=10.50.2.0/24"}},
		{"request env wins", `echo "$BASE"`, "", "req\n", []string{"BASE=req"}},
		{"base env kept", `echo "$BASE"`, "", "base\n", nil},
		{"child sees env", `printenv SUBNET`, "", "10.1.0.0/24\n", []string{"SUBNET=10.1.0.0/24"}},
		{"child reads stdin", `cut -d: -f2`, "a:b\n", "b\n", nil},
		{"export (Bash)", `export X=1; echo $X; printenv X`, "", "1\n1\n", nil},
		{"pipeline", `printf 'a b\nc d\n' | cut -d' ' -f2 | tr a-z A-Z`, "", "B\nD\n", nil},
		{"last stage in shell", `echo a | read X; echo "X=$X"`, "", "X=a\n", nil},
		{"backticks", "X=`echo 10.50.2.0/24 | cut -d'/' -f 1`; echo $X", "", "10.50.2.0\n", nil},
		{"daemon SUBNET not inherited", `echo "[$SUBNET][$PUBLIC_IP]"; printenv SUBNET || echo unset`, "", "[][]\nunset\n", nil},
	}
	f := newFixture(t, shell.Environ(append(os.Environ(), "BASE=base", "SUBNET=10.9.9.0/24", "PUBLIC_IP=203.0.113.9")))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.sh.Run(t.Context(), shell.Request{
				Hook: parse(t, hooks.SubnetAdd, tt.src), Env: tt.env, Stdin: tt.stdin,
			})
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Stdout)
		})
	}
}

func TestStderrLoggedNotInStdout(t *testing.T) {
	f := newFixture(t)
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook:   parse(t, hooks.SubnetRemove, `echo out; echo oops >&2; ls /nonexistent-flexhook-xyz; echo tail`),
		Subnet: "10.50.3.0/24",
	})
	require.NoError(t, err)
	assert.Equal(t, "out\ntail\n", res.Stdout)
	assert.Contains(t, res.Stderr, "oops\n")
	assert.Contains(t, res.Stderr, "nonexistent-flexhook-xyz")
	log := f.log.String()
	assert.Contains(t, log, `level=INFO msg="hook stderr" hook=SubnetRemoveCommand subnet=10.50.3.0/24 line=oops`)
	assert.NotContains(t, log, "tail")
}

func TestCwdIsStateDir(t *testing.T) {
	f := newFixture(t)
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook: parse(t, hooks.PreStartup, `pwd; echo key > privatekey; touch made-by-child`),
	})
	require.NoError(t, err)
	assert.Equal(t, f.dir+"\n", res.Stdout)
	fi, err := os.Stat(filepath.Join(f.dir, "privatekey"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "redirections create 0600 files")
	assert.FileExists(t, filepath.Join(f.dir, "made-by-child"))
}

func TestDevStdoutStderrAreTheHooks(t *testing.T) {
	f := newFixture(t)
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook: parse(t, hooks.PreStartup, `echo a > /dev/stdout; echo b > /dev/stderr; echo c 2>/dev/null >/dev/null`),
	})
	require.NoError(t, err)
	assert.Equal(t, "a\n", res.Stdout)
	assert.Equal(t, "b\n", res.Stderr)
	assert.Equal(t, "# PreStartupCommand\n", f.trace.String(), "std streams and /dev/null are not traced")
}

func TestExitStatus(t *testing.T) {
	f := newFixture(t)
	script := filepath.Join(f.dir, "noshebang")
	require.NoError(t, os.WriteFile(script, []byte("touch ran\n"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "notexec"), []byte("#!/bin/true\n"), 0o600))
	tests := []struct {
		name, src  string
		status     int
		wantStderr string
	}{
		{"exit builtin", `exit 3`, 3, ""},
		{"false binary", `grep -q x /dev/null`, 1, ""},
		{"last command counts", `grep -q x /dev/null; echo ok`, 0, ""},
		{"and list stops", `grep -q x /dev/null && echo no`, 1, ""},
		{"not found", `no-such-cmd-flexhook a b`, 127, "no-such-cmd-flexhook: command not found\n"},
		{"no shebang", `./noshebang`, 126, "./noshebang: cannot execute: exec format error (no #! line?)\n"},
		{"not executable", `./notexec`, 126, "./notexec: permission denied\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.Shutdown, tt.src)})
			if tt.status == 0 {
				require.NoError(t, err)
				return
			}
			var he *shell.HookError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, hooks.Shutdown, he.Hook)
			assert.Equal(t, tt.status, he.Status)
			assert.ErrorContains(t, err, "ShutdownCommand: exit status "+strconv.Itoa(tt.status))
			if tt.wantStderr != "" {
				assert.Equal(t, tt.wantStderr, res.Stderr)
			}
		})
	}
	assert.NoFileExists(t, filepath.Join(f.dir, "ran"), "a shebang-less script must never be run as shell")
}

func TestTraceLines(t *testing.T) {
	f := newFixture(t)
	src := "A=$(basename /x/y); B=`dirname /x/y`; echo $A $B; expr 'a b' : a >/dev/null; grep -q zzz /dev/null; echo hi > out.txt; echo again >> out.txt; true"
	_, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PostStartup, src), Subnet: "10.50.1.0/24"})
	require.NoError(t, err)
	assert.Equal(t, `# PostStartupCommand SUBNET=10.50.1.0/24
+ basename /x/y
+ dirname /x/y
+ expr 'a b' : a
+ grep -q zzz /dev/null
# exit status 1
+ > out.txt
+ >> out.txt
`, f.trace.String())
}

func TestTraceHeaderForBuiltinOnlyHook(t *testing.T) {
	f := newFixture(t)
	_, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup, `X=1; echo $X`)})
	require.NoError(t, err)
	_, err = f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.SubnetRemove, `:`), Subnet: "10.50.9.0/24"})
	require.NoError(t, err)
	_, err = f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.Shutdown, ``)})
	require.NoError(t, err)
	assert.Equal(t, "# PreStartupCommand\n# SubnetRemoveCommand SUBNET=10.50.9.0/24\n", f.trace.String(),
		"an empty hook is skipped without a header")
}

// recorder keeps trace events.
type recorder struct{ evs []shell.TraceEvent }

func (r *recorder) Trace(ev shell.TraceEvent) { r.evs = append(r.evs, ev) }

func TestTraceEventFields(t *testing.T) {
	rec := &recorder{}
	sh, err := shell.New(shell.Dir(t.TempDir()), shell.Trace(rec))
	require.NoError(t, err)
	_, err = sh.Run(t.Context(), shell.Request{
		Hook: parse(t, hooks.SubnetAdd, `grep -q x /dev/null; echo x > f`), Subnet: "10.50.2.0/24",
	})
	require.NoError(t, err)
	require.Len(t, rec.evs, 2)
	assert.Equal(t, shell.TraceEvent{Hook: hooks.SubnetAdd, Subnet: "10.50.2.0/24",
		Argv: []string{"grep", "-q", "x", "/dev/null"}, Status: 1, Duration: rec.evs[0].Duration}, rec.evs[0])
	assert.Positive(t, rec.evs[0].Duration)
	assert.Equal(t, shell.TraceEvent{Hook: hooks.SubnetAdd, Subnet: "10.50.2.0/24",
		Argv: []string{">", "f"}, Redirect: true}, rec.evs[1])
}

func TestHostileDataIsNeverCode(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, os.Mkdir(filepath.Join(f.dir, "x"), 0o700))
	hostile := []string{"$(touch pwned1)", "`touch pwned2`", "; touch pwned3", "x; rm -rf x", "$((1+1))", "a && touch pwned4", "*"}
	for _, v := range hostile {
		t.Run(v, func(t *testing.T) {
			res, err := f.sh.Run(t.Context(), shell.Request{
				Hook:  parse(t, hooks.SubnetAdd, `read V; echo "$V" "$SUBNET"; printf '%s\n' $PUBLIC_IP; printenv SUBNET`),
				Env:   []string{"SUBNET=" + v, "PUBLIC_IP=" + v},
				Stdin: v + "\n",
			})
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSuffix(res.Stdout, "\n"), "\n")
			assert.Equal(t, v+" "+v, lines[0])
			assert.Equal(t, v, lines[len(lines)-1])
		})
	}
	assert.ElementsMatch(t, []string{"x"}, dirEntries(t, f.dir))
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	tests := []struct{ name, mode string }{
		{"exits on SIGTERM", ""},
		{"ignores SIGTERM", "ignore-term"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, shell.Timeout(2*time.Second), shell.KillGrace(200*time.Millisecond))
			pidfile := filepath.Join(t.TempDir(), "pid")
			res, err := f.sh.Run(t.Context(), shell.Request{
				Hook: parse(t, hooks.SubnetAdd, `echo started; "$HELPER" fork "$PIDFILE" $MODE; echo never`),
				Env:  []string{helperEnv + "=1", "HELPER=" + helperBin(t), "PIDFILE=" + pidfile, "MODE=" + tt.mode, coverDir(t)},
			})
			require.ErrorIs(t, err, shell.ErrTimeout)
			var he *shell.HookError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, -1, he.Status)
			assert.Equal(t, "started\n", res.Stdout)
			b, readErr := os.ReadFile(pidfile)
			require.NoError(t, readErr, "the helper did not start its grandchild before the timeout")
			pid, convErr := strconv.Atoi(string(b))
			require.NoError(t, convErr)
			require.Eventually(t, func() bool { return processGone(pid) }, 10*time.Second, 10*time.Millisecond,
				"grandchild %d survived the hook timeout", pid)
		})
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	f := newFixture(t, shell.KillGrace(200*time.Millisecond))
	pidfile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.sh.Run(ctx, shell.Request{
			Hook: parse(t, hooks.Shutdown, `"$HELPER" fork "$PIDFILE"`),
			Env:  []string{helperEnv + "=1", "HELPER=" + helperBin(t), "PIDFILE=" + pidfile, coverDir(t)},
		})
		done <- err
	}()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidfile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, shell.ErrTimeout)
	require.Eventually(t, func() bool { return processGone(pid) }, 10*time.Second, 10*time.Millisecond)
}

func TestBackgroundJobsAreWaitedFor(t *testing.T) {
	f := newFixture(t)
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook: parse(t, hooks.PostStartup, `{ sleep 0.2; echo late; } & echo early`),
	})
	require.NoError(t, err)
	assert.Equal(t, "early\nlate\n", res.Stdout)
}

func TestOutputBound(t *testing.T) {
	f := newFixture(t, shell.MaxOutput(8))
	res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup, `echo 0123456789; seq 1 100000`)})
	require.ErrorIs(t, err, shell.ErrOutputTooLarge)
	assert.Equal(t, "01234567", res.Stdout)
}

func TestCancelledBeforeStart(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.sh.Run(ctx, shell.Request{Hook: parse(t, hooks.PreStartup, `touch made`)})
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, dirEntries(t, f.dir))
}

func TestSlogTracer(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	l := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		},
	}))
	sh, err := shell.New(shell.DryRun(true), shell.Trace(shell.NewSlogTracer(l)))
	require.NoError(t, err)
	_, err = sh.Run(t.Context(), shell.Request{
		Hook:   parse(t, hooks.SubnetAdd, `X=$(echo 10.50.2.0/24 | cut -d/ -f1); ip route add $SUBNET via $X; grep -q z /dev/null`),
		Env:    []string{"SUBNET=10.50.2.0/24"},
		Subnet: "10.50.2.0/24",
	})
	require.ErrorContains(t, err, "exit status 1")
	assert.Equal(t, `level=INFO msg="+ cut -d/ -f1" hook=SubnetAddCommand subnet=10.50.2.0/24 status=0
level=INFO msg="+ ip route add 10.50.2.0/24 via 10.50.2.0" hook=SubnetAddCommand subnet=10.50.2.0/24 status=0 skipped=true
level=INFO msg="+ grep -q z /dev/null" hook=SubnetAddCommand subnet=10.50.2.0/24 status=1
`, logs.String())
}

func TestTimeoutStopsBuiltinLoop(t *testing.T) {
	f := newFixture(t, shell.Timeout(100*time.Millisecond))
	_, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.SubnetAdd, `while :; do :; done`)})
	require.ErrorIs(t, err, shell.ErrTimeout)
	assert.ErrorContains(t, err, "SubnetAddCommand: hook timed out after 100ms")
}

// hooks.UnsupportedBuiltins is exactly the set of builtins the interpreter
// names but refuses, so the lint neither misses one nor cries wolf.
func TestUnsupportedBuiltinsMatchInterpreter(t *testing.T) {
	var got []string
	for _, name := range []string{"alias", "bg", "bind", "break", "builtin", "caller", "cd", "command", "compgen",
		"complete", "compopt", "continue", "dirs", "disown", "echo", "enable", "eval", "exec", "exit", "false",
		"fc", "fg", "getopts", "hash", "help", "history", "jobs", "kill", "local", "logout", "mapfile", "newgrp",
		"popd", "printf", "pushd", "pwd", "read", "readarray", "return", "set", "shift", "shopt", "source",
		"suspend", "test", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "wait", "[", ":", "."} {
		require.True(t, interp.IsBuiltin(name), name)
		f := newFixture(t)
		res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PostStartup, name)})
		if err != nil && strings.Contains(res.Stderr+f.log.String(), "unsupported builtin") {
			got = append(got, name)
		}
	}
	assert.ElementsMatch(t, hooks.UnsupportedBuiltins, got)
}

// A child's stdout and stderr take every way a program opens them again:
// /dev/stdout and /proc/self/fd/1, truncating or appending (a sealed
// memfd refused all of these with EPERM), and orphans that keep them
// open do not hold the hook up.
func TestChildReopensItsOutput(t *testing.T) {
	for _, tool := range []string{"bash", "dd"} { // Debian's essential packages
		_, err := exec.LookPath(tool)
		require.NoError(t, err)
	}
	f := newFixture(t)
	res, err := f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup,
		`bash -c 'echo one > /dev/stdout; echo two >> /dev/stdout; echo three > /proc/self/fd/1; echo err > /dev/stderr; echo err2 >> /proc/self/fd/2'; `+
			`printf four | dd of=/dev/stdout status=none`)})
	require.NoError(t, err)
	assert.Equal(t, "one\ntwo\nthree\nfour", res.Stdout)
	assert.Equal(t, "err\nerr2\n", res.Stderr)

	res, err = f.sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup,
		`bash -c '(sleep 0.2; echo late; echo $? > rc) & echo started'`)})
	require.NoError(t, err, "an orphan holding stdout does not fail the hook")
	assert.Equal(t, "started\n", res.Stdout)
	// What the orphan writes later is read and dropped: it gets no SIGPIPE.
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(f.dir, "rc"))
		return err == nil && string(b) == "0\n"
	}, 10*time.Second, 10*time.Millisecond, "the orphan's late write failed")
}
