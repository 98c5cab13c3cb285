package shell

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/netcmd"
)

// replaceHold bounds the stderr the replace-existing middleware holds back
// while it waits to see whether an add failed because its object exists.
const replaceHold = 64 << 10

// replaceOrConverge runs c, a command netcmd read, with replace-existing
// (when on): a del that fails only because its object is absent counts
// as done; an add that fails because its object exists runs again as
// replace, when the table lets owner replace it.
//
// The failed add and the replace are two commands of the chain below
// (this middleware is outside trace): each is traced in order with its
// own status and duration, and dry-run and wireguard see each as they
// would any command.
func (st *runState) replaceOrConverge(ctx context.Context, next interp.ExecHandlerFunc, args []string, c *netcmd.Cmd, owner string) error {
	if !st.s.mw.replaceExisting {
		return next(ctx, args)
	}
	if c.Verb == netcmd.Del && converges(c) {
		return st.deleteConverges(ctx, next, args, c)
	}
	repl, ok := c.AsReplace()
	if !ok {
		return next(ctx, args)
	}
	text, err := failedFor(ctx, next, args, objectExists)
	if text == "" {
		return err
	}
	if cerr := st.claim(owner, c, netcmd.Replace); cerr != nil {
		_, _ = stderrOf(ctx).Write([]byte(text))
		return cerr
	}
	st.s.log.Info("add: object exists; running replace", "object", string(c.Objects[0]),
		"hook", st.hook.String(), "subnet", st.subnet, "stderr", strings.TrimSpace(text))
	return next(ctx, repl)
}

// converges reports whether a del of c's objects that finds them absent
// counts as done: routes, addresses, neighbours and fdb entries.
func converges(c *netcmd.Cmd) bool {
	switch c.Objects[0].Kind() {
	case "route", "addr", "neigh", "fdb":
		return true
	}
	return false
}

// deleteConverges runs a del; when it fails only because its object is
// already absent, that counts as success: what a Remove wanted gone is
// gone (a lease that vanished while the daemon was down, a Remove
// retried after a crash). The failed del is traced with its status, and
// the convergence logged at Info.
func (st *runState) deleteConverges(ctx context.Context, next interp.ExecHandlerFunc, args []string, c *netcmd.Cmd) error {
	text, err := failedFor(ctx, next, args, objectAbsent)
	if text == "" {
		return err
	}
	st.s.log.Info("del: object already absent; counted as removed", "object", string(c.Objects[0]),
		"hook", st.hook.String(), "subnet", st.subnet, "stderr", strings.TrimSpace(text))
	return nil
}

// failedFor runs args holding its stderr back. When the command failed
// with an exit status and all its stderr says why (reason matches), it
// returns that stderr, not yet written anywhere; otherwise "" and the
// command's error, its stderr passed on.
func failedFor(ctx context.Context, next interp.ExecHandlerFunc, args []string, reason func(string) bool) (string, error) {
	held := &holdWriter{dst: stderrOf(ctx), max: replaceHold}
	err := next(withStderr(ctx, held), args)
	var status interp.ExitStatus
	text, whole := held.text()
	if err == nil || ctx.Err() != nil || !errors.As(err, &status) || !whole || !reason(text) || text == "" {
		held.release()
		return "", err
	}
	return text, err
}

// objectAbsent reports whether a del failed because its object is not
// there: ESRCH for routes ("No such process"; "FIB table does not exist"
// when the table is empty), ENOENT for neighbours and fdb entries, and ip
// addr's "Address not found" (EADDRNOTAVAIL on older kernels). A missing
// device ("Cannot find device") is not: the hook's own state is wrong.
func objectAbsent(stderr string) bool {
	s := strings.ToLower(stderr)
	for _, m := range []string{"no such process", "fib table does not exist", "no such file or directory",
		"address not found", "cannot assign requested address"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// objectExists reports whether an add failed because its object is
// already there: EEXIST ("RTNETLINK answers: File exists" from ip route,
// ip neigh and bridge fdb) or ip addr's "Error: ipv4: Address already
// assigned." ("ipv6: address already assigned" for IPv6).
func objectExists(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "file exists") || strings.Contains(s, "address already assigned")
}

// stderrOf is where a command's stderr goes: a writer a middleware put in
// ctx, else the interpreter's (which honours the command's redirections).
func stderrOf(ctx context.Context) io.Writer {
	if w := callOf(ctx).stderr; w != nil {
		return w
	}
	return ioOf(ctx).Stderr
}

// holdWriter holds up to max bytes back from dst until release; past max
// it gives up holding, writes what it held and passes everything through.
// Nothing is lost either way. Safe for concurrent use.
type holdWriter struct {
	mu      sync.Mutex
	dst     io.Writer
	max     int
	buf     bytes.Buffer
	passing bool
}

func (w *holdWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.passing && w.buf.Len()+len(p) <= w.max {
		return w.buf.Write(p)
	}
	if !w.passing {
		w.passing = true
		_, _ = w.dst.Write(w.buf.Bytes())
		w.buf.Reset()
	}
	_, _ = w.dst.Write(p) // like the interpreter's stderr, never fail the child
	return len(p), nil
}

// text returns what is held, and whether that is all that was written.
func (w *holdWriter) text() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), !w.passing
}

// release writes what is held to dst.
func (w *holdWriter) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.dst.Write(w.buf.Bytes())
	w.buf.Reset()
}
