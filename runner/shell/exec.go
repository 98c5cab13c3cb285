package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/internal/retry"
)

// callState is the per-command state the middlewares pass down the chain,
// beside the interpreter's HandlerContext: one typed value, never changed
// once made; a middleware that changes it passes a new one.
type callState struct {
	// stderr replaces the interpreter's stderr for the command, so a
	// middleware can hold it back (replace-existing) or capture it
	// (wireguard Auto); nil: the interpreter's.
	stderr io.Writer
	// cmd is the command as internal/netcmd read it (nil: not read, or
	// no middleware read it yet); a middleware below checks it is for
	// the argv it gets (replace-existing runs another).
	cmd *netcmd.Cmd
	// unread is an argv netcmd did not read, and readErr why, so a
	// middleware below need not try again.
	unread  []string
	readErr error
	// io is what the command runs with when no interpreter runs it (a
	// straight hook, straight.go); nil: the interpreter's HandlerContext.
	io *cmdIO
}

// cmdIO is what a command runs with: its directory, environment and
// streams.
type cmdIO struct {
	Dir    string
	Env    expand.Environ
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// ioOf is what the command of ctx runs with: a straight hook's own, else
// the interpreter's.
func ioOf(ctx context.Context) cmdIO {
	if c := callOf(ctx); c.io != nil {
		return *c.io
	}
	hc := interp.HandlerCtx(ctx)
	return cmdIO{Dir: hc.Dir, Env: hc.Env, Stdin: hc.Stdin, Stdout: hc.Stdout, Stderr: hc.Stderr}
}

type callKey struct{}

// callOf returns the command's state (zero when no middleware set one).
func callOf(ctx context.Context) callState {
	c, _ := ctx.Value(callKey{}).(callState)
	return c
}

// withCmd passes the command down with c, its reading.
func withCmd(ctx context.Context, c *netcmd.Cmd) context.Context {
	cs := callOf(ctx)
	cs.cmd = c
	return context.WithValue(ctx, callKey{}, cs)
}

// withUnread passes the command down as one netcmd did not read.
func withUnread(ctx context.Context, args []string, err error) context.Context {
	cs := callOf(ctx)
	cs.unread, cs.readErr = args, err
	return context.WithValue(ctx, callKey{}, cs)
}

// readCmd is args as netcmd reads them: the reading a middleware above
// passed down when it is of these args, else a new one.
func readCmd(ctx context.Context, args []string) (*netcmd.Cmd, error) {
	cs := callOf(ctx)
	if c := cs.cmd; c != nil && slices.Equal(c.Argv, args) {
		return c, nil
	}
	if cs.unread != nil && slices.Equal(cs.unread, args) {
		return nil, cs.readErr
	}
	return netcmd.Parse(args)
}

// withStderr passes the command down with its stderr going to w.
func withStderr(ctx context.Context, w io.Writer) context.Context {
	c := callOf(ctx)
	c.stderr = w
	return context.WithValue(ctx, callKey{}, c)
}

// groupPoll is how often a cancelled command's process group is checked
// for survivors during the kill grace.
const groupPoll = 10 * time.Millisecond

// textBusy paces the retries of a start that failed with ETXTBSY:
// 1ms doubling, ten tries in about half a second.
var textBusy = retry.Backoff{Initial: time.Millisecond, Max: 256 * time.Millisecond, Attempts: 10}

// execCmd is the final exec handler: it looks the command up in the hook's
// PATH and runs it in its own process group. It never falls back to running
// a file as a script in a new interpreter, and never starts /bin/sh.
func (st *runState) execCmd(ctx context.Context, args []string) error {
	st.execs.Add(1)
	defer st.execs.Done()

	hc := ioOf(ctx)
	hc.Stdin = stdinFile(hc.Stdin)
	stderr := hc.Stderr
	if w := callOf(ctx).stderr; w != nil {
		stderr = w
	}
	path, err := lookPath(hc, stderr, args[0])
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	childOut, stdoutCopy := st.outFile(hc.Stdout)
	childErr, stderrCopy := st.outFile(stderr)
	defer func() { // the child's output, in the order a shell's would land
		stdoutCopy()
		stderrCopy()
	}()

	var cancelled atomic.Int64 // unix nanos of the SIGTERM; 0 if none
	newCmd := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, path)
		cmd.Args = args
		cmd.Env = execEnv(hc.Env)
		cmd.Dir = hc.Dir
		cmd.Stdin = hc.Stdin
		cmd.Stdout = childOut
		cmd.Stderr = childErr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error {
			cancelled.Store(time.Now().UnixNano())
			// The child is its group's leader: pgid == pid.
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
		// After the grace, Wait kills the direct child and stops waiting for
		// orphans that hold its output pipes.
		cmd.WaitDelay = st.s.limits.killGrace
		return cmd
	}
	var cmd *exec.Cmd
	// A concurrently forked process may briefly hold a write descriptor of
	// the file (https://go.dev/issue/22315): retry ETXTBSY with backoff.
	err = retry.Do(ctx, textBusy, func(context.Context) error {
		cmd = newCmd()
		err := cmd.Start()
		if err != nil && !errors.Is(err, syscall.ETXTBSY) {
			return retry.Permanent(err)
		}
		return err
	}, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return startFailed(stderr, args[0], err)
	}
	pgid := cmd.Process.Pid
	err = cmd.Wait()
	if t := cancelled.Load(); t != 0 {
		st.killGroup(pgid, time.Unix(0, t).Add(st.s.limits.killGrace))
	}

	return exitStatus(ctx, args[0], err, cancelled.Load() != 0)
}

// outFile returns what a child writes w through: w itself when it is a
// file (a pipe of a pipeline, a redirection), else a pipeOut, and the
// func that finishes copying it into w once the child is done (a no-op
// for a file). If no pipe can be made, w is returned and os/exec pipes
// it.
func (st *runState) outFile(w io.Writer) (io.Writer, func()) {
	if _, ok := w.(*os.File); ok || w == nil {
		return w, func() {}
	}
	p, err := newPipeOut(w)
	if err != nil {
		return w, func() {}
	}
	return p.w, p.finish
}

// lookPath finds name in the hook's PATH (or relative to its dir), with
// the shell's messages and statuses: 126 for a file that cannot run, 127
// for none.
func lookPath(hc cmdIO, stderr io.Writer, name string) (string, error) {
	path, err := interp.LookPathDir(hc.Dir, hc.Env, name)
	if err == nil {
		return path, nil
	}
	if strings.Contains(name, "/") {
		if _, statErr := os.Stat(absPath(hc.Dir, name)); statErr == nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return "", interp.ExitStatus(126)
		}
	}
	fmt.Fprintf(stderr, "%s: command not found\n", name)
	return "", interp.ExitStatus(127)
}

// startFailed reports a command that could not start as the shell does.
func startFailed(stderr io.Writer, name string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		fmt.Fprintf(stderr, "%s: cannot execute: exec format error (no #! line?)\n", name)
		return interp.ExitStatus(126)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EISDIR):
		fmt.Fprintf(stderr, "%s: cannot execute: %v\n", name, errors.Unwrap(err))
		return interp.ExitStatus(126)
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return interp.ExitStatus(127)
}

// exitStatus turns Wait's error into the interpreter's: the exit status,
// 128+signal, or ctx's error when our own cancellation killed it.
func exitStatus(ctx context.Context, name string, err error, cancelled bool) error {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if cancelled && ctx.Err() != nil {
				return ctx.Err()
			}
			return interp.ExitStatus(128 + int(ws.Signal()))
		}
		return interp.ExitStatus(exitErr.ExitCode())
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited with status 0, but orphans held its output open past
		// the grace; like the interpreter's own handler, that is success.
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// killGroup makes sure nothing of a cancelled command's process group
// survives: it waits until deadline for the group to exit after SIGTERM,
// then sends SIGKILL to the whole group.
func (st *runState) killGroup(pgid int, deadline time.Time) {
	tick := time.NewTicker(groupPoll)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if syscall.Kill(-pgid, 0) != nil { // ESRCH: the group is gone
			return
		}
		<-tick.C
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// execEnv is the environment of a child: the exported string variables,
// as the interpreter's own exec handler computes it.
func execEnv(env expand.Environ) []string {
	list := make([]string, 0, 64)
	for name, vr := range env.Each {
		if !vr.IsSet() {
			// Set globally but unset in the runner: drop earlier entries.
			for i, kv := range list {
				if strings.HasPrefix(kv, name+"=") {
					list[i] = ""
				}
			}
		}
		if vr.Exported && vr.Kind == expand.String {
			list = append(list, name+"="+vr.String())
		}
	}
	return slices.DeleteFunc(list, func(kv string) bool { return kv == "" })
}

func absPath(dir, path string) string {
	if path == "" || strings.HasPrefix(path, "/") {
		return path
	}
	return dir + "/" + path
}
