package shell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/hooks"
)

// ErrTimeout is wrapped by the error of a hook that ran past its deadline.
var ErrTimeout = errors.New("hook timed out")

// ErrOutputTooLarge is wrapped by the error of a hook whose stdout exceeded
// the MaxOutput bound.
var ErrOutputTooLarge = errors.New("hook output too large")

// HookError is the error of a hook that failed: a non-zero exit status, a
// timeout (errors.Is(err, ErrTimeout)), a cancellation (errors.Is(err,
// context.Canceled)) or too much output.
type HookError struct {
	Hook   hooks.Kind
	Subnet string // the SUBNET it ran for, if any
	Status int    // the exit status; -1 when the hook did not finish (timeout, cancel)
	Err    error
}

func (e *HookError) Error() string {
	if e.Subnet != "" {
		return fmt.Sprintf("%s (SUBNET=%s): %v", e.Hook, e.Subnet, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Hook, e.Err)
}

func (e *HookError) Unwrap() error { return e.Err }

// Shell runs hooks. It is safe for concurrent use; every Run builds its own
// interpreter.
type Shell struct {
	dir     string
	environ []string // base environment, contract variables already removed
	dryRun  bool
	limits  limits
	tracer  Tracer
	log     *slog.Logger
	wgMode  WireguardMode

	mw       middlewares
	sockets  sockets      // the fast path's kernel sockets
	resolve  resolveCache // system tools by name
	straight straightSet  // hooks that run without the interpreter
	// interpretAll runs every hook in the interpreter (tests compare).
	interpretAll bool
	onCommand    func(hooks.Kind)

	// base is environ as the interpreter sees it, built once; each run
	// lays its contract variables over it.
	base expand.Environ
	// devNull is the stdin of hooks given none (opened once, shared: a
	// read never changes it).
	devNull lazyFile
}

// middlewares are the optional middlewares' settings (see the options
// of the same names).
type middlewares struct {
	replaceExisting bool
	owners          Ownership
	inprocTools     bool
	fastPath        bool
}

// limits bound a hook's run: its timeout, how long its process group
// gets after SIGTERM before SIGKILL, and its stdout (and kept stderr).
type limits struct {
	timeout, killGrace time.Duration
	maxOutput          int
}

// lazyFile is a file opened on first use.
type lazyFile struct {
	once sync.Once
	f    *os.File
	err  error
}

// New returns a Shell. Dir is required unless DryRun(true) is given; a
// dry-run Shell without Dir runs its pure text tools in the process's
// working directory.
func New(opts ...Option) (*Shell, error) {
	s := &Shell{
		limits: limits{timeout: DefaultTimeout, killGrace: DefaultKillGrace, maxOutput: DefaultMaxOutput},
		log:    slog.Default(),

		mw: middlewares{replaceExisting: true, inprocTools: true},
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, fmt.Errorf("shell: %w", err)
		}
	}
	if s.environ == nil {
		s.environ = os.Environ()
	}
	s.environ = inherited(s.environ)
	s.base = expand.ListEnviron(s.environ...)
	s.sockets.log = s.log
	if s.dir == "" && !s.dryRun {
		return nil, errors.New("shell: dir: required (the node's state dir)")
	}
	return s, nil
}

// runState is what the handlers of one Run share.
type runState struct {
	s      *Shell
	hook   hooks.Kind
	subnet string
	execs  sync.WaitGroup // commands started by execCmd and not yet reaped
	stdin  *os.File       // the hook's own stdin (set before the run starts)
}

// waitAll is the `wait` builtin: after the hook, it waits for background
// jobs so none outlives its hook (they are killed at the deadline).
var waitAll = &syntax.CallExpr{Args: []*syntax.Word{{Parts: []syntax.WordPart{&syntax.Lit{Value: "wait"}}}}}

// Run runs one hook. An empty hook is skipped: no trace, empty Result.
// The Result holds what the hook printed even when it failed; a failure is
// a *HookError. Stdout is returned raw (trimming is left to the caller);
// stderr lines are logged at Info and never mixed into stdout.
func (s *Shell) Run(ctx context.Context, req Request) (Result, error) {
	if req.Hook.Empty() {
		return Result{}, nil
	}
	kind := req.Hook.Kind
	hookErr := func(status int, err error) *HookError {
		return &HookError{Hook: kind, Subnet: req.Subnet, Status: status, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, hookErr(-1, err)
	}
	st := &runState{s: s, hook: kind, subnet: req.Subnet}
	if bt, ok := s.tracer.(BeginTracer); ok {
		bt.Begin(kind, req.Subnet)
	}

	stdout := &capWriter{max: s.limits.maxOutput}
	stderr := &lineLogger{
		kept:   capWriter{max: s.limits.maxOutput},
		log:    s.log,
		hook:   kind,
		subnet: req.Subnet,
	}
	var runErr, waitErr error
	var timedOut bool
	if !s.interpretAll && s.straight.is(req.Hook.File) {
		hctx, cancel := context.WithTimeout(ctx, s.limits.timeout)
		runErr = st.runStraight(hctx, req.Hook.File, overlay(s.base, req.Env), req.Stdin, stdout, stderr)
		timedOut = errors.Is(hctx.Err(), context.DeadlineExceeded)
		cancel()
	} else {
		var err error
		if runErr, waitErr, timedOut, err = st.interpret(ctx, req, stdout, stderr); err != nil {
			return Result{}, hookErr(-1, err)
		}
	}
	stderr.flush()

	res := Result{Stdout: stdout.String(), Stderr: stderr.kept.String()}
	failed := runErr != nil || waitErr != nil
	var status interp.ExitStatus
	switch {
	case failed && ctx.Err() != nil:
		return res, hookErr(-1, fmt.Errorf("cancelled: %w", ctx.Err()))
	case failed && timedOut:
		return res, hookErr(-1, fmt.Errorf("%w after %v", ErrTimeout, s.limits.timeout))
	case stdout.overflow(): // also when a child failed writing past the bound
		errors.As(runErr, &status)
		return res, hookErr(int(status), fmt.Errorf("stdout over %d bytes: %w", s.limits.maxOutput, ErrOutputTooLarge))
	case errors.As(runErr, &status):
		return res, hookErr(int(status), runErr)
	case runErr != nil:
		return res, hookErr(-1, runErr)
	}
	return res, nil
}

// interpret runs the hook in the interpreter, then waits for its
// background jobs; err is a failure to start it.
func (st *runState) interpret(ctx context.Context, req Request, stdout, stderr io.Writer) (runErr, waitErr error, timedOut bool, err error) {
	s := st.s
	stdin, stopStdin, err := s.feedStdin(req.Stdin)
	if err != nil {
		return nil, nil, false, fmt.Errorf("stdin: %w", err)
	}
	st.stdin = stdin
	defer stopStdin()

	r, err := interp.New(
		interp.Env(overlay(s.base, req.Env)),
		interp.Dir(s.dir),
		interp.StdIO(stdin, stdout, stderr),
		interp.OpenHandler(st.open),
		interp.ExecHandlers(append(st.middlewares(),
			func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return st.execCmd })...),
	)
	if err != nil {
		return nil, nil, false, fmt.Errorf("interpreter: %w", err)
	}

	hctx, cancel := context.WithTimeout(ctx, s.limits.timeout)
	runErr = r.Run(hctx, req.Hook.File)
	waitErr = r.Run(hctx, waitAll)
	timedOut = errors.Is(hctx.Err(), context.DeadlineExceeded)
	cancel()
	st.execs.Wait() // background commands are being killed by cancel
	stopStdin()
	return runErr, waitErr, timedOut, nil
}

// middlewares are the exec middlewares, outermost first; the final exec
// (execCmd) goes below the last.
func (st *runState) middlewares() []func(interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	return []func(interp.ExecHandlerFunc) interp.ExecHandlerFunc{
		st.ownedObjects, // outside trace: a failed add and its replace are two events
		st.trace,
		st.dryRunMW,
		st.wireguard,
		st.fastPath,
		st.inprocess,
	}
}

// maxPipedStdin is the most stdin written into the pipe before the hook
// starts; the pipe buffer (64 KiB on Linux) holds it, so no goroutine is
// needed. Larger data (a dry-run's own --backend-data, say) is fed by one.
const maxPipedStdin = 16 << 10

// feedStdin returns the hook's stdin: a pipe that yields data then EOF, or
// /dev/null for none. stop closes it (idempotent). The pipe is blocking
// and outside Go's poller: its writer is done before the hook starts, so
// reads never wait, and neither end costs an epoll registration.
func (s *Shell) feedStdin(data string) (*os.File, func(), error) {
	if data == "" {
		s.devNull.once.Do(func() { s.devNull.f, s.devNull.err = os.Open(os.DevNull) })
		return s.devNull.f, func() {}, s.devNull.err
	}
	return pipeStdin(data)
}

// pipeStdin is feedStdin's pipe, made for data even when it is empty.
func pipeStdin(data string) (*os.File, func(), error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	pr, pw := os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1")
	done := make(chan struct{})
	if len(data) <= maxPipedStdin {
		_, err := io.WriteString(pw, data)
		pw.Close()
		close(done)
		if err != nil {
			pr.Close()
			return nil, nil, fmt.Errorf("pipe: %w", err)
		}
	} else {
		go func() {
			defer close(done)
			io.WriteString(pw, data) // EPIPE once stop closed the read end
			pw.Close()
		}()
	}
	var once sync.Once
	return pr, func() {
		once.Do(func() {
			pr.Close()
			<-done
		})
	}, nil
}

// overlay is base with the NAME=value pairs of vars set and exported
// over it, without copying base (the hook's contract variables over the
// daemon's environment).
func overlay(base expand.Environ, vars []string) expand.Environ {
	o := overlayEnv{base: base, vars: make(map[string]expand.Variable, len(vars))}
	for _, kv := range vars {
		name, val, _ := strings.Cut(kv, "=")
		o.vars[name] = expand.Variable{Set: true, Exported: true, Kind: expand.String, Str: val}
	}
	return o
}

type overlayEnv struct {
	base expand.Environ
	vars map[string]expand.Variable
}

func (o overlayEnv) Get(name string) expand.Variable {
	if v, ok := o.vars[name]; ok {
		return v
	}
	return o.base.Get(name)
}

func (o overlayEnv) Each(f func(name string, vr expand.Variable) bool) {
	for name, vr := range o.vars {
		if !f(name, vr) {
			return
		}
	}
	o.base.Each(func(name string, vr expand.Variable) bool {
		if _, over := o.vars[name]; over {
			return true
		}
		return f(name, vr)
	})
}

// capWriter keeps the first max bytes written to it and remembers whether
// more came. It never fails a write, so a chatty child is not killed by
// EPIPE; the caller turns the overflow into an error. Safe for concurrent
// use (background jobs and pipelines write concurrently).
type capWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); len(p) > room {
		w.buf.Write(p[:max(room, 0)])
		w.over = true
	} else {
		w.buf.Write(p)
	}
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *capWriter) overflow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.over
}

// maxLine bounds a stderr line held while waiting for its newline.
const maxLine = 64 << 10

// lineLogger logs each stderr line at Info and keeps the stderr text
// (bounded) for the Result.
type lineLogger struct {
	mu      sync.Mutex
	partial []byte
	kept    capWriter
	log     *slog.Logger
	hook    hooks.Kind // logged with each line (not a With: most hooks print nothing)
	subnet  string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.kept.Write(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.emit(l.partial[:i])
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) >= maxLine {
		l.emit(l.partial)
		l.partial = l.partial[:0]
	}
	l.partial = append([]byte(nil), l.partial...) // do not pin large buffers
	return len(p), nil
}

func (l *lineLogger) emit(line []byte) {
	l.log.Info("hook stderr", "hook", l.hook.String(), "subnet", l.subnet, "line", string(line))
}

// flush logs a last line without a newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit(l.partial)
		l.partial = nil
	}
}

// inherited is the daemon's environment less every hook contract variable,
// so a hook never sees a SUBNET (say) that came from the daemon instead of
// the contract: PreStartupCommand, which is given no SUBNET, sees none.
func inherited(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !contractName(name) {
			out = append(out, kv)
		}
	}
	return out
}

func contractName(name string) bool {
	for _, k := range hooks.Kinds {
		if slices.Contains(k.EnvNames(), name) {
			return true
		}
	}
	return false
}
