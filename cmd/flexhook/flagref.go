package main

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// flagDoc is one flag of a command as the flag reference and the shell
// completions show it, read from the struct tags the parser registers
// (flags.go: flagSet.register).
type flagDoc struct {
	name    string // without dashes: "state-dir"
	short   string // "o" for --output, or ""
	arg     string // the placeholder: "DIR", "text|json"
	def     string // the `default` tag (what applies when neither the flag nor its variable is given)
	env     string // FLEXHOOK_STATE_DIR
	usage   string
	boolean bool // takes no value (--trace, --trace=false)
}

// flagFields calls fn with each field of the flag struct type t, those
// of its embedded structs included (owner is the struct that declares it).
func flagFields(t reflect.Type, fn func(owner reflect.Type, f reflect.StructField)) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous {
			flagFields(f.Type, fn)
		} else {
			fn(t, f)
		}
	}
}

// listedFlags returns the flags of spec, a pointer to a flag struct, that
// -h lists (hidden ones left out), sorted by name as -h sorts them.
func listedFlags(spec any) []flagDoc {
	var out []flagDoc
	flagFields(reflect.TypeOf(spec).Elem(), func(_ reflect.Type, f reflect.StructField) {
		name := f.Tag.Get("flag")
		if name == "" || f.Tag.Get("hidden") == "true" {
			return
		}
		key := f.Tag.Get("envconfig")
		if key == "" {
			key = strings.ToUpper(f.Name) // envconfig's own default
		}
		out = append(out, flagDoc{
			name:    name,
			short:   f.Tag.Get("short"),
			arg:     f.Tag.Get("arg"),
			def:     f.Tag.Get("default"),
			env:     envPrefix + "_" + key,
			usage:   f.Tag.Get("usage"),
			boolean: f.Type.Kind() == reflect.Bool,
		})
	})
	slices.SortFunc(out, func(a, b flagDoc) int { return cmp.Compare(a.name, b.name) })
	return out
}

// flagsOf returns the listed flags of c, whose parent is parent (nil for
// a top-level command): a subcommand without a flag struct of its own
// parses its parent's.
func flagsOf(c, parent *command) []flagDoc {
	switch {
	case c.flags != nil:
		return listedFlags(c.flags())
	case parent != nil && parent.flags != nil:
		return listedFlags(parent.flags())
	}
	return nil
}

const flagRefIntro = `# Flag reference

<!-- Generated from the flag definitions in cmd/flexhook; do not edit.
     Update: make docs (go test ./cmd/flexhook -run TestFlagReference -update). -->

Every command's flags, as ` + "`flexhook COMMAND -h`" + ` prints them. Each flag
also reads the environment variable in its row; a flag given on the
command line wins over its variable. A value follows its flag as the next
word or after ` + "`=`" + ` (` + "`--state-dir /x`, `--state-dir=/x`" + `); a flag without a
value is a switch, on when given, and ` + "`--replace-existing=false`" + ` turns
one off whose default is true. Exit codes: 0 ok, 1 runtime failure, 2
usage or config error; ` + "`status`" + ` exits 3 when the daemon does not run.
Shell completion: ` + "`flexhook completion bash|zsh|fish`" + ` (see [the README](../README.md#shell-completion)).

`

// flagReference renders docs/flags.md from the command table.
func flagReference(cmds []command) string {
	var b strings.Builder
	b.WriteString(flagRefIntro)
	b.WriteString("| command | what it does |\n|---|---|\n")
	type section struct {
		path  string
		c     *command
		flags []flagDoc
	}
	var sections []section
	for i := range cmds {
		c := &cmds[i]
		path := c.name
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s |\n", path, anchor("flexhook "+path), mdCell(c.summary))
		sections = append(sections, section{path, c, flagsOf(c, nil)})
		for j := range c.subs {
			s := &c.subs[j]
			if s.flags == nil {
				continue // its parent's flags, documented there
			}
			fmt.Fprintf(&b, "| [`%s %s`](#%s) | %s |\n", c.name, s.name, anchor("flexhook "+c.name+" "+s.name), mdCell(s.summary))
			sections = append(sections, section{c.name + " " + s.name, s, flagsOf(s, c)})
		}
	}
	for _, s := range sections {
		fmt.Fprintf(&b, "\n## flexhook %s\n\n%s.\n", s.path, upperFirst(s.c.summary))
		if s.c.synopsis != "" {
			fmt.Fprintf(&b, "\n```\n%s\n```\n", s.c.synopsis)
		}
		var subs []string
		for _, sub := range s.c.subs {
			if sub.flags == nil {
				subs = append(subs, fmt.Sprintf("`%s %s` (%s)", s.path, sub.name, sub.summary))
			}
		}
		if len(subs) > 0 {
			fmt.Fprintf(&b, "\nSubcommands, with the flags below: %s.\n", strings.Join(subs, ", "))
		}
		if len(s.flags) == 0 {
			b.WriteString("\nNo flags.\n")
			continue
		}
		b.WriteString("\n| flag | environment | default | what |\n|---|---|---|---|\n")
		for _, f := range s.flags {
			spelling := "`--" + f.name
			if f.arg != "" {
				spelling += " " + f.arg
			}
			spelling += "`"
			if f.short != "" {
				spelling = "`-" + f.short + "`, " + spelling
			}
			def := ""
			if f.def != "" {
				def = "`" + f.def + "`"
			}
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", mdCell(spelling), f.env, mdCell(def), mdCell(f.usage))
		}
	}
	return b.String()
}

// mdCell makes s safe in a Markdown table cell: a | would end the cell,
// a <word> would be taken for HTML.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// anchor is the fragment GitHub gives a Markdown heading: lower case,
// spaces to dashes, punctuation other than - and _ dropped.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
