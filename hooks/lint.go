package hooks

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Severity ranks a lint warning.
type Severity int

const (
	// SeverityInfo is worth knowing and often intended.
	SeverityInfo Severity = iota
	// SeverityWarning is probably a mistake.
	SeverityWarning
	// SeverityError is unsafe: lease data turned into code.
	SeverityError
)

func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// Warning is one finding of [Lint]. A hook warning has Field "" and, when
// Line > 0, a position inside the hook's command; a warning about another
// config key names it in Field and has no position.
type Warning struct {
	Hook     Kind
	Field    string
	Line     int
	Col      int
	Severity Severity
	Msg      string
}

// Name returns the key the warning is about: Field, or else the hook name.
func (w Warning) Name() string {
	if w.Field != "" {
		return w.Field
	}
	return w.Hook.String()
}

// String formats w as "SubnetAddCommand:1:5: warning: msg".
func (w Warning) String() string {
	pos := ""
	if w.Line > 0 {
		pos = ":" + strconv.Itoa(w.Line) + ":" + strconv.Itoa(w.Col)
	}
	return w.Name() + pos + ": " + w.Severity.String() + ": " + w.Msg
}

// contractNames are the variables some hook is given (see [Kind.Env]).
var contractNames = []string{EnvNetwork, EnvSubnet, EnvIPv6Subnet, EnvPublicIP, EnvPublicIPv6}

// commonEnv are variables a hook may fairly expect from the shell or the
// daemon's environment without assigning them.
var commonEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "PWD": true, "OLDPWD": true,
	"IFS": true, "HOSTNAME": true, "HOSTTYPE": true, "SHELL": true, "TERM": true, "LANG": true,
	"TMPDIR": true, "UID": true, "EUID": true, "PPID": true, "RANDOM": true, "SECONDS": true,
	"LINENO": true, "OPTIND": true, "OPTARG": true, "REPLY": true, "BASHPID": true,
	"BASH_VERSION": true, "GROUPS": true, "PIPESTATUS": true, "EPOCHSECONDS": true,
}

// Lint returns warnings about a parsed config that are worth an
// operator's attention but do not stop it from running: keys flannel and
// flexhook ignore, hooks that read a stdin they are not given, variables
// a hook is never given, lease data run as code or expanded unquoted (a
// peer's spaces become more arguments), builtins the interpreter does not
// support, and a SubnetAddCommand without a SubnetRemoveCommand.
func Lint(cfg *Config) []Warning {
	ws := lintKeys(cfg)
	for _, k := range Kinds {
		if h := cfg.Backend.Hooks[k]; !h.Empty() {
			ws = append(ws, lintHook(k, h.File)...)
		}
	}
	if !cfg.Backend.Hooks[SubnetAdd].Empty() && cfg.Backend.Hooks[SubnetRemove].Empty() {
		ws = append(ws, Warning{Hook: SubnetRemove, Severity: SeverityInfo,
			Msg: "missing while SubnetAddCommand is set: what Add sets up for a peer stays after the peer is gone"})
	}
	return ws
}

// lintKeys checks the top-level keys in cfg.Raw.
func lintKeys(cfg *Config) []Warning {
	if len(cfg.Raw) == 0 {
		return nil
	}
	p := &parser{data: cfg.Raw}
	top, err := p.topLevel()
	if err != nil {
		return nil
	}
	var ws []Warning
	fields := map[string]member{}
	for _, m := range top {
		if k, ok := canonical(m.key, topKeys); ok {
			fields[k] = m
			continue
		}
		if k, ok := canonical(m.key, ignoredKeys); ok {
			ws = append(ws, Warning{Field: m.key, Severity: SeverityInfo,
				Msg: fmt.Sprintf("flexhook does not use the flannel option %s; it is ignored", k)})
			continue
		}
		msg := "unknown key; flannel and flexhook ignore it"
		if c, ok := closest(m.key, append(topKeys[:len(topKeys):len(topKeys)], ignoredKeys...)); ok {
			msg += fmt.Sprintf(" (did you mean %q?)", c)
		}
		ws = append(ws, Warning{Field: m.key, Severity: SeverityWarning, Msg: msg})
	}
	for _, name := range []string{"Network", "IPv6Network"} {
		s, _, _ := p.strField(fields, name)
		if pfx, err := netip.ParsePrefix(s); err == nil && pfx != pfx.Masked() {
			ws = append(ws, Warning{Field: name, Severity: SeverityWarning,
				Msg: fmt.Sprintf("%s has host bits set; it is used as %s", pfx, pfx.Masked())})
		}
	}
	if !cfg.EnableIPv6 {
		for _, name := range []string{"IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax"} {
			if _, ok := fields[name]; ok {
				ws = append(ws, Warning{Field: name, Severity: SeverityWarning,
					Msg: "set while EnableIPv6 is not true; it is ignored"})
			}
		}
	}
	return ws
}

func lintHook(k Kind, f *syntax.File) []Warning {
	var ws []Warning
	warn := func(pos syntax.Pos, sev Severity, format string, args ...any) {
		ws = append(ws, Warning{Hook: k, Line: int(pos.Line()), Col: int(pos.Col()), Severity: sev,
			Msg: fmt.Sprintf(format, args...)})
	}
	assigned := assignedNames(f)
	stdinFed := stdinFedCalls(f)
	given := k.EnvNames()
	reported := map[string]bool{}

	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CallExpr:
			if len(n.Args) == 0 {
				break
			}
			switch name := n.Args[0].Lit(); name {
			case "read", "mapfile", "readarray":
				if !k.HasStdin() && !stdinFed[n] {
					warn(n.Pos(), SeverityWarning, "%s gets nothing: %s is run with an empty stdin; "+
						"only SubnetAddCommand and SubnetRemoveCommand read the peer's BackendData", name, k)
				}
			case "eval", "source", ".":
				for _, arg := range n.Args[1:] {
					if v, ok := firstExpansion(arg); ok {
						warn(n.Pos(), SeverityError, "%s of %s runs data as code; "+
							"pass values to commands as arguments instead", name, v)
						break
					}
				}
			}
		case *syntax.ParamExp:
			if n.Param == nil || n.Excl || n.Names != 0 || n.Exp != nil && handlesUnset(n.Exp.Op) {
				break // ${X:-default} and friends handle an unset X on purpose
			}
			name := n.Param.Value
			if !validName(name) || assigned[name] || reported[name] || slices.Contains(given, name) || commonEnv[name] {
				break
			}
			reported[name] = true
			if slices.Contains(contractNames, name) {
				warn(n.Pos(), SeverityWarning, "$%s is not set for %s; it is given only %s",
					name, k, strings.Join(given, ", "))
				break
			}
			warn(n.Pos(), SeverityInfo, "$%s is never assigned in this hook and is not part of its contract; "+
				"it is empty unless the daemon's environment sets it", name)
		}
		return true
	})
	lintLeaseData(k, f, warn)
	return ws
}

// handlesUnset reports whether ${X<op>word} copes with an unset X itself.
func handlesUnset(op syntax.ParExpOperator) bool {
	switch op {
	case syntax.AlternateUnset, syntax.AlternateUnsetOrNull, syntax.DefaultUnset, syntax.DefaultUnsetOrNull,
		syntax.ErrorUnset, syntax.ErrorUnsetOrNull, syntax.AssignUnset, syntax.AssignUnsetOrNull:
		return true
	}
	return false
}

// validName reports whether s is a shell variable name (not $1, $@, $?...).
func validName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// firstExpansion returns how the first parameter expansion or command
// substitution in w is written, such as "$X".
func firstExpansion(w *syntax.Word) (string, bool) {
	var found string
	syntax.Walk(w, func(n syntax.Node) bool {
		if found != "" {
			return false
		}
		switch n := n.(type) {
		case *syntax.ParamExp:
			found = "$"
			if n.Param != nil {
				found += n.Param.Value
			}
		case *syntax.CmdSubst:
			found = "a command substitution"
		}
		return found == ""
	})
	return found, found != ""
}

// assignedNames returns the variables f assigns anywhere: X=..., export
// and friends, read, for, getopts and printf -v.
func assignedNames(f *syntax.File) map[string]bool {
	names := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.Assign:
			if n.Name != nil {
				names[n.Name.Value] = true
			}
		case *syntax.WordIter:
			if n.Name != nil {
				names[n.Name.Value] = true
			}
		case *syntax.CallExpr:
			for _, name := range callAssigns(n) {
				names[name] = true
			}
		}
		return true
	})
	return names
}

// callAssigns returns the variables a builtin call assigns.
func callAssigns(c *syntax.CallExpr) []string {
	if len(c.Args) == 0 {
		return nil
	}
	args := make([]string, len(c.Args)-1)
	for i, w := range c.Args[1:] {
		args[i] = w.Lit()
	}
	switch c.Args[0].Lit() {
	case "read":
		var names []string
		for i := 0; i < len(args); i++ {
			a := args[i]
			if len(a) < 2 || a[0] != '-' {
				names = append(names, args[i:]...)
				break
			}
			for j := 1; j < len(a); j++ {
				if !strings.ContainsRune("adinNptu", rune(a[j])) {
					continue
				}
				if j == len(a)-1 && i+1 < len(args) {
					i++
					if a[j] == 'a' {
						names = append(names, args[i])
					}
				} else if a[j] == 'a' {
					names = append(names, a[j+1:])
				}
				break
			}
		}
		if len(names) == 0 {
			names = []string{"REPLY"}
		}
		return names
	case "getopts":
		if len(args) >= 2 {
			return args[1:2]
		}
	case "printf":
		if len(args) >= 2 && args[0] == "-v" {
			return args[1:2]
		}
	case "mapfile", "readarray":
		if len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") {
			return args[len(args)-1:]
		}
		return []string{"MAPFILE"}
	}
	return nil
}

// stdinFedCalls returns the calls whose stdin comes from a pipe or an
// input redirection rather than from the hook's own stdin.
func stdinFedCalls(f *syntax.File) map[*syntax.CallExpr]bool {
	fed := map[*syntax.CallExpr]bool{}
	mark := func(n syntax.Node) {
		syntax.Walk(n, func(n syntax.Node) bool {
			if c, ok := n.(*syntax.CallExpr); ok {
				fed[c] = true
			}
			return true
		})
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.BinaryCmd:
			if n.Op == syntax.Pipe || n.Op == syntax.PipeAll {
				mark(n.Y)
			}
		case *syntax.Stmt:
			for _, r := range n.Redirs {
				if (r.N == nil || r.N.Value == "0") && isInputRedir(r.Op) {
					mark(n)
				}
			}
		}
		return true
	})
	return fed
}

func isInputRedir(op syntax.RedirOperator) bool {
	switch op {
	case syntax.RdrIn, syntax.RdrInOut, syntax.DplIn, syntax.Hdoc, syntax.DashHdoc, syntax.WordHdoc:
		return true
	}
	return false
}
