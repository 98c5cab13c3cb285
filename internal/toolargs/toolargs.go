// Package toolargs reads a command's arguments as GNU getopt does, from a
// table of the tool's options (Spec), and tells whether a binary is the
// system's own (SystemBinary). The dry-run tables (internal/puretools) and
// the in-process text tools (internal/coreutils) are written in it.
package toolargs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Spec is what is known of one text tool's arguments: every option it
// has, in getopt's notation, and (for dry-run) which of them write files,
// run programs or never end.
type Spec struct {
	// Short lists the short options: a letter, then ":" for a required
	// argument (the rest of the word or the next one) or "::" for an
	// optional one (the rest of the word only).
	Short string
	// Long lists the long options: a name, then "=" for a required
	// argument ("--name=v" or "--name v") or "?" for an optional one
	// ("--name=v" only). Abbreviations resolve as GNU getopt does: an
	// exact name, else the one name the word is a prefix of.
	Long []string
	// Deny lists the short letters and long names that make the command
	// impure.
	Deny []string
	// Digits: -NUM is an option (head -5, tail -5f, uniq -2, seq -1).
	Digits bool
	// Any: the tool takes no options worth checking (printf, echo, expr,
	// test); every word is fine.
	Any bool
	// Sandbox: dry-run adds --sandbox (GNU sed, gawk), which refuses the
	// program's own file writes, reads of commands and system().
	Sandbox bool
	// Operands checks what is left once options are removed.
	Operands func(ops []string) bool
	// Real lists the names the installed binary may have (awk is mawk or
	// gawk on Debian); default: the tool's own name.
	Real []string
}

// SystemBinary follows path's symlinks and reports the binary it names
// when that lies in one of dirs, is a regular file owned by root and is
// writable by nobody else.
func SystemBinary(path string, dirs []string) (string, bool) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil || !slices.Contains(dirs, filepath.Dir(real)) {
		return "", false
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 {
		return "", false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 {
		return "", false
	}
	return real, true
}

// Scan walks GNU-style arguments (options may follow operands; "--" ends
// them) against the table and returns the operands; ok is false at the
// first option that is unknown, ambiguous, missing its argument or
// denied. -W NAME is the long option NAME (mawk's options, gawk's -W form).
func (t *Spec) Scan(args []string) (ops []string, ok bool) {
	opts, ops, ok := t.Parse(args)
	if !ok {
		return nil, false
	}
	for _, o := range opts {
		if slices.Contains(t.Deny, o.Name) {
			return nil, false
		}
		if o.Name == "W" { // -W name[=value]: a long option
			name, _, _ := strings.Cut(o.Val, "=")
			n, _, ok := t.longOpt(name)
			if !ok || slices.Contains(t.Deny, n) {
				return nil, false
			}
		}
	}
	return ops, true
}

// Option is one parsed option: its short letter or full long name ("#"
// for -NUM, whose digits are val), and its argument.
type Option struct {
	Name   string
	Val    string
	HasVal bool
}

// Parse splits GNU-style arguments into options, resolved against the
// table, and operands; ok is false at the first option that is unknown,
// ambiguous or missing its argument.
func (t *Spec) Parse(args []string) (opts []Option, ops []string, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return opts, append(ops, args[i+1:]...), true
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			n, kind, ok := t.longOpt(name)
			if !ok {
				return nil, nil, false
			}
			switch {
			case kind == "" && hasVal:
				return nil, nil, false // getopt refuses an argument here
			case kind == "=" && !hasVal:
				if i+1 >= len(args) {
					return nil, nil, false
				}
				i++
				val, hasVal = args[i], true
			}
			opts = append(opts, Option{n, val, hasVal})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				if t.Digits && c >= '0' && c <= '9' {
					k := j
					for k < len(a) && a[k] >= '0' && a[k] <= '9' {
						k++
					}
					opts = append(opts, Option{"#", a[j:k], true})
					j = k - 1
					continue
				}
				kind, known := t.shortOpt(c)
				if !known {
					return nil, nil, false
				}
				if kind == "" {
					opts = append(opts, Option{Name: string(c)})
					continue
				}
				val, hasVal := a[j+1:], j+1 < len(a)
				if kind == ":" && !hasVal {
					if i+1 >= len(args) {
						return nil, nil, false
					}
					i++
					val, hasVal = args[i], true
				}
				opts = append(opts, Option{string(c), val, hasVal})
				break
			}
		default:
			ops = append(ops, a)
		}
	}
	return opts, ops, true
}

// shortOpt returns how short option c takes an argument ("", ":" or
// "::") and whether the tool has it.
func (t *Spec) shortOpt(c byte) (string, bool) {
	i := strings.IndexByte(t.Short, c)
	if i < 0 || c == ':' {
		return "", false
	}
	rest := t.Short[i+1:]
	switch {
	case strings.HasPrefix(rest, "::"):
		return "::", true
	case strings.HasPrefix(rest, ":"):
		return ":", true
	}
	return "", true
}

// longOpt resolves a long option name or an unambiguous prefix of one,
// returning the full name and how it takes an argument ("", "=" or "?").
func (t *Spec) longOpt(word string) (name, kind string, ok bool) {
	if word == "" {
		return "", "", false
	}
	var found []string
	for _, spec := range t.Long {
		n := strings.TrimRight(spec, "=?")
		if n == word {
			return n, spec[len(n):], true
		}
		if strings.HasPrefix(n, word) {
			found = append(found, spec)
		}
	}
	if len(found) != 1 {
		return "", "", false // unknown or ambiguous
	}
	n := strings.TrimRight(found[0], "=?")
	return n, found[0][len(n):], true
}
