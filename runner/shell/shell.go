// Package shell runs hook commands in the embedded POSIX shell interpreter
// (mvdan.cc/sh/v3/interp) with no /bin/sh anywhere. Behaviour is layered as
// exec-handler middlewares, outermost first: trace, dry-run, timeout (with a
// process-group kill), and flexhook's own final exec last.
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
}

// Tracer receives trace events. Implementations must be safe for
// concurrent use.
type Tracer interface {
	Trace(ev TraceEvent)
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
