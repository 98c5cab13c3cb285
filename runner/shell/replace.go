package shell

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"mvdan.cc/sh/v3/interp"
)

// replaceHold bounds the stderr the replace-existing middleware holds back
// while it waits to see whether an add failed because its object exists.
const replaceHold = 64 << 10

// replaceExisting is the replace-existing middleware (see [ReplaceExisting]):
// when `ip route|neigh|addr add` or `bridge fdb add` fails because its
// object already exists, it runs the same argv with add replaced by
// replace, and the hook goes on with the replace's status; when a del of
// them fails because its object is absent, the del counts as done.
//
// It is the outermost middleware, outside trace, so that the failed add
// and the replace are two commands of the chain below: each is traced in
// order with its own status and duration, and dry-run and wireguard see
// each as they would any command. In dry-run it is off: dry-run sees and
// decides on the original command, and nothing that could fail runs.
func (st *runState) replaceExisting(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.replaceExisting || st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		if object, ok := DeleteArgv(args); ok {
			return st.deleteConverges(ctx, next, args, object)
		}
		repl, object, ok := ReplaceArgv(args)
		if !ok {
			return next(ctx, args)
		}
		text, err := failedFor(ctx, next, args, objectExists)
		if text == "" {
			return err
		}
		st.s.log.Info(object+" add: object exists; running replace",
			"hook", st.hook.String(), "subnet", st.subnet, "stderr", strings.TrimSpace(text))
		return next(ctx, repl)
	}
}

// deleteConverges runs a del of ip route|neigh|addr or bridge fdb; when it
// fails only because its object is already absent, that counts as
// success: what a Remove wanted gone is gone (a lease that vanished while
// the daemon was down, a Remove retried after a crash). The failed del is
// traced with its status, and the convergence logged at Info.
func (st *runState) deleteConverges(ctx context.Context, next interp.ExecHandlerFunc, args []string, object string) error {
	text, err := failedFor(ctx, next, args, objectAbsent)
	if text == "" {
		return err
	}
	st.s.log.Info(object+" del: object already absent; counted as removed",
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

// DeleteArgv reports whether argv deletes a route, neighbour, address or
// fdb entry (ip [-4|-6] route|neigh|addr del|delete ..., bridge fdb del
// ...; the abbreviations iproute2 accepts) and names the object, as
// ReplaceArgv does for add.
func DeleteArgv(argv []string) (string, bool) {
	i, object, ok := objectOf(argv)
	if !ok || i >= len(argv) || !abbrev(argv[i], "delete") {
		return "", false
	}
	return object, true
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

// ReplaceArgv returns argv with its add verb replaced by replace, and the
// object ("ip route", "ip neigh", "ip addr" or "bridge fdb"), when argv is
// one of
//
//	ip [-4|-6] route|r|ro|... add ...
//	ip [-4|-6] neighbor|neighbour|neigh|n|... add ...
//	ip [-4|-6] address|addr|a|... add ...
//	bridge fdb|f|fd add ...
//
// with the prefix abbreviations iproute2 resolves to these objects and to
// add (ip r a, ip n a, ip a a, bridge f a). argv[0] may be a path to ip or
// bridge. Anything else does not match: other verbs (del, replace, ...),
// other objects (link, rule, ...), and any other global option (-n NETNS,
// -batch FILE, -force, ...), so a batch file is never rewritten blindly.
func ReplaceArgv(argv []string) ([]string, string, bool) {
	i, object, ok := objectOf(argv)
	if !ok || i >= len(argv) || !abbrev(argv[i], "add") {
		return nil, "", false
	}
	out := slices.Clone(argv)
	out[i] = "replace"
	return out, object, true
}

// objectOf parses `ip [-4|-6] OBJECT VERB ...` and `bridge fdb VERB ...`
// for the objects ReplaceArgv and DeleteArgv handle, returning the index
// of VERB and the object's name.
func objectOf(argv []string) (int, string, bool) {
	if len(argv) < 3 {
		return 0, "", false
	}
	i := 1
	var object string
	switch filepath.Base(argv[0]) {
	case "ip":
		for i < len(argv) && (argv[i] == "-4" || argv[i] == "-6") {
			i++
		}
		if i >= len(argv) {
			return 0, "", false
		}
		// ip tries its objects in a fixed order and takes the first one the
		// word is a prefix of: address comes before addrlabel, route
		// before rule, neighbor before ntable and netns.
		switch w := argv[i]; {
		case abbrev(w, "route"):
			object = "ip route"
		case abbrev(w, "neighbor"), abbrev(w, "neighbour"):
			object = "ip neigh"
		case abbrev(w, "address"):
			object = "ip addr"
		default:
			return 0, "", false
		}
	case "bridge":
		if !abbrev(argv[i], "fdb") {
			return 0, "", false
		}
		object = "bridge fdb"
	default:
		return 0, "", false
	}
	return i + 1, object, true
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
	if w, ok := ctx.Value(stderrKey{}).(io.Writer); ok {
		return w
	}
	return interp.HandlerCtx(ctx).Stderr
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
