package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/flexhook/flexhook/internal/suggest"
	"github.com/flexhook/flexhook/presets"
)

const completionSynopsis = "flexhook completion bash|zsh|fish"

// shells are the shells `flexhook completion` writes a script for.
var shells = []string{"bash", "zsh", "fish"}

const completionHelp = `usage: flexhook completion bash|zsh|fish

Prints a completion script for the shell, made from flexhook's own table of
commands and flags: commands, subcommands, each command's flags, preset
names, files for FILE, directories for DIR, and the values of flags that
take one of a few. Load it:

  bash: source <(flexhook completion bash)
        or: flexhook completion bash > /usr/share/bash-completion/completions/flexhook
  zsh:  flexhook completion zsh > "${fpath[1]}/_flexhook"   (then: autoload -U compinit && compinit)
  fish: flexhook completion fish > ~/.config/fish/completions/flexhook.fish
`

// cmdCompletion prints the completion script for one shell.
func cmdCompletion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs, err := newFlagSet("completion", &struct{}{}, completionSynopsis, stdout)
	if err != nil {
		return err
	}
	fs.help = func() { io.WriteString(stdout, completionHelp) }
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("completion: want one shell: %s", strings.Join(shells, ", "))
	}
	tree := completionTree(commandTable())
	switch pos[0] {
	case "bash":
		_, err = io.WriteString(stdout, bashCompletion(tree))
	case "zsh":
		_, err = io.WriteString(stdout, zshCompletion(tree))
	case "fish":
		_, err = io.WriteString(stdout, fishCompletion(tree))
	default:
		if s, ok := suggest.Closest(pos[0], shells); ok {
			return usageErrorf("completion: unknown shell %q (did you mean %q?)", pos[0], s)
		}
		return usageErrorf("completion: unknown shell %q (want %s)", pos[0], strings.Join(shells, ", "))
	}
	return err
}

// compNode is one command path a completion tells apart: "" (no command
// yet), "run", "leases list", "lab verify".
type compNode struct {
	path    string
	summary string
	flags   []flagDoc
	// words are what its first positional argument may be: subcommands,
	// then the command's own values (preset names, shells, commands).
	words []string
	// subs are the subcommands with flags of their own (lab verify), whose
	// flags replace these; the others (leases list) keep these flags.
	subs []string
}

// completionTree flattens the command table into the paths a completion
// tells apart, the root first.
func completionTree(cmds []command) []compNode {
	root := compNode{flags: []flagDoc{{name: "help", short: "h", usage: "show usage", boolean: true},
		{name: "version", usage: "print the version", boolean: true}}}
	nodes := []compNode{root}
	for i := range cmds {
		c := &cmds[i]
		nodes[0].words = append(nodes[0].words, c.name)
		n := compNode{path: c.name, summary: c.summary, flags: flagsOf(c, nil)}
		var subs []compNode
		for j := range c.subs {
			s := &c.subs[j]
			n.words = append(n.words, s.name)
			if s.flags != nil {
				n.subs = append(n.subs, s.name)
			}
			subs = append(subs, compNode{path: c.name + " " + s.name, summary: s.summary, flags: flagsOf(s, c)})
		}
		if c.args != nil {
			n.words = append(n.words, c.args()...)
		}
		nodes = append(nodes, n)
		nodes = append(nodes, subs...)
	}
	return nodes
}

// valueKind is what a flag's value completes to.
type valueKind int

const (
	valueNone  valueKind = iota // a switch: no value
	valueFree                   // anything: nothing to offer
	valueFile                   // a file name
	valueDir                    // a directory
	valueWords                  // one of a few words
)

// enumValues are the values of flags whose placeholder does not list them
// (a test checks each against the flag's own check or usage text).
var enumValues = map[string][]string{
	"log-level":           {"debug", "info", "warn", "error"},
	"log-format":          {"text", "json"},
	"wireguard-userspace": {"auto", "always", "never"},
}

// valueOf says what the value of f completes to: --preset the preset
// names, a FILE or PATH a file, a DIR a directory, a placeholder such as
// text|wide|json its words.
func valueOf(f flagDoc) (valueKind, []string) {
	switch {
	case f.boolean:
		return valueNone, nil
	case f.name == "preset":
		return valueWords, presets.Names()
	case enumValues[f.name] != nil:
		return valueWords, enumValues[f.name]
	case strings.Contains(f.arg, "|"):
		return valueWords, strings.Split(f.arg, "|")
	case f.arg == "FILE" || f.arg == "PATH":
		return valueFile, nil
	case f.arg == "DIR":
		return valueDir, nil
	}
	return valueFree, nil
}

// spellings are the ways f is written on a command line: --name, and -s
// for a short name.
func (f flagDoc) spellings() []string {
	s := []string{"--" + f.name}
	if f.short != "" {
		s = append(s, "-"+f.short)
	}
	return s
}

// shortUsage is the first clause of a usage text, for a completion menu.
func shortUsage(u string) string {
	for _, sep := range []string{"; ", " ("} {
		if i := strings.Index(u, sep); i > 0 {
			u = u[:i]
		}
	}
	return u
}

const bashHeader = `# bash completion for flexhook, generated by "flexhook completion bash".
# Load it with: source <(flexhook completion bash)
# or save it as /usr/share/bash-completion/completions/flexhook.

`

// bashMain walks the words before the cursor (the command, a subcommand,
// flags and their values, --flag VALUE, --flag=VALUE, which bash's
// COMP_WORDBREAKS splits at the =) and completes the word at the cursor:
// a flag's value, a flag, or the first positional argument.
const bashMain = `__flexhook_reply() { # $1: the word so far, $2: a prefix to keep (--flag=), then compgen's options
	local cur=$1 pre=$2
	shift 2
	case $1 in -f | -d) compopt -o filenames 2>/dev/null ;; esac
	mapfile -t COMPREPLY < <(compgen -P "$pre" "$@" -- "$cur")
}

_flexhook() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local path= flag= pre= npos=0 i=1 w
	COMPREPLY=()
	while ((i < COMP_CWORD)); do
		w=${COMP_WORDS[i]}
		case $w in
		-*=*) ;;
		-*)
			if __flexhook_takes_value "$w" && ((i + 1 < COMP_CWORD)); then
				i=$((i + 1))
				if [[ ${COMP_WORDS[i]} == = ]] && ((i + 1 < COMP_CWORD)); then i=$((i + 1)); fi
			fi
			;;
		*)
			if [[ -z $path ]]; then
				path=$w
			elif ((npos == 0)) && [[ $path != *" "* ]] && __flexhook_is_sub "$path $w"; then
				path="$path $w"
			else
				npos=$((npos + 1))
			fi
			;;
		esac
		i=$((i + 1))
	done
	if [[ $cur == = && $prev == -* ]]; then
		flag=$prev cur=
	elif [[ $prev == = ]] && ((COMP_CWORD >= 2)); then
		flag=${COMP_WORDS[COMP_CWORD - 2]}
	elif [[ $cur == -*=* ]]; then
		flag=${cur%%=*} pre=${cur%%=*}= cur=${cur#*=}
	elif [[ $prev == -* ]] && __flexhook_takes_value "$prev"; then
		flag=$prev
	fi
	if [[ -n $flag ]]; then
		__flexhook_value "$path" "$flag" "$cur" "$pre"
	elif [[ $cur == -* ]]; then
		__flexhook_reply "$cur" "" -W "$(__flexhook_flags "$path")"
	elif ((npos == 0)); then
		__flexhook_reply "$cur" "" -W "$(__flexhook_words "$path")"
	fi
	return 0
}

complete -F _flexhook flexhook
`

// bashCompletion is the bash script for the tree.
func bashCompletion(tree []compNode) string {
	var b strings.Builder
	b.WriteString(bashHeader)

	var valued []string
	for _, n := range tree {
		for _, f := range n.flags {
			if !f.boolean {
				valued = append(valued, f.spellings()...)
			}
		}
	}
	slices.Sort(valued)
	fmt.Fprintf(&b, "__flexhook_takes_value() {\n\tcase $1 in\n\t%s) return 0 ;;\n\tesac\n\treturn 1\n}\n\n", strings.Join(slices.Compact(valued), " | "))

	var subs []string
	for _, n := range tree {
		if strings.Contains(n.path, " ") {
			subs = append(subs, bashQuote(n.path))
		}
	}
	fmt.Fprintf(&b, "__flexhook_is_sub() {\n\tcase $1 in\n\t%s) return 0 ;;\n\tesac\n\treturn 1\n}\n\n", strings.Join(subs, " | "))

	b.WriteString("__flexhook_flags() { # $1: the command path\n\tcase $1 in\n")
	for _, n := range tree {
		var words []string
		for _, f := range n.flags {
			words = append(words, "--"+f.name)
		}
		fmt.Fprintf(&b, "\t%s) echo %s ;;\n", bashQuote(n.path), bashQuote(strings.Join(words, " ")))
	}
	b.WriteString("\tesac\n}\n\n")

	b.WriteString("__flexhook_words() { # $1: the command path\n\tcase $1 in\n")
	for _, n := range tree {
		if len(n.words) > 0 {
			fmt.Fprintf(&b, "\t%s) echo %s ;;\n", bashQuote(n.path), bashQuote(strings.Join(n.words, " ")))
		}
	}
	b.WriteString("\tesac\n}\n\n")

	// One case arm per completion, naming every "path flag" it serves.
	type arm struct {
		patterns []string
		action   string
	}
	var arms []*arm
	byAction := map[string]*arm{}
	for _, n := range tree {
		for _, f := range n.flags {
			var action string
			switch kind, words := valueOf(f); kind {
			case valueNone, valueFree:
				continue
			case valueFile:
				action = `__flexhook_reply "$3" "$4" -f`
			case valueDir:
				action = `__flexhook_reply "$3" "$4" -d`
			case valueWords:
				action = `__flexhook_reply "$3" "$4" -W ` + bashQuote(strings.Join(words, " "))
			}
			a := byAction[action]
			if a == nil {
				a = &arm{action: action}
				byAction[action] = a
				arms = append(arms, a)
			}
			for _, s := range f.spellings() {
				a.patterns = append(a.patterns, bashQuote(n.path+" "+s))
			}
		}
	}
	b.WriteString("__flexhook_value() { # $1: the command path, $2: the flag, $3: its value so far, $4: a prefix to keep\n\tcase \"$1 $2\" in\n")
	for _, a := range arms {
		fmt.Fprintf(&b, "\t%s)\n\t\t%s\n\t\t;;\n", strings.Join(a.patterns, " | "), a.action)
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString(bashMain)
	return b.String()
}

// bashQuote quotes s for bash when it needs it; the words here are
// command names, flags, presets and placeholders, without quotes.
func bashQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return `"` + s + `"`
}

const zshHeader = `#compdef flexhook
# zsh completion for flexhook, generated by "flexhook completion zsh".
# Save it as _flexhook in a directory of $fpath, then run compinit:
#   flexhook completion zsh > "${fpath[1]}/_flexhook"

`

// zshCompletion is the zsh script for the tree: _arguments per command
// path, the command and subcommand words with their summaries.
func zshCompletion(tree []compNode) string {
	byPath := map[string]compNode{}
	for _, n := range tree {
		byPath[n.path] = n
	}
	var b strings.Builder
	b.WriteString(zshHeader)
	b.WriteString("_flexhook() {\n\tlocal curcontext=$curcontext state state_descr line\n\ttypeset -A opt_args\n")
	b.WriteString("\t_arguments -C \\\n\t\t'(- *)'{-h,--help}'[show usage]' \\\n\t\t'(- *)--version[print the version]' \\\n")
	b.WriteString("\t\t'1: :->command' \\\n\t\t'*:: :->argument'\n\tcase $state in\n\tcommand)\n\t\tlocal -a commands=(\n")
	for _, n := range tree[1:] {
		if !strings.Contains(n.path, " ") {
			fmt.Fprintf(&b, "\t\t\t%s\n", zshSingle(strings.ReplaceAll(n.path, ":", `\:`)+":"+n.summary))
		}
	}
	b.WriteString("\t\t)\n\t\t_describe -t commands 'flexhook command' commands\n\t\t;;\n")
	b.WriteString("\targument)\n\t\tcurcontext=${curcontext%:*:*}:flexhook-$words[1]:\n\t\tcase $words[1] in\n")
	for _, n := range tree[1:] {
		if strings.Contains(n.path, " ") {
			continue
		}
		fmt.Fprintf(&b, "\t\t%s)\n", n.path)
		if len(n.subs) == 0 {
			zshArguments(&b, "\t\t\t", n)
		} else {
			for i, s := range n.subs {
				kw := "if"
				if i > 0 {
					kw = "elif"
				}
				fmt.Fprintf(&b, "\t\t\t%s (( CURRENT > 2 )) && [[ $words[2] == %s ]]; then\n", kw, s)
				b.WriteString("\t\t\t\tshift words\n\t\t\t\t(( CURRENT-- ))\n")
				zshArguments(&b, "\t\t\t\t", byPath[n.path+" "+s])
			}
			b.WriteString("\t\t\telse\n")
			zshArguments(&b, "\t\t\t\t", n)
			b.WriteString("\t\t\tfi\n")
		}
		b.WriteString("\t\t\t;;\n")
	}
	b.WriteString("\t\tesac\n\t\t;;\n\tesac\n}\n\n_flexhook \"$@\"\n")
	return b.String()
}

// zshArguments writes the _arguments call of one command path.
func zshArguments(b *strings.Builder, indent string, n compNode) {
	var specs []string
	for _, f := range n.flags {
		desc := "[" + zshEscape(shortUsage(f.usage), "[]:\\") + "]"
		if f.boolean {
			specs = append(specs, zshSingle("--"+f.name+desc))
			continue
		}
		var action string
		switch kind, words := valueOf(f); kind {
		case valueFile:
			action = "_files"
		case valueDir:
			action = "_files -/"
		case valueWords:
			action = "(" + strings.Join(words, " ") + ")"
		default:
			action = " "
		}
		msg := zshEscape(cmpOr(f.arg, "VALUE"), ":\\")
		if f.short != "" {
			specs = append(specs, zshSingle("(-"+f.short+" --"+f.name+")")+"{-"+f.short+"+,--"+f.name+"=}"+zshSingle(desc+":"+msg+":"+action))
		} else {
			specs = append(specs, zshSingle("--"+f.name+"="+desc+":"+msg+":"+action))
		}
	}
	if len(n.words) > 0 {
		specs = append(specs, zshSingle("1:argument:("+strings.Join(n.words, " ")+")"))
	}
	if len(specs) == 0 {
		fmt.Fprintf(b, "%s_message 'no arguments'\n", indent)
		return
	}
	fmt.Fprintf(b, "%s_arguments \\\n", indent)
	for i, s := range specs {
		end := " \\\n"
		if i == len(specs)-1 {
			end = "\n"
		}
		fmt.Fprintf(b, "%s\t%s%s", indent, s, end)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// zshEscape puts a backslash before each of chars in s.
func zshEscape(s, chars string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(chars, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// zshSingle single-quotes s for zsh, a quote inside closing the string,
// adding an escaped quote and opening it again.
func zshSingle(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

const fishHeader = `# fish completion for flexhook, generated by "flexhook completion fish".
# Save it as ~/.config/fish/completions/flexhook.fish, or load it with:
#   flexhook completion fish | source

complete -c flexhook -f
complete -c flexhook -n __fish_use_subcommand -s h -l help -d 'show usage'
complete -c flexhook -n __fish_use_subcommand -l version -d 'print the version'
`

// fishCompletion is the fish script for the tree: one complete line per
// command, subcommand word and flag, each under the condition of its
// command path.
func fishCompletion(tree []compNode) string {
	byPath := map[string]compNode{}
	for _, n := range tree {
		byPath[n.path] = n
	}
	var b strings.Builder
	b.WriteString(fishHeader)
	for _, n := range tree[1:] {
		if !strings.Contains(n.path, " ") {
			fmt.Fprintf(&b, "complete -c flexhook -n __fish_use_subcommand -a %s -d %s\n", n.path, fishQuote(n.summary))
		}
	}
	for _, n := range tree[1:] {
		cmd, sub, isSub := strings.Cut(n.path, " ")
		var cond string
		switch parent := byPath[cmd]; {
		case isSub && !slices.Contains(parent.subs, sub):
			continue // a subcommand with its parent's flags: done with the parent
		case isSub:
			cond = "__fish_seen_subcommand_from " + cmd + "; and __fish_seen_subcommand_from " + sub
		case len(n.subs) > 0:
			cond = "__fish_seen_subcommand_from " + cmd + "; and not __fish_seen_subcommand_from " + strings.Join(n.subs, " ")
		default:
			cond = "__fish_seen_subcommand_from " + cmd
		}
		fmt.Fprintf(&b, "\n# %s\n", n.path)
		if len(n.words) > 0 {
			// Offered until one of them is given (help's own name aside:
			// it is on the line already).
			given := slices.DeleteFunc(slices.Clone(n.words), func(w string) bool { return w == cmd })
			fmt.Fprintf(&b, "complete -c flexhook -n %s -a %s\n",
				fishQuote(cond+"; and not __fish_seen_subcommand_from "+strings.Join(given, " ")), fishQuote(strings.Join(n.words, " ")))
		}
		for _, f := range n.flags {
			line := "complete -c flexhook -n " + fishQuote(cond)
			if f.short != "" {
				line += " -s " + f.short
			}
			line += " -l " + f.name
			switch kind, words := valueOf(f); kind {
			case valueFree:
				line += " -x"
			case valueFile:
				line += " -r -F"
			case valueDir:
				line += " -x -a '(__fish_complete_directories)'"
			case valueWords:
				line += " -x -a " + fishQuote(strings.Join(words, " "))
			}
			fmt.Fprintf(&b, "%s -d %s\n", line, fishQuote(shortUsage(f.usage)))
		}
	}
	return b.String()
}

// fishQuote single-quotes s for fish, where \ and ' are escaped with \.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
