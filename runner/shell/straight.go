package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// A straight hook runs without the interpreter. Building a Runner, copying
// the whole environment into it after each Run, a pipe for the hook's
// stdin and `read` taking it a byte per system call cost more than the
// commands of a short hook on the fast path (a profile of vxlan's
// SubnetAdd: about 0.1 ms a hook, as much as the kernel's work). A hook
// made only of the forms straight_forms.go lists is run by runStraight
// instead: the same
// statements in the same order, its words expanded by the interpreter's
// own expand package with a configuration like the interpreter's, and
// every external command handed, with the same argv, directory,
// environment and streams, to the same exec middlewares in the same
// order. The trace, dry-run, the fast path, ownership and replace-existing
// see each command as they would under the interpreter. TestStraightParity
// and FuzzStraightParity run hooks both ways and compare what they did.

// straightRun is one run of a straight hook.
type straightRun struct {
	st    *runState
	chain interp.ExecHandlerFunc
	env   *straightEnv
	cfg   *expand.Config
	// ctx is the hook's, for the substitutions expand runs (its
	// callback takes none).
	ctx context.Context

	data     string     // the hook's stdin not yet taken by read
	hadStdin bool       // the hook was given some (so its stdin is a pipe)
	stdin    *lazyStdin // the hook's stdin for commands, made at first use
	stop     func()
	out      io.Writer
	errw     io.Writer

	exit       straightExit
	lastExpand straightExit
}

// straightExit is a statement's outcome as the interpreter keeps it: a
// status, the handler's error, and whether that error ends the hook.
type straightExit struct {
	code  uint8
	err   error
	fatal bool
}

func (e *straightExit) fromHandler(err error) {
	var es interp.ExitStatus
	switch {
	case err == nil:
	case errors.As(err, &es):
		e.code, e.err = uint8(es), err
	default:
		e.fatal, e.err = true, err
		if e.code == 0 {
			e.code = 1
		}
	}
}

// runStraight runs a straight hook (see straight) and returns what the
// interpreter's Run would.
func (st *runState) runStraight(ctx context.Context, f *syntax.File, env expand.Environ, data string, stdout, stderr io.Writer) error {
	r := &straightRun{
		st: st, ctx: ctx, data: data, hadStdin: data != "", out: stdout, errw: stderr,
		env:  newStraightEnv(env, st.s.dir),
		stop: func() {},
	}
	defer func() { r.stop() }()
	r.chain = st.execCmd
	mws := st.middlewares()
	for i := len(mws) - 1; i >= 0; i-- {
		r.chain = mws[i](r.chain)
	}
	r.cfg = r.config()
	for _, s := range f.Stmts {
		r.stmt(ctx, s)
	}
	if r.exit.err != nil {
		return r.exit.err
	}
	if r.exit.code != 0 {
		return interp.ExitStatus(r.exit.code)
	}
	return nil
}

// config is an expand configuration as the interpreter's (globbing on,
// unset parameters empty). A substitution expands its words with one of
// its own, as the interpreter's subshell does: expand reuses a config's
// buffers, and the outer expansion is still using them.
func (r *straightRun) config() *expand.Config {
	return &expand.Config{
		Env:      r.env,
		CmdSubst: r.cmdSubst,
		ReadDir2: func(s string) ([]fs.DirEntry, error) { return os.ReadDir(s) },
	}
}

func (r *straightRun) stmt(ctx context.Context, s *syntax.Stmt) {
	if r.exit.fatal {
		return
	}
	if err := ctx.Err(); err != nil {
		r.exit = straightExit{}
		r.exit.fromHandler(err)
		return
	}
	r.exit = straightExit{}
	switch cm := s.Cmd.(type) {
	case *syntax.BinaryCmd:
		r.stmt(ctx, cm.X)
		if r.exit.fatal {
			return
		}
		if (r.exit.code == 0) == (cm.Op == syntax.AndStmt) {
			r.stmt(ctx, cm.Y)
		}
	case *syntax.DeclClause: // export
		for _, as := range cm.Args {
			r.assign(as, true)
		}
	case *syntax.CallExpr:
		r.call(ctx, cm)
	}
}

func (r *straightRun) call(ctx context.Context, cm *syntax.CallExpr) {
	r.lastExpand = straightExit{}
	if len(cm.Args) > 0 && cm.Args[0].Lit() == "read" {
		r.read(cm.Args[1:])
		return
	}
	fields := r.fields(cm.Args...)
	if len(fields) == 0 { // assignments only (or words that expanded to none)
		for _, as := range cm.Assigns {
			r.assign(as, false)
		}
		if r.exit.code == 0 {
			// The status of the last substitution, as a shell's.
			r.exit = r.lastExpand
		}
		return
	}
	r.exit.fromHandler(r.exec(ctx, fields, r.hookStdin(), r.out))
}

// assign sets as's variable to its value, keeping what else the
// variable was (exported, say), as the interpreter's assignment does;
// export exports it too.
func (r *straightRun) assign(as *syntax.Assign, export bool) {
	vr := r.env.Get(as.Name.Value)
	vr.Set, vr.Kind, vr.Str = true, expand.String, r.literal(as.Value)
	vr.Exported = vr.Exported || export
	r.env.set(as.Name.Value, vr)
}

// read is the read builtin without options, as the interpreter's: a line
// up to a newline, backslash-newline joining lines, split by IFS.
func (r *straightRun) read(names []*syntax.Word) {
	var line []byte
	esc, eof := false, true
	i := 0
	for ; i < len(r.data); i++ {
		b := r.data[i]
		if b == '\n' && !esc {
			eof = false
			i++
			break
		}
		switch {
		case b == '\\':
			line = append(line, b)
			esc = !esc
		case b == '\n': // after a backslash: the line goes on
			line = line[:len(line)-1]
			esc = false
		default:
			line = append(line, b)
			esc = false
		}
	}
	r.data = r.data[i:]
	values := expand.ReadFields(r.cfg, string(line), len(names), false)
	for i, w := range names {
		val := ""
		if i < len(values) {
			val = values[i]
		}
		r.env.set(w.Lit(), expand.Variable{Set: true, Kind: expand.String, Str: val})
	}
	if eof {
		r.exit.code = 1
	}
}

// hookStdin is what commands read as the hook's stdin: what read left,
// in a pipe made when a command first reads it or is started with it
// (a command done in the daemon never is).
func (r *straightRun) hookStdin() io.Reader {
	if r.stdin == nil {
		r.stdin = &lazyStdin{r: r}
	}
	return r.stdin
}

// lazyStdin is a straight hook's stdin before its pipe is made.
type lazyStdin struct {
	r *straightRun
	f *os.File
}

func (l *lazyStdin) Read(p []byte) (int, error) { return l.file().Read(p) }

// file makes the pipe (once; the commands of a straight hook run one at
// a time).
func (l *lazyStdin) file() *os.File {
	if l.f == nil {
		r := l.r
		// A hook given stdin has a pipe even once read took all of it,
		// as under the interpreter (a command may look).
		feed := r.st.s.feedStdin
		if r.hadStdin {
			feed = pipeStdin
		}
		f, stop, err := feed(r.data)
		if err != nil {
			fmt.Fprintf(r.errw, "stdin: %v\n", err)
			f, stop, _ = r.st.s.feedStdin("")
		}
		l.f, r.stop = f, stop
		r.st.stdin = f // the hook's own stdin, which dry-run does not drain
		r.data = ""
	}
	return l.f
}

// stdinFile is r as a command is started with it: a straight hook's
// stdin becomes its pipe.
func stdinFile(r io.Reader) io.Reader {
	if l, ok := r.(*lazyStdin); ok {
		return l.file()
	}
	return r
}

// exec hands argv to the exec middlewares with the hook's directory and
// environment and the given streams.
func (r *straightRun) exec(ctx context.Context, argv []string, stdin io.Reader, stdout io.Writer) error {
	hio := &cmdIO{Dir: r.st.s.dir, Env: r.env, Stdin: stdin, Stdout: stdout, Stderr: r.errw}
	return r.chain(context.WithValue(ctx, callKey{}, callState{io: hio}), argv)
}

// fields is expand.Fields of ws, with words of the plainest kinds (see
// quickFields) taken without it; its error drops every field, as
// expand's does.
func (r *straightRun) fields(ws ...*syntax.Word) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		if fs, ok := r.quickFields(w, out); ok {
			out = fs
			continue
		}
		fs, err := expand.Fields(r.cfg, w)
		if err != nil {
			r.expandErr(err)
			return nil
		}
		out = append(out, fs...)
	}
	return out
}

func (r *straightRun) literal(w *syntax.Word) string {
	if s, ok := r.quickLiteral(w); ok {
		return s
	}
	s, err := expand.Literal(r.cfg, w)
	r.expandErr(err)
	return s
}

// quickFields appends w's fields to out when w is a literal with nothing
// to expand, 'quoted', "$NAME" or $NAME whose value needs no globbing:
// the fields expand would give (IFS is always the default in a straight
// hook). ok is false for anything else.
func (r *straightRun) quickFields(w *syntax.Word, out []string) ([]string, bool) {
	if len(w.Parts) != 1 {
		return out, false
	}
	switch p := w.Parts[0].(type) {
	case *syntax.Lit:
		if strings.ContainsAny(p.Value, plainUnsafe) {
			return out, false // escapes, globs, braces, tilde
		}
		return append(out, p.Value), true
	case *syntax.SglQuoted:
		return append(out, p.Value), !p.Dollar
	case *syntax.DblQuoted:
		if v, ok := r.quickParam(p); ok {
			return append(out, v), true
		}
	case *syntax.ParamExp:
		if !simpleParam(p) {
			return out, false
		}
		v := r.env.Get(p.Param.Value).String()
		if strings.ContainsAny(v, `*?[\`) {
			return out, false // globbing
		}
		for f := range strings.FieldsFuncSeq(v, isDefaultIFS) {
			out = append(out, f)
		}
		return out, true
	}
	return out, false
}

// quickLiteral is w's value, as an assignment's, for the words
// quickFields takes and $NAME.
func (r *straightRun) quickLiteral(w *syntax.Word) (string, bool) {
	if len(w.Parts) != 1 {
		return "", false
	}
	switch p := w.Parts[0].(type) {
	case *syntax.Lit:
		return p.Value, !strings.ContainsAny(p.Value, plainUnsafe)
	case *syntax.SglQuoted:
		return p.Value, !p.Dollar
	case *syntax.DblQuoted:
		return r.quickParam(p)
	case *syntax.ParamExp:
		if simpleParam(p) {
			return r.env.Get(p.Param.Value).String(), true
		}
	}
	return "", false
}

// quickParam is the value of "$NAME".
func (r *straightRun) quickParam(q *syntax.DblQuoted) (string, bool) {
	if q.Dollar || len(q.Parts) != 1 {
		return "", false
	}
	p, ok := q.Parts[0].(*syntax.ParamExp)
	if !ok || !simpleParam(p) {
		return "", false
	}
	return r.env.Get(p.Param.Value).String(), true
}

// plainUnsafe are the characters that make a literal more than its text
// to expand: escapes, globs, braces, tilde.
const plainUnsafe = `\*?[{~`

// simpleParam: $NAME or ${NAME}, nothing more (straight has checked the
// name).
func simpleParam(p *syntax.ParamExp) bool { return p.Exp == nil && bareParam(p) }

func isDefaultIFS(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }

// expandErr reports an expansion's error as the interpreter does: on
// stderr, and the command goes on.
func (r *straightRun) expandErr(err error) {
	if err != nil {
		fmt.Fprintln(r.errw, err.Error())
	}
}

// cmdSubst runs one of the substitutions straight allows, writing its
// output to w; its status is the statement's when it assigns only.
func (r *straightRun) cmdSubst(w io.Writer, cs *syntax.CmdSubst) error {
	outer := r.cfg
	r.cfg = r.config()
	defer func() { r.cfg = outer }()
	var sub straightExit
	switch cm := cs.Stmts[0].Cmd.(type) {
	case *syntax.CallExpr:
		switch fields := r.fields(cm.Args...); {
		case len(fields) > 0 && cm.Args[0].Lit() == "echo":
			_, _ = io.WriteString(w, echo(r.cfg, fields[1:]))
		case len(fields) > 0:
			sub.fromHandler(r.exec(r.ctx, fields, r.hookStdin(), w))
		}
	case *syntax.BinaryCmd: // echo WORDS | command WORDS
		x, y := cm.X.Cmd.(*syntax.CallExpr), cm.Y.Cmd.(*syntax.CallExpr)
		in := ""
		if fields := r.fields(x.Args...); len(fields) > 0 {
			in = echo(r.cfg, fields[1:])
		}
		if fields := r.fields(y.Args...); len(fields) > 0 {
			sub.fromHandler(r.exec(r.ctx, fields, strings.NewReader(in), w))
		}
	}
	r.lastExpand = sub
	if sub.fatal {
		return sub.err // expand's error; reported by expandErr, as the interpreter does
	}
	return nil
}

// echo is the interpreter's echo builtin's output for args.
func echo(cfg *expand.Config, args []string) string {
	newline, doExpand := true, false
opts:
	for len(args) > 0 {
		switch args[0] {
		case "-n":
			newline = false
		case "-e":
			doExpand = true
		case "-E":
		default:
			break opts
		}
		args = args[1:]
	}
	var b strings.Builder
	for i, arg := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if doExpand {
			arg, _, _ = expand.Format(cfg, arg, nil)
		}
		b.WriteString(arg)
	}
	if newline {
		b.WriteByte('\n')
	}
	return b.String()
}

// straightEnv is the interpreter's variables over its environment: a
// set replaces the whole variable, and Each gives the environment's first,
// then the hook's own (so a child's environment is built alike).
type straightEnv struct {
	parent expand.Environ
	values map[string]expand.Variable
}

// newStraightEnv is env as the interpreter's Reset leaves it for a hook
// run in dir.
func newStraightEnv(env expand.Environ, dir string) *straightEnv {
	e := &straightEnv{parent: env, values: make(map[string]expand.Variable, 8)}
	if !e.Get("HOME").IsSet() {
		home, _ := os.UserHomeDir()
		e.set("HOME", expand.Variable{Set: true, Kind: expand.String, Str: home})
	}
	for _, id := range []struct {
		name string
		val  int
	}{{"UID", os.Getuid()}, {"EUID", os.Geteuid()}, {"GID", os.Getgid()}} {
		if !e.Get(id.name).IsSet() {
			e.set(id.name, expand.Variable{Set: true, Kind: expand.String, ReadOnly: true, Str: strconv.Itoa(id.val)})
		}
	}
	e.set("PWD", expand.Variable{Set: true, Kind: expand.String, Str: dir})
	e.set("IFS", expand.Variable{Set: true, Kind: expand.String, Str: " \t\n"})
	e.set("OPTIND", expand.Variable{Set: true, Kind: expand.String, Str: "1"})
	return e
}

func (e *straightEnv) Get(name string) expand.Variable {
	if v, ok := e.values[name]; ok {
		return v
	}
	return e.parent.Get(name)
}

func (e *straightEnv) Each(f func(name string, vr expand.Variable) bool) {
	stopped := false
	e.parent.Each(func(name string, vr expand.Variable) bool {
		if !f(name, vr) {
			stopped = true
		}
		return !stopped
	})
	if stopped {
		return
	}
	for name, vr := range e.values {
		if !f(name, vr) {
			return
		}
	}
}

func (e *straightEnv) set(name string, vr expand.Variable) { e.values[name] = vr }
