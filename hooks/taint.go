package hooks

import (
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// UnsupportedBuiltins are the builtins mvdan.cc/sh's interpreter knows but
// does not implement: a hook that calls one fails there at run time
// ("kill: unsupported builtin"), so Lint reports it as an error. A test in
// runner/shell keeps the list equal to the interpreter's.
var UnsupportedBuiltins = []string{
	"bg", "bind", "caller", "compgen", "complete", "compopt", "disown", "enable", "fc", "fg",
	"history", "jobs", "kill", "logout", "newgrp", "suspend", "ulimit", "umask",
}

// stdinReaders are the tools that read their stdin when given no file
// operand: in a command substitution of an Add or Remove hook, their
// output is the peer's BackendData.
var stdinReaders = []string{"cat", "head", "tail", "cut", "tr", "sed", "awk", "gawk", "mawk", "grep", "sort", "uniq"}

// leaseVars returns the variables of a hook that hold lease data, each
// with where it came from: assigned by read or mapfile from the hook's own
// stdin (Add and Remove hooks get the peer's BackendData there), from a
// command substitution reading that stdin, or from a value that expands
// such a variable (X=$DATA, X=`echo $DATA | cut ...`, read A <<< "$DATA",
// echo "$DATA" | read A, for A in $DATA). The contract's own variables
// (SUBNET, PUBLIC_IP, ...) are not among them: admission lets only
// canonical prefixes and addresses through, which no expansion splits.
func leaseVars(k Kind, f *syntax.File) map[string]string {
	tainted := map[string]string{}
	if !k.HasStdin() {
		return tainted
	}
	feeders := stdinFeeders(f)
	for changed := true; changed; {
		changed = false
		mark := func(name, origin string) {
			if _, ok := tainted[name]; !ok && name != "" {
				tainted[name] = origin
				changed = true
			}
		}
		syntax.Walk(f, func(n syntax.Node) bool {
			switch n := n.(type) {
			case *syntax.Assign:
				if n.Name != nil && n.Value != nil {
					if v, ok := expandsLeaseData(n.Value, tainted); ok {
						mark(n.Name.Value, "derived from "+v)
					}
				}
			case *syntax.WordIter:
				for _, w := range n.Items {
					if v, ok := expandsLeaseData(w, tainted); ok {
						mark(n.Name.Value, "derived from "+v)
					}
				}
			case *syntax.CallExpr:
				if len(n.Args) == 0 {
					break
				}
				switch n.Args[0].Lit() {
				case "read", "mapfile", "readarray":
					src, fed := feeders[n]
					origin := "read from stdin"
					if fed {
						v, ok := "", false
						for _, s := range src {
							if v, ok = expandsLeaseData(s, tainted); ok {
								break
							}
						}
						if !ok {
							break
						}
						origin = "derived from " + v
					}
					for _, name := range callAssigns(n) {
						mark(name, origin)
					}
				case "printf":
					if names := callAssigns(n); len(names) == 1 {
						for _, w := range n.Args[1:] {
							if v, ok := expandsLeaseData(w, tainted); ok {
								mark(names[0], "derived from "+v)
							}
						}
					}
				}
			}
			return true
		})
		// Command substitutions reading the hook's stdin: X=$(cat).
		syntax.Walk(f, func(n syntax.Node) bool {
			if a, ok := n.(*syntax.Assign); ok && a.Name != nil && a.Value != nil && readsHookStdin(a.Value, feeders) {
				mark(a.Name.Value, "read from stdin")
			}
			return true
		})
	}
	return tainted
}

// stdinFeeders returns, for each call whose stdin is fed by the hook's own
// commands, what feeds it: the left side of a pipe, or the words of its
// input redirections and here-strings.
func stdinFeeders(f *syntax.File) map[*syntax.CallExpr][]syntax.Node {
	fed := map[*syntax.CallExpr][]syntax.Node{}
	mark := func(n syntax.Node, src syntax.Node) {
		syntax.Walk(n, func(n syntax.Node) bool {
			if c, ok := n.(*syntax.CallExpr); ok {
				fed[c] = append(fed[c], src)
			}
			return true
		})
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.BinaryCmd:
			if n.Op == syntax.Pipe || n.Op == syntax.PipeAll {
				mark(n.Y, n.X)
			}
		case *syntax.Stmt:
			for _, r := range n.Redirs {
				if (r.N == nil || r.N.Value == "0") && isInputRedir(r.Op) {
					var src syntax.Node = r.Word
					if r.Hdoc != nil {
						src = r.Hdoc
					}
					if src != nil {
						mark(n, src)
					} else {
						mark(n, r)
					}
				}
			}
		}
		return true
	})
	return fed
}

// expandsLeaseData reports whether n expands a variable of tainted, and
// which (as "$NAME").
func expandsLeaseData(n syntax.Node, tainted map[string]string) (string, bool) {
	found := ""
	syntax.Walk(n, func(n syntax.Node) bool {
		if p, ok := n.(*syntax.ParamExp); ok && p.Param != nil && found == "" {
			if _, t := tainted[p.Param.Value]; t {
				found = "$" + p.Param.Value
			}
		}
		return found == ""
	})
	return found, found != ""
}

// readsHookStdin reports whether w holds a command substitution whose
// commands read the hook's stdin: a stdin reader given no file operand and
// no stdin of its own.
func readsHookStdin(w *syntax.Word, feeders map[*syntax.CallExpr][]syntax.Node) bool {
	found := false
	syntax.Walk(w, func(n syntax.Node) bool {
		cs, ok := n.(*syntax.CmdSubst)
		if !ok {
			return !found
		}
		syntax.Walk(cs, func(n syntax.Node) bool {
			c, ok := n.(*syntax.CallExpr)
			if !ok || len(c.Args) == 0 || found {
				return !found
			}
			if _, fed := feeders[c]; fed || !slices.Contains(stdinReaders, c.Args[0].Lit()) {
				return true
			}
			operands := 0
			for _, a := range c.Args[1:] {
				if s := a.Lit(); !strings.HasPrefix(s, "-") || s == "-" {
					operands++
				}
			}
			// cut -d/ -f1 has option values; any operand-free call counts
			// (a program for sed and awk is an operand, files are more).
			prog := 0
			switch c.Args[0].Lit() {
			case "sed", "awk", "gawk", "mawk", "grep":
				prog = 1
			}
			if operands <= prog {
				found = true
			}
			return !found
		})
		return !found
	})
	return found
}

// lintLeaseData reports the unquoted expansions of lease data in a
// command's words (they split on the peer's spaces and may start with
// '-') and lease data run as a command name, and calls of builtins the
// interpreter does not support.
func lintLeaseData(k Kind, f *syntax.File, warn func(pos syntax.Pos, sev Severity, format string, args ...any)) {
	tainted := leaseVars(k, f)
	syntax.Walk(f, func(n syntax.Node) bool {
		c, ok := n.(*syntax.CallExpr)
		if !ok || len(c.Args) == 0 {
			return true
		}
		if name := c.Args[0].Lit(); slices.Contains(UnsupportedBuiltins, name) {
			warn(c.Args[0].Pos(), SeverityError, "%s is a builtin flexhook's shell interpreter does not support: "+
				"the hook fails here when it runs (call a program by its path, such as /usr/bin/%s, if there is one)", name, name)
		}
		for i, w := range c.Args {
			for _, part := range w.Parts {
				var pos syntax.Pos
				v := ""
				switch p := part.(type) {
				case *syntax.ParamExp:
					if p.Param != nil {
						if _, t := tainted[p.Param.Value]; t {
							v, pos = p.Param.Value, p.Pos()
						}
					}
				case *syntax.CmdSubst:
					if name, ok := expandsLeaseData(p, tainted); ok {
						v, pos = strings.TrimPrefix(name, "$"), p.Pos()
					}
				}
				if v == "" {
					continue
				}
				if i == 0 {
					warn(pos, SeverityError, "$%s holds lease data (%s) and is run as a command name: "+
						"a peer chooses the program", v, tainted[v])
					continue
				}
				warn(pos, SeverityWarning, "$%s holds lease data (%s) and is expanded unquoted: "+
					"spaces or a leading '-' in a peer's data become more arguments; quote it: \"$%s\"",
					v, tainted[v], v)
			}
		}
		return true
	})
}
