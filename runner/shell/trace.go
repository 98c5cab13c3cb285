package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/hooks"
)

// errSkipped is what the dry-run middleware returns for a command it did
// not run; trace, right outside it, records the skip and returns success.
var errSkipped = errors.New("skipped by dry-run")

// trace is the outermost exec middleware: one event per external command.
func (st *runState) trace(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if st.s.tracer == nil {
		if st.s.onCommand == nil && !st.s.dryRun {
			return next
		}
		return func(ctx context.Context, args []string) error {
			if st.s.onCommand != nil {
				st.s.onCommand(st.hook)
			}
			return skippedIsDone(next(ctx, args))
		}
	}
	return func(ctx context.Context, args []string) error {
		if st.s.onCommand != nil {
			st.s.onCommand(st.hook)
		}
		start := time.Now()
		err := next(ctx, args)
		skipped := errors.Is(err, errSkipped)
		if skipped {
			err = nil
		}
		ev := TraceEvent{
			Hook:     st.hook,
			Subnet:   st.subnet,
			Argv:     slices.Clone(args),
			Duration: time.Since(start),
			Skipped:  skipped,
		}
		ev.Status, ev.Err = statusOf(err)
		st.s.tracer.Trace(ev)
		return err
	}
}

// skippedIsDone turns a dry-run skip into success where nothing traces.
func skippedIsDone(err error) error {
	if errors.Is(err, errSkipped) {
		return nil
	}
	return err
}

// traceRedirect records an output redirection to a file.
func (st *runState) traceRedirect(op, path string) {
	if st.s.tracer == nil {
		return
	}
	st.s.tracer.Trace(TraceEvent{
		Hook:     st.hook,
		Subnet:   st.subnet,
		Argv:     []string{op, path},
		Skipped:  st.s.dryRun,
		Redirect: true,
	})
}

// statusOf splits a handler's result into an exit status and, for anything
// that is not a plain exit status (a kill at the deadline), an error.
func statusOf(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var es interp.ExitStatus
	if errors.As(err, &es) {
		return int(es), nil
	}
	return -1, err
}

// FormatArgv renders argv as a trace line body: the words joined with
// spaces, each quoted for Bash only when needed.
func FormatArgv(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i > 0 && plainWithEquals(w) {
			// '=' only makes an assignment of a command's first word:
			// base64 keys such as wireguard's stay readable.
			b.WriteString(w)
			continue
		}
		b.WriteString(quoteWord(w))
	}
	return b.String()
}

// plainWithEquals reports whether w needs quoting only for its '='.
func plainWithEquals(w string) bool {
	if !strings.Contains(w, "=") {
		return false
	}
	probe := strings.ReplaceAll(w, "=", "_")
	q, err := syntax.Quote(probe, syntax.LangBash)
	return err == nil && q == probe
}

func quoteWord(w string) string {
	q, err := syntax.Quote(w, syntax.LangBash)
	if err != nil { // a NUL byte, which no shell word can hold
		return strconv.Quote(w)
	}
	return q
}

// eventLine is the "+ ..." line of an event.
func eventLine(ev TraceEvent) string {
	if ev.Redirect && len(ev.Argv) == 2 {
		return "+ " + ev.Argv[0] + " " + quoteWord(ev.Argv[1])
	}
	return "+ " + FormatArgv(ev.Argv)
}

// NewTextTracer returns the tracer of dry-run and CLI output. Per hook it
// writes a header `# <HookName> SUBNET=<subnet>` (without ` SUBNET=...`
// when the subnet is empty), then one `+ <argv>` line per command, and
// `# exit status N` after a command that failed (`# error: ...` when it
// did not exit, e.g. killed at the deadline). Output redirections to files
// appear as `+ > path` or `+ >> path`. If events of another hook come in
// between, the header is repeated.
func NewTextTracer(w io.Writer) Tracer {
	return &textTracer{w: w}
}

type textTracer struct {
	mu     sync.Mutex
	w      io.Writer
	hook   hooks.Kind
	subnet string
	begun  bool
}

// Begin writes the hook's header.
func (t *textTracer) Begin(hook hooks.Kind, subnet string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.header(hook, subnet)
}

func (t *textTracer) header(hook hooks.Kind, subnet string) {
	t.hook, t.subnet, t.begun = hook, subnet, true
	if subnet == "" {
		fmt.Fprintf(t.w, "# %s\n", hook)
		return
	}
	fmt.Fprintf(t.w, "# %s SUBNET=%s\n", hook, subnet)
}

func (t *textTracer) Trace(ev TraceEvent) {
	var b strings.Builder
	b.WriteString(eventLine(ev))
	b.WriteByte('\n')
	switch {
	case ev.Err != nil:
		fmt.Fprintf(&b, "# error: %v\n", ev.Err)
	case ev.Status != 0:
		fmt.Fprintf(&b, "# exit status %d\n", ev.Status)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.begun || t.hook != ev.Hook || t.subnet != ev.Subnet {
		t.header(ev.Hook, ev.Subnet)
	}
	io.WriteString(t.w, b.String())
}

// NewSlogTracer returns the tracer of run --trace: one Info record per
// command, message `+ <argv>`, with attributes hook, subnet, status,
// duration, skipped=true for a dry-run command not run, and error when the
// command did not exit.
func NewSlogTracer(l *slog.Logger) Tracer {
	return slogTracer{l: l}
}

type slogTracer struct{ l *slog.Logger }

func (t slogTracer) Trace(ev TraceEvent) {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String("hook", ev.Hook.String()),
		slog.String("subnet", ev.Subnet),
		slog.Int("status", ev.Status),
		slog.Duration("duration", ev.Duration),
	)
	if ev.Skipped {
		attrs = append(attrs, slog.Bool("skipped", true))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("error", ev.Err.Error()))
	}
	t.l.LogAttrs(context.Background(), slog.LevelInfo, eventLine(ev), attrs...)
}
