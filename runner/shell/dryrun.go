package shell

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/puretools"
)

// dryRunMW is the one place where dry-run decides what runs: pure text
// tools run (possibly with a sandbox flag added), tee copies stdin to
// stdout, everything else is skipped with status 0 and no output.
func (st *runState) dryRunMW(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		hc := ioOf(ctx)
		if argv, ok := puretools.PureArgv(args, func(name string) string {
			p, err := interp.LookPathDir(hc.Dir, hc.Env, name)
			if err != nil {
				return ""
			}
			return absPath(hc.Dir, p)
		}); ok {
			return next(ctx, argv)
		}
		switch {
		case filepath.Base(args[0]) == "tee" && hc.Stdin != nil:
			// tee shows its input without writing the files.
			_, _ = io.Copy(hc.Stdout, hc.Stdin)
		case st.piped(hc.Stdin):
			// Consume what is piped in, as the real command would, so the
			// stages of a pipeline end, and are traced, in their order
			// (`wg genkey | tee privatekey | wg pubkey`). Bounded, so an
			// endless writer cannot hold the hook.
			_, _ = io.CopyN(io.Discard, hc.Stdin, maxDrain)
		}
		return errSkipped
	}
}

// maxDrain bounds how much piped input a skipped command consumes.
const maxDrain = 1 << 20

// piped reports whether r is input the hook's own commands feed to this
// one (a pipe or a redirected file), not the hook's stdin, which a later
// `read` still needs.
func (st *runState) piped(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && f != nil && f != st.stdin
}

// open is the interpreter's open handler, in both modes: reads are
// allowed; /dev/stdout and /dev/stderr mean the hook's own streams; files
// are created 0600; an output redirection to a file is traced and, in
// dry-run, goes to a discarding writer so no file is created or changed.
func (st *runState) open(ctx context.Context, path string, flag int, perm os.FileMode) (io.ReadWriteCloser, error) {
	hc := interp.HandlerCtx(ctx)
	write := flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_TRUNC) != 0
	if !write {
		return os.OpenFile(absPath(hc.Dir, path), flag, perm)
	}
	switch path {
	case "/dev/null":
		return os.OpenFile(path, flag, 0)
	case "/dev/stdout":
		return nopCloser{hc.Stdout}, nil
	case "/dev/stderr":
		return nopCloser{hc.Stderr}, nil
	}
	op := ">"
	if flag&os.O_APPEND != 0 {
		op = ">>"
	}
	st.traceRedirect(op, path)
	if st.s.dryRun {
		return nopCloser{io.Discard}, nil
	}
	return os.OpenFile(absPath(hc.Dir, path), flag, 0o600)
}

// nopCloser is a write-only ReadWriteCloser whose Close does nothing.
type nopCloser struct{ io.Writer }

func (nopCloser) Read([]byte) (int, error) { return 0, io.EOF }
func (nopCloser) Close() error             { return nil }
