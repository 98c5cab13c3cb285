package shell

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/interp"
)

// dryRunMW is the one place where dry-run decides what runs: pure text
// tools run (possibly with a sandbox flag added), tee copies stdin to
// stdout, everything else is skipped with status 0 and no output.
func (st *runState) dryRunMW(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.dryRun {
		return next
	}
	return func(ctx context.Context, args []string) error {
		hc := interp.HandlerCtx(ctx)
		if argv, ok := PureArgv(args, func(name string) string {
			p, err := interp.LookPathDir(hc.Dir, hc.Env, name)
			if err != nil {
				return ""
			}
			return p
		}); ok {
			return next(ctx, argv)
		}
		markSkipped(ctx)
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
		return nil
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

// pureTools change nothing outside their stdout (given the argument checks
// in PureArgv).
var pureTools = map[string]bool{
	"cut": true, "tr": true, "sed": true, "awk": true, "gawk": true, "mawk": true,
	"head": true, "tail": true, "grep": true, "printf": true, "echo": true,
	"basename": true, "dirname": true, "expr": true, "wc": true, "sort": true,
	"uniq": true, "seq": true, "true": true, "false": true, "test": true, "[": true,
	"md5sum": true, "sha256sum": true, "base64": true,
}

// PureArgv reports whether dry-run may really run argv because the command
// only computes text, and returns the argv to run: sed and gawk get
// --sandbox (no w/e/r commands, no system() or redirections; this needs GNU
// sed and gawk, as on Debian). mawk has no sandbox, hence the stricter
// program check for awk that is not gawk. look resolves
// a command name to its path ("" if not found); it tells whether awk is
// gawk. Not pure: any other command, a relative path such as ./cut, sed -i,
// awk -i inplace, an awk program (other than gawk's) that may write or run
// commands (it contains system, > or |, or comes from -f), sort -o or
// --compress-program, uniq with an output operand, tail -f.
func PureArgv(argv []string, look func(string) string) ([]string, bool) {
	name := argv[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		return nil, false
	}
	base := filepath.Base(name)
	if !pureTools[base] {
		return nil, false
	}
	args := argv[1:]
	switch base {
	case "sed":
		if !sedPure(args) {
			return nil, false
		}
		return sandboxed(argv), true
	case "awk", "gawk", "mawk":
		gawk := base == "gawk"
		if base == "awk" {
			if p := look(name); p != "" {
				if real, err := filepath.EvalSymlinks(p); err == nil {
					gawk = strings.HasPrefix(filepath.Base(real), "gawk")
				}
			}
		}
		if !awkPure(args, gawk) {
			return nil, false
		}
		if gawk {
			return sandboxed(argv), true
		}
	case "sort":
		if !sortPure(args) {
			return nil, false
		}
	case "uniq":
		if len(scanFlags(args, "fsw", nil, nil, nil)) > 1 {
			return nil, false
		}
	case "tail":
		if !tailPure(args) {
			return nil, false
		}
	}
	return argv, true
}

func sandboxed(argv []string) []string {
	out := make([]string, 0, len(argv)+1)
	return append(append(append(out, argv[0]), "--sandbox"), argv[1:]...)
}

func sedPure(args []string) bool {
	pure := true
	scanFlags(args, "efl", []string{"expression", "file", "line-length"},
		func(c byte, _ string) {
			if c == 'i' {
				pure = false
			}
		},
		func(name, _ string) {
			if name != "" && strings.HasPrefix("in-place", name) { // --in-place and its abbreviations
				pure = false
			}
		})
	return pure
}

func awkPure(args []string, gawk bool) bool {
	pure, haveProg := true, false
	checkProg := func(prog string) {
		haveProg = true
		if !gawk && (strings.ContainsAny(prog, ">|") || strings.Contains(prog, "system")) {
			pure = false
		}
	}
	operands := scanFlags(args, "fvFiIlEeW", []string{"file", "assign", "field-separator", "include", "load", "exec", "source"},
		func(c byte, val string) {
			switch c {
			case 'f', 'E':
				haveProg = true
				if !gawk {
					pure = false // cannot see the program
				}
			case 'i', 'l':
				pure = false // gawk -i inplace, -l extension
			case 'e':
				checkProg(val)
			case 'W':
				if strings.HasPrefix(val, "e") { // mawk -W exec file
					haveProg = true
					pure = false
				}
			}
		},
		func(name, val string) {
			switch name {
			case "file", "exec":
				haveProg = true
				if !gawk {
					pure = false
				}
			case "include", "load":
				pure = false
			case "source":
				checkProg(val)
			}
		})
	if !haveProg && len(operands) > 0 {
		checkProg(operands[0])
	}
	return pure
}

func sortPure(args []string) bool {
	pure := true
	scanFlags(args, "ktoST", []string{"key", "field-separator", "output", "buffer-size", "temporary-directory", "compress-program", "files0-from", "parallel", "random-source", "sort"},
		func(c byte, _ string) {
			if c == 'o' {
				pure = false
			}
		},
		func(name, _ string) {
			if name == "output" || name == "compress-program" {
				pure = false
			}
		})
	return pure
}

func tailPure(args []string) bool {
	pure := true
	scanFlags(args, "cns", []string{"bytes", "lines", "sleep-interval", "pid", "max-unchanged-stats"},
		func(c byte, _ string) {
			if c == 'f' || c == 'F' {
				pure = false
			}
		},
		func(name, _ string) {
			if strings.HasPrefix(name, "follow") || name == "retry" {
				pure = false
			}
		})
	return pure
}

// scanFlags walks GNU-style arguments (options may follow operands, "--"
// ends them). shortVal lists the short options that take a value (the rest
// of the cluster, or the next argument); longVal the long ones (after "="
// or the next argument). It calls short for every short option letter, long
// for every long option name, and returns the operands.
func scanFlags(args []string, shortVal string, longVal []string, short func(c byte, val string), long func(name, val string)) []string {
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(operands, args[i+1:]...)
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			if !hasVal && slices.Contains(longVal, name) && i+1 < len(args) {
				i++
				val = args[i]
			}
			if long != nil {
				long(name, val)
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				if strings.IndexByte(shortVal, c) < 0 {
					if short != nil {
						short(c, "")
					}
					continue
				}
				val := a[j+1:]
				if val == "" && i+1 < len(args) {
					i++
					val = args[i]
				}
				if short != nil {
					short(c, val)
				}
				break
			}
		default:
			operands = append(operands, a)
		}
	}
	return operands
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
