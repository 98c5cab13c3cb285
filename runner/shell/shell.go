// Package shell runs hook commands in the embedded POSIX shell interpreter
// (mvdan.cc/sh/v3/interp) with no /bin/sh anywhere.
//
// Behaviour is layered as exec-handler middlewares, outermost first:
// ownership and replace-existing (off in dry-run; commands read by
// internal/netcmd), trace, dry-run, wireguard-userspace, the netlink fast
// path, the in-process text tools (internal/coreutils), and flexhook's own
// final exec last; what a middleware passes down for one command is one
// typed value (callState). The final exec starts every external command in its own process group and,
// when the hook's deadline passes or its context is cancelled, kills the
// whole group (SIGTERM, then SIGKILL after the kill grace), so grandchildren
// do not survive a timeout. A file the kernel refuses to execute (a script
// without a shebang) fails with status 126; it is never re-run in a fresh
// interpreter, and /bin/sh is never started.
//
// Dry-run is decided in one place, the dry-run middleware: pure text tools
// (cut, tr, sed without -i, awk, head, grep, ...) run for real so computed
// values are right; every other command is traced, not run, and reports
// status 0 with no output, except tee, which copies its stdin to its stdout
// and writes no file. The open handler writes no file in dry-run: output
// redirections go to a discarding writer (/dev/null, /dev/stdout and
// /dev/stderr keep their meaning).
//
// Tracing: every external command, including those inside $(...) and
// backticks, produces one [TraceEvent] when it completes; so do output
// redirections to files (Argv {">", path} or {">>", path}, Redirect set;
// /dev/null and /dev/std* are not traced). Builtins (echo, read, export,
// test, ...) produce no event. Stages of a pipeline run concurrently, so
// their events arrive in completion order.
//
// A hook ends when its last statement and every background job (cmd &) have
// ended; jobs still running at the deadline are killed with their groups.
//
// A straight hook (assignments, export, read, commands named by a literal,
// && and ||, parameters and simple command substitutions: every preset's
// SubnetAdd and SubnetRemove) runs without building an interpreter: its
// words are expanded by the same expand package and its commands go
// through the same middlewares, so nothing above tells the difference
// (straight_forms.go lists the forms; a parity test and a fuzzer compare
// the two).
package shell

import (
	"time"

	"github.com/flexhook/flexhook/hooks"
)

// TraceEvent describes one external command a hook ran (or, in dry-run,
// would have run).
type TraceEvent struct {
	Hook     hooks.Kind
	Subnet   string   // the SUBNET the hook runs for; empty for PreStartup
	Argv     []string // after expansion
	Status   int      // exit status; 0 for a command not run
	Duration time.Duration
	Skipped  bool // dry-run: printed, not run
	Err      error
	// Redirect marks an output redirection to a file: Argv is {op, path}
	// with op ">" or ">>". In dry-run it is Skipped and nothing is written.
	Redirect bool
}

// Tracer receives trace events. Implementations must be safe for
// concurrent use.
type Tracer interface {
	Trace(ev TraceEvent)
}

// BeginTracer is an optional interface of a [Tracer]: Run calls Begin when
// a non-empty hook starts, before any of its events, so a tracer can print
// a header even for a hook that runs builtins only.
type BeginTracer interface {
	Begin(hook hooks.Kind, subnet string)
}

// Request is one hook invocation.
type Request struct {
	Hook   hooks.Hook
	Env    []string // NAME=value pairs appended to the inherited environment
	Stdin  string
	Subnet string // for traces and logs
}

// Result is what a hook produced.
type Result struct {
	Stdout string // raw stdout (PreStartup's BackendData after trimming)
	Stderr string
}
