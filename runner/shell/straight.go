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
	"sync"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// A straight hook runs without the interpreter. Building a Runner, copying
// the whole environment into it after each Run, a pipe for the hook's
// stdin and `read` taking it a byte per system call cost more than the
// commands of a short hook on the fast path (a profile of vxlan's
// SubnetAdd: about 0.1 ms a hook, as much as the kernel's work). A hook
// made only of the forms below is run by runStraight instead: the same
// statements in the same order, its words expanded by the interpreter's
// own expand package with a configuration like the interpreter's, and
// every external command handed, with the same argv, directory,
// environment and streams, to the same exec middlewares in the same
// order. The trace, dry-run, the fast path, ownership and replace-existing
// see each command as they would under the interpreter. TestStraightParity
// and FuzzStraightParity run hooks both ways and compare what they did.
//
// The forms, and nothing else anywhere in the hook:
//   - statements separated by ; or newlines, and joined by && or ||; no
//     redirections, pipelines, !, & or compound commands;
//   - NAME=word and export NAME=word (several per statement);
//   - read NAME... (no options), before any command that could read the
//     hook's stdin;
//   - a command named by a plain literal that is no builtin, whose words
//     are literals, quotes and parameters ($NAME, ${NAME}, ${NAME%pat},
//     ${NAME:-word} and the like; none of the special or dynamic ones);
//   - command substitutions `echo WORDS`, `echo WORDS | command WORDS`
//     and `command WORDS`.

// straightSet caches, per parsed hook, whether it is straight.
type straightSet struct {
	mu sync.Mutex
	m  map[*syntax.File]bool
}

// maxStraightCache bounds the cache; a reloaded config parses new Files.
const maxStraightCache = 64

func (c *straightSet) is(f *syntax.File) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok, hit := c.m[f]
	if hit {
		return ok
	}
	ok = straight(f)
	if c.m == nil || len(c.m) >= maxStraightCache {
		c.m = map[*syntax.File]bool{}
	}
	c.m[f] = ok
	return ok
}

// straight reports whether f is made only of the forms runStraight runs.
func straight(f *syntax.File) bool {
	var c straightCheck
	for _, st := range f.Stmts {
		if !c.stmt(st) {
			return false
		}
	}
	return true
}

// straightCheck walks a hook in the order it runs; stdinUsed is set once a
// command that inherits the hook's stdin has been seen (a later `read`
// would have to read what that command left in the pipe).
type straightCheck struct {
	stdinUsed bool
	inSubst   bool // no substitution inside a substitution
}

func (c *straightCheck) stmt(st *syntax.Stmt) bool {
	if st == nil || st.Cmd == nil || st.Negated || st.Background || st.Coprocess || st.Disown || len(st.Redirs) > 0 {
		return false
	}
	switch cm := st.Cmd.(type) {
	case *syntax.BinaryCmd:
		return (cm.Op == syntax.AndStmt || cm.Op == syntax.OrStmt) && c.stmt(cm.X) && c.stmt(cm.Y)
	case *syntax.DeclClause:
		if cm.Variant == nil || cm.Variant.Value != "export" || len(cm.Args) == 0 {
			return false
		}
		for _, as := range cm.Args {
			if !c.assign(as) {
				return false
			}
		}
		return true
	case *syntax.CallExpr:
		if len(cm.Args) == 0 {
			for _, as := range cm.Assigns {
				if !c.assign(as) {
					return false
				}
			}
			return len(cm.Assigns) > 0
		}
		if len(cm.Assigns) > 0 {
			return false
		}
		name := plainName(cm.Args[0])
		switch {
		case name == "read":
			if c.stdinUsed || len(cm.Args) < 2 {
				return false
			}
			for _, w := range cm.Args[1:] {
				if n := w.Lit(); !syntax.ValidName(n) || !assignable(n) {
					return false
				}
			}
			return true
		case name == "" || interp.IsBuiltin(name):
			return false
		}
		if !c.words(cm.Args[1:]) {
			return false
		}
		c.stdinUsed = true
		return true
	}
	return false
}

func (c *straightCheck) assign(as *syntax.Assign) bool {
	return as != nil && as.Name != nil && syntax.ValidName(as.Name.Value) && assignable(as.Name.Value) &&
		!as.Append && !as.Naked && as.Index == nil && as.Array == nil && as.Value != nil && c.word(as.Value)
}

func (c *straightCheck) words(ws []*syntax.Word) bool {
	for _, w := range ws {
		if !c.word(w) {
			return false
		}
	}
	return true
}

func (c *straightCheck) word(w *syntax.Word) bool {
	if w == nil {
		return false
	}
	for _, p := range w.Parts {
		if !c.part(p, false) {
			return false
		}
	}
	return true
}

func (c *straightCheck) part(p syntax.WordPart, quoted bool) bool {
	switch p := p.(type) {
	case *syntax.Lit:
		return true
	case *syntax.SglQuoted:
		return !quoted && !p.Dollar
	case *syntax.DblQuoted:
		if quoted || p.Dollar {
			return false
		}
		for _, q := range p.Parts {
			if !c.part(q, true) {
				return false
			}
		}
		return true
	case *syntax.ParamExp:
		return c.param(p)
	case *syntax.CmdSubst:
		if c.inSubst {
			return false
		}
		c.inSubst = true
		defer func() { c.inSubst = false }()
		return c.subst(p)
	}
	return false
}

func (c *straightCheck) param(p *syntax.ParamExp) bool {
	if p.Param == nil || p.Flags != nil || p.Excl || p.Length || p.Width || p.IsSet ||
		p.Split != syntax.OptUnset || p.GlobSubst != syntax.OptUnset || p.RcExpand != syntax.OptUnset ||
		p.NestedParam != nil || p.Index != nil || len(p.Modifiers) > 0 || p.Slice != nil || p.Repl != nil ||
		p.Names != 0 || !syntax.ValidName(p.Param.Value) || dynamicVar(p.Param.Value) {
		return false
	}
	if p.Exp == nil {
		return true
	}
	switch p.Exp.Op {
	case syntax.RemSmallSuffix, syntax.RemLargeSuffix, syntax.RemSmallPrefix, syntax.RemLargePrefix,
		syntax.AlternateUnset, syntax.AlternateUnsetOrNull, syntax.DefaultUnset, syntax.DefaultUnsetOrNull:
		return p.Exp.Word == nil || c.word(p.Exp.Word)
	}
	return false
}

// subst: `echo WORDS`, `echo WORDS | command WORDS` or `command WORDS`.
func (c *straightCheck) subst(cs *syntax.CmdSubst) bool {
	if cs.TempFile || cs.ReplyVar || len(cs.Stmts) != 1 {
		return false
	}
	st := cs.Stmts[0]
	if st.Negated || st.Background || st.Coprocess || st.Disown || len(st.Redirs) > 0 {
		return false
	}
	switch cm := st.Cmd.(type) {
	case *syntax.CallExpr:
		name, ok := c.simpleCall(cm)
		if ok && name != "echo" {
			c.stdinUsed = true
		}
		return ok
	case *syntax.BinaryCmd:
		if cm.Op != syntax.Pipe || !c.plainStmt(cm.X) || !c.plainStmt(cm.Y) {
			return false
		}
		x, _ := cm.X.Cmd.(*syntax.CallExpr)
		y, _ := cm.Y.Cmd.(*syntax.CallExpr)
		if x == nil || y == nil {
			return false
		}
		xn, ok := c.simpleCall(x)
		if !ok || xn != "echo" {
			return false
		}
		yn, ok := c.simpleCall(y)
		return ok && yn != "echo"
	}
	return false
}

func (c *straightCheck) plainStmt(st *syntax.Stmt) bool {
	return st != nil && !st.Negated && !st.Background && !st.Coprocess && !st.Disown && len(st.Redirs) == 0
}

// simpleCall: echo, or a command that is no builtin, with plannable words.
func (c *straightCheck) simpleCall(cm *syntax.CallExpr) (string, bool) {
	if len(cm.Assigns) > 0 || len(cm.Args) == 0 {
		return "", false
	}
	name := plainName(cm.Args[0])
	if name == "" || name != "echo" && interp.IsBuiltin(name) {
		return "", false
	}
	return name, c.words(cm.Args[1:])
}

// plainName is w's value when w is one literal that names a command as
// it stands: no expansion, quoting, globbing or tilde.
func plainName(w *syntax.Word) string {
	name := w.Lit()
	if name == "" {
		return ""
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.', r == '+':
		default:
			return ""
		}
	}
	return name
}

// dynamicVar: parameters the interpreter computes on each use.
func dynamicVar(name string) bool {
	switch name {
	case "PPID", "RANDOM", "SRANDOM", "DIRSTACK",
		"LINENO": // expand works it out from the word's position
		return true
	}
	return false
}

// assignable: names a straight hook may set. The interpreter sets or
// computes the others itself (or holds them read-only).
func assignable(name string) bool {
	switch name {
	case "IFS", "PWD", "OLDPWD", "OPTIND", "UID", "EUID", "GID", "HOME", "PATH":
		return false
	}
	return !dynamicVar(name)
}

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
			vr := r.env.Get(as.Name.Value)
			vr.Set, vr.Kind, vr.Str = true, expand.String, r.literal(as.Value)
			vr.Exported = true
			r.env.set(as.Name.Value, vr)
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
			vr := r.env.Get(as.Name.Value)
			vr.Set, vr.Kind, vr.Str = true, expand.String, r.literal(as.Value)
			r.env.set(as.Name.Value, vr)
		}
		if r.exit.code == 0 {
			// The status of the last substitution, as a shell's.
			r.exit = r.lastExpand
		}
		return
	}
	r.exit.fromHandler(r.exec(ctx, fields, r.hookStdin(), r.out))
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
		var f *os.File
		var stop func()
		var err error
		if r.data == "" && r.hadStdin {
			// What read left is nothing, but it is still the hook's
			// pipe, not /dev/null (a command may look).
			f, stop, err = emptyPipe()
		} else {
			f, stop, err = r.st.s.feedStdin(r.data)
		}
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

// emptyPipe is a pipe with nothing in it and its write end closed.
func emptyPipe() (*os.File, func(), error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "|0")
	var once sync.Once
	return f, func() { once.Do(func() { f.Close() }) }, nil
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
func simpleParam(p *syntax.ParamExp) bool {
	return p.Exp == nil && p.Param != nil && !p.Excl && !p.Length && !p.Width && !p.IsSet && p.Flags == nil &&
		p.Index == nil && p.Slice == nil && p.Repl == nil && p.Names == 0 && p.NestedParam == nil &&
		len(p.Modifiers) == 0 && p.Split == syntax.OptUnset && p.GlobSubst == syntax.OptUnset && p.RcExpand == syntax.OptUnset
}

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
