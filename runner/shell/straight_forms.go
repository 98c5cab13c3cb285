package shell

import (
	"sync"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Which hooks are straight (see straight.go).
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
	if !plainStmt(st) || st.Cmd == nil {
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
	if !bareParam(p) || !syntax.ValidName(p.Param.Value) || dynamicVar(p.Param.Value) {
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
	if !plainStmt(st) {
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
		if cm.Op != syntax.Pipe || !plainStmt(cm.X) || !plainStmt(cm.Y) {
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

// plainStmt: a statement without !, &, a coprocess or redirections.
func plainStmt(st *syntax.Stmt) bool {
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

// bareParam: a parameter by name, with at most an expansion operator
// (${NAME%pat}, ${NAME:-w}): no length, index, slice, replacement,
// indirection, or zsh and mksh forms.
func bareParam(p *syntax.ParamExp) bool {
	return p.Param != nil && p.Flags == nil && !p.Excl && !p.Length && !p.Width && !p.IsSet &&
		p.Split == syntax.OptUnset && p.GlobSubst == syntax.OptUnset && p.RcExpand == syntax.OptUnset &&
		p.NestedParam == nil && p.Index == nil && len(p.Modifiers) == 0 && p.Slice == nil && p.Repl == nil &&
		p.Names == 0
}
