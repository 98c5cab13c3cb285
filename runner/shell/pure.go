package shell

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/interp"
)

// toolSpec is what dry-run knows of one text tool: every option it has,
// in getopt's notation, and which of them write files, run programs or
// never end. An option it does not know makes the command impure, so a
// newer tool version's new option is skipped, never trusted.
type toolSpec struct {
	// short lists the short options: a letter, then ":" for a required
	// argument (the rest of the word or the next one) or "::" for an
	// optional one (the rest of the word only).
	short string
	// long lists the long options: a name, then "=" for a required
	// argument ("--name=v" or "--name v") or "?" for an optional one
	// ("--name=v" only). Abbreviations resolve as GNU getopt does: an
	// exact name, else the one name the word is a prefix of.
	long []string
	// deny lists the short letters and long names that make the command
	// impure.
	deny []string
	// digits: -NUM is an option (head -5, tail -5f, uniq -2, seq -1).
	digits bool
	// any: the tool takes no options worth checking (printf, echo, expr,
	// test); every word is fine.
	any bool
	// sandbox: dry-run adds --sandbox (GNU sed, gawk), which refuses the
	// program's own file writes, reads of commands and system().
	sandbox bool
	// operands checks what is left once options are removed.
	operands func(ops []string) bool
	// real lists the names the installed binary may have (awk is mawk or
	// gawk on Debian); default: the tool's own name.
	real []string
}

// pureTools are the tools dry-run runs for real, so that the values a hook
// computes with them are right. Each is checked against its table; see
// PureArgv.
var pureTools = map[string]*toolSpec{
	"cut": {short: "b:c:d:f:nsz", long: []string{"bytes=", "characters=", "delimiter=", "fields=", "complement",
		"only-delimited", "output-delimiter=", "zero-terminated", "help", "version"}},
	"tr":        {short: "cCdst", long: []string{"complement", "delete", "squeeze-repeats", "truncate-set1", "help", "version"}},
	"head":      {short: "c:n:qvz", digits: true, long: []string{"bytes=", "lines=", "quiet", "silent", "verbose", "zero-terminated", "help", "version"}},
	"tail":      tailSpec,
	"sed":       sedSpec,
	"awk":       awkSpec,
	"gawk":      gawkSpec,
	"mawk":      mawkSpec,
	"grep":      grepSpec,
	"sort":      sortSpec,
	"uniq":      uniqSpec,
	"wc":        {short: "cmlLw", long: []string{"bytes", "chars", "lines", "files0-from=", "max-line-length", "words", "total=", "help", "version"}},
	"basename":  {short: "as:z", long: []string{"multiple", "suffix=", "zero", "help", "version"}},
	"dirname":   {short: "z", long: []string{"zero", "help", "version"}},
	"seq":       {short: "f:s:w", digits: true, long: []string{"format=", "separator=", "equal-width", "help", "version"}},
	"md5sum":    sumSpec,
	"sha256sum": sumSpec,
	"base64":    {short: "diw:", long: []string{"decode", "ignore-garbage", "wrap=", "help", "version"}},
	"printf":    {any: true},
	"echo":      {any: true},
	"expr":      {any: true},
	"test":      {any: true},
	"[":         {any: true},
	"true":      {any: true},
	"false":     {any: true},
}

var (
	sumSpec = &toolSpec{short: "bctzw", long: []string{"binary", "check", "tag", "text", "zero", "ignore-missing",
		"quiet", "status", "strict", "warn", "help", "version"}}
	// tail -f/-F/--follow never end.
	tailSpec = &toolSpec{short: "c:fFn:qs:vz", digits: true,
		long: []string{"bytes=", "follow?", "lines=", "max-unchanged-stats=", "pid=", "quiet", "silent", "retry",
			"sleep-interval=", "verbose", "zero-terminated", "help", "version"},
		deny: []string{"f", "F", "follow", "retry", "pid", "sleep-interval", "max-unchanged-stats"},
		// The obsolete form `tail +5f file` follows too.
		operands: func(ops []string) bool {
			return !slices.ContainsFunc(ops, func(o string) bool { return strings.HasPrefix(o, "+") && strings.ContainsAny(o, "fF") })
		}}
	// sed -i writes files; --sandbox covers the program's w, W, e, r, R.
	sedSpec = &toolSpec{short: "nEe:f:i::l:rsuz", sandbox: true,
		long: []string{"quiet", "silent", "debug", "expression=", "file=", "in-place?", "line-length=", "posix",
			"regexp-extended", "separate", "sandbox", "unbuffered", "null-data", "follow-symlinks", "help", "version"},
		deny: []string{"i", "in-place"}}
	// gawk: --sandbox refuses system(), redirections and extensions;
	// -d, -D, -o and -p write files or read a debugger's commands, -i and
	// -l load code.
	gawkSpec = &toolSpec{short: "f:F:v:bcCd::D::e:E:ghi:Ikl:L::MNno::Op::PrsStVW:", sandbox: true,
		long: []string{"file=", "field-separator=", "assign=", "characters-as-bytes", "traditional", "copyright",
			"dump-variables?", "debug?", "source=", "exec=", "gen-pot", "help", "include=", "trace", "csv", "load=",
			"lint?", "bignum", "use-lc-numeric", "non-decimal-data", "pretty-print?", "optimize", "profile?", "posix",
			"re-interval", "no-optimize", "sandbox", "lint-old", "version"},
		deny: []string{"d", "D", "o", "p", "i", "l", "dump-variables", "debug", "pretty-print", "profile", "include", "load"}}
	// mawk has no sandbox: its program must not redirect, pipe or call
	// system(), and must be visible (no -f); -W exec runs a file.
	mawkSpec = &toolSpec{short: "f:F:v:W:", long: []string{"version", "dump", "interactive", "posix_space",
		"random=", "sprintf=", "usage", "help", "exec="},
		deny: []string{"f", "exec"}}
	// awk is whichever of the two the system links it to.
	awkSpec = &toolSpec{real: []string{"mawk", "gawk"}}
	// grep reads; only recursion is unbounded.
	grepSpec = &toolSpec{short: "EFGPe:f:iyvwxcLlm:oqsbHhnTZA:B:C:aD:d:IrRUzV", digits: true,
		long: []string{"extended-regexp", "fixed-strings", "basic-regexp", "perl-regexp", "regexp=", "file=",
			"ignore-case", "no-ignore-case", "invert-match", "word-regexp", "line-regexp", "count", "color?",
			"colour?", "files-without-match", "files-with-matches", "max-count=", "only-matching", "quiet",
			"silent", "no-messages", "byte-offset", "with-filename", "no-filename", "label=", "line-number",
			"line-buffered", "initial-tab", "null", "after-context=", "before-context=", "context=",
			"group-separator=", "no-group-separator", "text", "binary-files=", "devices=", "directories=",
			"exclude=", "exclude-from=", "exclude-dir=", "include=", "recursive", "dereference-recursive",
			"binary", "null-data", "help", "version"},
		deny: []string{"r", "R", "d", "D", "recursive", "dereference-recursive", "directories", "devices"}}
	// sort -o writes, --compress-program runs a program, -T, -S and
	// --batch-size steer its temporary files.
	sortSpec = &toolSpec{short: "bdfgiMhnRrVcCk:mo:sS:t:T:uz",
		long: []string{"ignore-leading-blanks", "dictionary-order", "ignore-case", "general-numeric-sort",
			"ignore-nonprinting", "month-sort", "human-numeric-sort", "numeric-sort", "random-sort",
			"random-source=", "reverse", "sort=", "version-sort", "batch-size=", "check?", "compress-program=",
			"debug", "files0-from=", "key=", "merge", "output=", "stable", "buffer-size=", "field-separator=",
			"temporary-directory=", "parallel=", "unique", "zero-terminated", "help", "version"},
		deny: []string{"o", "T", "S", "output", "compress-program", "temporary-directory", "buffer-size", "batch-size"}}
	// uniq writes its second operand.
	uniqSpec = &toolSpec{short: "cdDf:is:uzw:", digits: true,
		long: []string{"count", "repeated", "all-repeated?", "skip-fields=", "group?", "ignore-case",
			"skip-chars=", "unique", "zero-terminated", "check-chars=", "help", "version"},
		operands: func(ops []string) bool { return len(ops) <= 1 }}
)

// systemDirs are where a pure tool's binary must live (after symlinks):
// a tool found elsewhere, even under a known name, is not trusted.
var systemDirs = []string{"/usr/bin", "/bin"}

// PureArgv reports whether dry-run may really run argv because the command
// only computes text, and returns the argv to run. resolve looks a command
// name up in the hook's PATH (an absolute name as is) and returns its path,
// or "" when there is none.
//
// A command is pure when all of these hold:
//   - its name is a tool of pureTools, given bare or as an absolute path;
//   - it resolves to a root-owned binary, not writable by group or others,
//     under /usr/bin or /bin once symlinks are followed, whose name is the
//     tool's (awk: mawk or gawk), so a ./cut or a /tmp/x/cut never runs;
//   - every option is one the tool's table knows, long options matched by
//     any unambiguous prefix as GNU getopt does, and none of them writes
//     a file, runs a program or never ends (sed -i, sort -o, sort
//     --compress-program, gawk -d/-p/-o, tail -f, ...);
//   - its operands pass the tool's check (uniq has no output operand,
//     mawk's program neither redirects, pipes nor calls system()).
//
// The argv returned runs the resolved path; sed and gawk get --sandbox.
func PureArgv(argv []string, resolve func(string) string) ([]string, bool) {
	name := argv[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		return nil, false
	}
	spec := pureTools[filepath.Base(name)]
	if spec == nil {
		return nil, false
	}
	path := resolve(name)
	if path == "" {
		return nil, false
	}
	real, ok := systemBinary(path)
	if !ok {
		return nil, false
	}
	base := filepath.Base(name)
	want := spec.real
	if want == nil {
		want = []string{base}
	}
	realBase := filepath.Base(real)
	if !slices.ContainsFunc(want, func(w string) bool { return realBase == w || strings.HasPrefix(realBase, w+"-") }) {
		return nil, false // e.g. a cut that is a link to something else
	}
	if base == "awk" { // check it as what it is
		spec = pureTools[strings.SplitN(realBase, "-", 2)[0]]
		base = filepath.Base(strings.SplitN(realBase, "-", 2)[0])
	}
	if spec.any {
		return append([]string{path}, argv[1:]...), true
	}
	args := argv[1:]
	ops, ok := spec.scan(args)
	if !ok {
		return nil, false
	}
	if spec.operands != nil && !spec.operands(ops) {
		return nil, false
	}
	if base == "mawk" && !mawkProgramPure(ops) {
		return nil, false
	}
	out := make([]string, 0, len(argv)+1)
	out = append(out, path)
	if spec.sandbox {
		out = append(out, "--sandbox")
	}
	return append(out, args...), true
}

// systemBinary follows path's symlinks and reports the binary it names
// when that lies in a system directory, is a regular file owned by root
// and is writable by nobody else.
func systemBinary(path string) (string, bool) { return systemBinaryIn(path, systemDirs) }

// systemBinaryIn is systemBinary for the directories dirs.
func systemBinaryIn(path string, dirs []string) (string, bool) {
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

// scan walks GNU-style arguments (options may follow operands; "--" ends
// them) against the table and returns the operands; ok is false at the
// first option that is unknown, ambiguous, missing its argument or
// denied. -W NAME is the long option NAME (mawk's options, gawk's -W form).
func (t *toolSpec) scan(args []string) (ops []string, ok bool) {
	opts, ops, ok := t.parse(args)
	if !ok {
		return nil, false
	}
	for _, o := range opts {
		if slices.Contains(t.deny, o.name) {
			return nil, false
		}
		if o.name == "W" { // -W name[=value]: a long option
			name, _, _ := strings.Cut(o.val, "=")
			n, _, ok := t.longOpt(name)
			if !ok || slices.Contains(t.deny, n) {
				return nil, false
			}
		}
	}
	return ops, true
}

// option is one parsed option: its short letter or full long name ("#"
// for -NUM, whose digits are val), and its argument.
type option struct {
	name   string
	val    string
	hasVal bool
}

// parse splits GNU-style arguments into options, resolved against the
// table, and operands; ok is false at the first option that is unknown,
// ambiguous or missing its argument.
func (t *toolSpec) parse(args []string) (opts []option, ops []string, ok bool) {
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
			opts = append(opts, option{n, val, hasVal})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				if t.digits && c >= '0' && c <= '9' {
					k := j
					for k < len(a) && a[k] >= '0' && a[k] <= '9' {
						k++
					}
					opts = append(opts, option{"#", a[j:k], true})
					j = k - 1
					continue
				}
				kind, known := t.shortOpt(c)
				if !known {
					return nil, nil, false
				}
				if kind == "" {
					opts = append(opts, option{name: string(c)})
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
				opts = append(opts, option{string(c), val, hasVal})
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
func (t *toolSpec) shortOpt(c byte) (string, bool) {
	i := strings.IndexByte(t.short, c)
	if i < 0 || c == ':' {
		return "", false
	}
	rest := t.short[i+1:]
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
func (t *toolSpec) longOpt(word string) (name, kind string, ok bool) {
	if word == "" {
		return "", "", false
	}
	var found []string
	for _, spec := range t.long {
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

// mawkProgramPure reports whether a mawk command's program can be seen and
// neither redirects output, pipes nor calls system(): it is the first
// operand (-f, which hides it in a file, is denied by the table).
func mawkProgramPure(ops []string) bool {
	if len(ops) == 0 {
		return true // no program: mawk fails, and changes nothing
	}
	prog := ops[0]
	return !strings.ContainsAny(prog, ">|") && !strings.Contains(prog, "system")
}

// resolveTTL bounds how long a system-binary resolution is reused.
const resolveTTL = 10 * time.Second

// resolved is a cached systemTool answer.
type resolved struct {
	ok bool
	at time.Time
}

// resolveCache remembers, per name, PATH and directory set, whether a
// command name resolves to the system binary of that name, so that the
// fast path and the in-process tools do not walk PATH and follow symlinks
// for every command (a third of a fast-path hook's time otherwise).
type resolveCache struct {
	mu sync.Mutex
	m  map[string]resolved
}

// systemTool reports whether name, looked up in the hook's PATH, is the
// root-owned binary of that name in one of dirs.
func (c *resolveCache) systemTool(hc interp.HandlerContext, name string, dirs []string) bool {
	if strings.Contains(name, "/") {
		return false
	}
	key := name + "\x00" + hc.Env.Get("PATH").String() + "\x00" + strings.Join(dirs, ":")
	now := time.Now()
	c.mu.Lock()
	r, hit := c.m[key]
	c.mu.Unlock()
	if hit && now.Sub(r.at) < resolveTTL {
		return r.ok
	}
	ok := false
	if path, err := interp.LookPathDir(hc.Dir, hc.Env, name); err == nil {
		real, sys := systemBinaryIn(path, dirs)
		ok = sys && filepath.Base(real) == name
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 1024 {
		c.m = map[string]resolved{}
	}
	c.m[key] = resolved{ok, now}
	c.mu.Unlock()
	return ok
}
