// Package puretools decides which commands dry-run may really run because
// they only compute text (PureArgv), from a table of each tool's options.
package puretools

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/flexhook/flexhook/internal/toolargs"
)

// pureTools are the tools dry-run runs for real, so that the values a hook
// computes with them are right. Each is checked against its table; see
// PureArgv.
var pureTools = map[string]*toolargs.Spec{
	"cut": {Short: "b:c:d:f:nsz", Long: []string{"bytes=", "characters=", "delimiter=", "fields=", "complement",
		"only-delimited", "output-delimiter=", "zero-terminated", "help", "version"}},
	"tr":        {Short: "cCdst", Long: []string{"complement", "delete", "squeeze-repeats", "truncate-set1", "help", "version"}},
	"head":      {Short: "c:n:qvz", Digits: true, Long: []string{"bytes=", "lines=", "quiet", "silent", "verbose", "zero-terminated", "help", "version"}},
	"tail":      tailSpec,
	"sed":       sedSpec,
	"awk":       awkSpec,
	"gawk":      gawkSpec,
	"mawk":      mawkSpec,
	"grep":      grepSpec,
	"sort":      sortSpec,
	"uniq":      uniqSpec,
	"wc":        {Short: "cmlLw", Long: []string{"bytes", "chars", "lines", "files0-from=", "max-line-length", "words", "total=", "help", "version"}},
	"basename":  {Short: "as:z", Long: []string{"multiple", "suffix=", "zero", "help", "version"}},
	"dirname":   {Short: "z", Long: []string{"zero", "help", "version"}},
	"seq":       {Short: "f:s:w", Digits: true, Long: []string{"format=", "separator=", "equal-width", "help", "version"}},
	"md5sum":    sumSpec,
	"sha256sum": sumSpec,
	"base64":    {Short: "diw:", Long: []string{"decode", "ignore-garbage", "wrap=", "help", "version"}},
	"printf":    {Any: true},
	"echo":      {Any: true},
	"expr":      {Any: true},
	"test":      {Any: true},
	"[":         {Any: true},
	"true":      {Any: true},
	"false":     {Any: true},
}

var (
	sumSpec = &toolargs.Spec{Short: "bctzw", Long: []string{"binary", "check", "tag", "text", "zero", "ignore-missing",
		"quiet", "status", "strict", "warn", "help", "version"}}
	// tail -f/-F/--follow never end.
	tailSpec = &toolargs.Spec{Short: "c:fFn:qs:vz", Digits: true,
		Long: []string{"bytes=", "follow?", "lines=", "max-unchanged-stats=", "pid=", "quiet", "silent", "retry",
			"sleep-interval=", "verbose", "zero-terminated", "help", "version"},
		Deny: []string{"f", "F", "follow", "retry", "pid", "sleep-interval", "max-unchanged-stats"},
		// The obsolete form `tail +5f file` follows too.
		Operands: func(ops []string) bool {
			return !slices.ContainsFunc(ops, func(o string) bool { return strings.HasPrefix(o, "+") && strings.ContainsAny(o, "fF") })
		}}
	// sed -i writes files; --sandbox covers the program's w, W, e, r, R.
	sedSpec = &toolargs.Spec{Short: "nEe:f:i::l:rsuz", Sandbox: true,
		Long: []string{"quiet", "silent", "debug", "expression=", "file=", "in-place?", "line-length=", "posix",
			"regexp-extended", "separate", "sandbox", "unbuffered", "null-data", "follow-symlinks", "help", "version"},
		Deny: []string{"i", "in-place"}}
	// gawk: --sandbox refuses system(), redirections and extensions;
	// -d, -D, -o and -p write files or read a debugger's commands, -i and
	// -l load code.
	gawkSpec = &toolargs.Spec{Short: "f:F:v:bcCd::D::e:E:ghi:Ikl:L::MNno::Op::PrsStVW:", Sandbox: true,
		Long: []string{"file=", "field-separator=", "assign=", "characters-as-bytes", "traditional", "copyright",
			"dump-variables?", "debug?", "source=", "exec=", "gen-pot", "help", "include=", "trace", "csv", "load=",
			"lint?", "bignum", "use-lc-numeric", "non-decimal-data", "pretty-print?", "optimize", "profile?", "posix",
			"re-interval", "no-optimize", "sandbox", "lint-old", "version"},
		Deny: []string{"d", "D", "o", "p", "i", "l", "dump-variables", "debug", "pretty-print", "profile", "include", "load"}}
	// mawk has no Sandbox: its program must not redirect, pipe or call
	// system(), and must be visible (no -f); -W exec runs a file.
	mawkSpec = &toolargs.Spec{Short: "f:F:v:W:", Long: []string{"version", "dump", "interactive", "posix_space",
		"random=", "sprintf=", "usage", "help", "exec="},
		Deny: []string{"f", "exec"}}
	// awk is whichever of the two the system links it to.
	awkSpec = &toolargs.Spec{Real: []string{"mawk", "gawk"}}
	// grep reads; only recursion is unbounded.
	grepSpec = &toolargs.Spec{Short: "EFGPe:f:iyvwxcLlm:oqsbHhnTZA:B:C:aD:d:IrRUzV", Digits: true,
		Long: []string{"extended-regexp", "fixed-strings", "basic-regexp", "perl-regexp", "regexp=", "file=",
			"ignore-case", "no-ignore-case", "invert-match", "word-regexp", "line-regexp", "count", "color?",
			"colour?", "files-without-match", "files-with-matches", "max-count=", "only-matching", "quiet",
			"silent", "no-messages", "byte-offset", "with-filename", "no-filename", "label=", "line-number",
			"line-buffered", "initial-tab", "null", "after-context=", "before-context=", "context=",
			"group-separator=", "no-group-separator", "text", "binary-files=", "devices=", "directories=",
			"exclude=", "exclude-from=", "exclude-dir=", "include=", "recursive", "dereference-recursive",
			"binary", "null-data", "help", "version"},
		Deny: []string{"r", "R", "d", "D", "recursive", "dereference-recursive", "directories", "devices"}}
	// sort -o writes, --compress-program runs a program, -T, -S and
	// --batch-size steer its temporary files.
	sortSpec = &toolargs.Spec{Short: "bdfgiMhnRrVcCk:mo:sS:t:T:uz",
		Long: []string{"ignore-leading-blanks", "dictionary-order", "ignore-case", "general-numeric-sort",
			"ignore-nonprinting", "month-sort", "human-numeric-sort", "numeric-sort", "random-sort",
			"random-source=", "reverse", "sort=", "version-sort", "batch-size=", "check?", "compress-program=",
			"debug", "files0-from=", "key=", "merge", "output=", "stable", "buffer-size=", "field-separator=",
			"temporary-directory=", "parallel=", "unique", "zero-terminated", "help", "version"},
		Deny: []string{"o", "T", "S", "output", "compress-program", "temporary-directory", "buffer-size", "batch-size"}}
	// uniq writes its second operand.
	uniqSpec = &toolargs.Spec{Short: "cdDf:is:uzw:", Digits: true,
		Long: []string{"count", "repeated", "all-repeated?", "skip-fields=", "group?", "ignore-case",
			"skip-chars=", "unique", "zero-terminated", "check-chars=", "help", "version"},
		Operands: func(ops []string) bool { return len(ops) <= 1 }}
)

// SystemDirs are where a pure tool's binary must live (after symlinks):
// a tool found elsewhere, even under a known name, is not trusted.
var SystemDirs = []string{"/usr/bin", "/bin"}

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
	real, ok := toolargs.SystemBinary(path, SystemDirs)
	if !ok {
		return nil, false
	}
	base := filepath.Base(name)
	want := spec.Real
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
	if spec.Any {
		return append([]string{path}, argv[1:]...), true
	}
	args := argv[1:]
	ops, ok := spec.Scan(args)
	if !ok {
		return nil, false
	}
	if spec.Operands != nil && !spec.Operands(ops) {
		return nil, false
	}
	if base == "mawk" && !mawkProgramPure(ops) {
		return nil, false
	}
	out := make([]string, 0, len(argv)+1)
	out = append(out, path)
	if spec.Sandbox {
		out = append(out, "--sandbox")
	}
	return append(out, args...), true
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
