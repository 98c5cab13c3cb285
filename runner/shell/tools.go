package shell

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"mvdan.cc/sh/v3/interp"
)

// The in-process text tools: cut, cat, tr, head and tail, which recipes
// run inside $(...) and backticks (`echo $SUBNET | cut -d/ -f1`), run in
// the daemon instead of a fork and exec, behind the inprocess middleware.
// Each implements only forms whose output and exit status it reproduces
// exactly (the parity tests run every form against the real GNU tool);
// an option, an operand or a file it does not handle makes the command
// run the real binary, as does a name that does not resolve to the
// system's binary of that name (see systemBinary). The trace shows them
// as any command.

// toolFunc runs an in-process tool on its streams and returns its exit
// status.
type toolFunc func(stdin io.Reader, stdout io.Writer) int

// inprocessTool returns the in-process version of argv, its files already
// open (closed by the caller through closeAll), or ok=false.
func inprocessTool(argv []string, dir string) (run toolFunc, closeAll func(), ok bool) {
	tool := filepath.Base(argv[0])
	var p toolParser
	switch tool {
	case "cut":
		p = parseCut
	case "cat":
		p = parseCat
	case "tr":
		p = parseTr
	case "head":
		p = parseHead
	case "tail":
		p = parseTail
	default:
		return nil, nil, false
	}
	spec := inprocSpecs[tool]
	opts, ops, ok := spec.parse(argv[1:])
	if !ok {
		return nil, nil, false
	}
	tool1, files, ok := p(opts, ops)
	if !ok {
		return nil, nil, false
	}
	// Every file must open and be a regular file; otherwise the real tool
	// says what is wrong in its own words.
	opened := make([]*os.File, 0, len(files))
	closeAll = func() {
		for _, f := range opened {
			f.Close()
		}
	}
	readers := make([]io.Reader, len(files))
	for i, name := range files {
		if name == "-" {
			continue
		}
		// A file of /proc or /dev says what it says to whoever reads it
		// (/proc/self/stat, /dev/stdin): the real tool must read it itself.
		real, err := filepath.EvalSymlinks(absPath(dir, name))
		if err != nil || strings.HasPrefix(real, "/proc/") || strings.HasPrefix(real, "/dev/") {
			closeAll()
			return nil, nil, false
		}
		f, err := os.Open(real)
		if err != nil {
			closeAll()
			return nil, nil, false
		}
		opened = append(opened, f)
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			closeAll()
			return nil, nil, false
		}
		readers[i] = f
	}
	return func(stdin io.Reader, stdout io.Writer) int {
		return tool1(func(i int) io.Reader {
			if readers[i] == nil {
				return stdin
			}
			return readers[i]
		}, stdout)
	}, closeAll, true
}

// toolParser checks a tool's parsed arguments and returns the tool and its
// input files ("-" is stdin; none means stdin, given as one "-").
type toolParser func(opts []option, ops []string) (run func(in func(int) io.Reader, out io.Writer) int, files []string, ok bool)

// inprocSpecs are the option tables the tools are parsed with (the same
// notation as the dry-run tables). Options the tools do not implement
// are absent, so they run the real binary.
var inprocSpecs = map[string]*toolSpec{
	"cut":  {short: "b:c:d:f:ns", long: []string{"bytes=", "characters=", "delimiter=", "fields=", "complement", "only-delimited", "output-delimiter="}},
	"cat":  {},
	"tr":   {short: "ds", long: []string{"delete", "squeeze-repeats"}},
	"head": {short: "c:n:", digits: true, long: []string{"bytes=", "lines="}},
	"tail": {short: "c:n:", digits: true, long: []string{"bytes=", "lines="}},
}

// inputs defaults the operands to stdin.
func inputs(ops []string) []string {
	if len(ops) == 0 {
		return []string{"-"}
	}
	return ops
}

// status turns an output error into the exit status the real tool would
// have: 128+SIGPIPE when the reader went away (it would have been killed),
// else 1.
func status(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, syscall.EPIPE):
		return 128 + int(syscall.SIGPIPE)
	}
	return 1
}

// eachLine calls f with every line of r, newline included (the last one
// may lack it), until f returns false or an error.
func eachLine(r io.Reader, f func(line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(line) > 0 {
			if ferr := f(line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// --- cat ---

func parseCat(opts []option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	if len(opts) > 0 {
		return nil, nil, false
	}
	files := inputs(ops)
	return func(in func(int) io.Reader, out io.Writer) int {
		for i := range files {
			if _, err := io.Copy(out, in(i)); err != nil {
				return status(err)
			}
		}
		return 0
	}, files, true
}

// --- cut ---

// span is a 1-based inclusive range of a cut list; hi 0 means to the end.
type span struct{ lo, hi int }

// parseList parses a cut LIST: N, N-, -M, N-M, separated by commas.
func parseList(s string) ([]span, bool) {
	if s == "" {
		return nil, false
	}
	var out []span
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		var sp span
		var err error
		switch {
		case !isRange:
			if sp.lo, err = strconv.Atoi(lo); err != nil || sp.lo < 1 || !digitsOnly(lo) {
				return nil, false
			}
			sp.hi = sp.lo
		case lo == "" && hi == "":
			return nil, false
		default:
			sp.lo = 1
			if lo != "" {
				if sp.lo, err = strconv.Atoi(lo); err != nil || sp.lo < 1 || !digitsOnly(lo) {
					return nil, false
				}
			}
			if hi != "" {
				if sp.hi, err = strconv.Atoi(hi); err != nil || sp.hi < 1 || !digitsOnly(hi) || sp.hi < sp.lo {
					return nil, false
				}
			}
		}
		out = append(out, sp)
	}
	return out, true
}

func digitsOnly(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// selected reports whether position i (1-based) is in the list.
func selected(list []span, i int) bool {
	for _, sp := range list {
		if i >= sp.lo && (sp.hi == 0 || i <= sp.hi) {
			return true
		}
	}
	return false
}

func parseCut(opts []option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	var (
		mode                  byte // 'b' (bytes, chars) or 'f'
		listS                 string
		delim                 byte = '\t'
		hasDelim, only, compl bool
		outDelim              string
		hasOutDelim           bool
	)
	for _, o := range opts {
		switch o.name {
		case "b", "c", "bytes", "characters", "f", "fields":
			m := byte('b')
			if o.name == "f" || o.name == "fields" {
				m = 'f'
			}
			if mode != 0 {
				return nil, nil, false // "only one type of list may be specified"
			}
			mode, listS = m, o.val
		case "d", "delimiter":
			if len(o.val) != 1 {
				return nil, nil, false
			}
			delim, hasDelim = o.val[0], true
		case "s", "only-delimited":
			only = true
		case "complement":
			compl = true
		case "output-delimiter":
			outDelim, hasOutDelim = o.val, true
		case "n": // ignored by GNU cut
		default:
			return nil, nil, false
		}
	}
	list, ok := parseList(listS)
	if mode == 0 || !ok || mode == 'b' && (hasDelim || only || hasOutDelim) {
		return nil, nil, false
	}
	if !hasOutDelim {
		outDelim = string(delim)
	}
	c := &cutter{list: list, compl: compl, fields: mode == 'f', delim: delim, only: only, outDelim: outDelim}
	files := inputs(ops)
	return func(in func(int) io.Reader, out io.Writer) int {
		w := bufio.NewWriter(out)
		for i := range files {
			if err := eachLine(in(i), func(line []byte) error { return c.line(w, line) }); err != nil {
				return status(err)
			}
		}
		return status(w.Flush())
	}, files, true
}

// cutter is a parsed cut command.
type cutter struct {
	list     []span
	compl    bool
	fields   bool // -f; else -b/-c
	delim    byte
	only     bool // -s
	outDelim string
	buf      []byte
}

func (c *cutter) keep(i int) bool { return selected(c.list, i) != c.compl }

// line writes what cut prints for one input line (its newline optional).
func (c *cutter) line(w io.Writer, line []byte) error {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	c.buf = c.buf[:0]
	switch {
	case !c.fields:
		for j, b := range line {
			if c.keep(j + 1) {
				c.buf = append(c.buf, b)
			}
		}
	case bytes.IndexByte(line, c.delim) < 0: // no field separator: the line as it is, unless -s
		if c.only {
			return nil
		}
		c.buf = append(c.buf, line...)
	default:
		first := true
		for j, f := range bytes.Split(line, []byte{c.delim}) {
			if !c.keep(j + 1) {
				continue
			}
			if !first {
				c.buf = append(c.buf, c.outDelim...)
			}
			c.buf = append(c.buf, f...)
			first = false
		}
	}
	c.buf = append(c.buf, '\n')
	_, err := w.Write(c.buf)
	return err
}

// --- head, tail ---

// count parses a head/tail count: digits, with a leading '-' (head: all
// but) or '+' (tail: from) when allowed.
func count(s string, signs string) (n int64, sign byte, ok bool) {
	if s != "" && strings.IndexByte(signs, s[0]) >= 0 {
		sign, s = s[0], s[1:]
	}
	if !digitsOnly(s) {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, sign, err == nil
}

// headTailArgs reads -n/-c/-NUM and at most one file.
func headTailArgs(opts []option, ops []string, signs string) (n int64, sign byte, bytesMode bool, files []string, ok bool) {
	n = 10
	for _, o := range opts {
		switch o.name {
		case "n", "lines", "#":
			bytesMode = false
		case "c", "bytes":
			bytesMode = true
		default:
			return 0, 0, false, nil, false
		}
		if n, sign, ok = count(o.val, signs); !ok {
			return 0, 0, false, nil, false
		}
		if o.name == "#" {
			sign = 0
		}
	}
	if len(ops) > 1 {
		return 0, 0, false, nil, false // several files get headers
	}
	return n, sign, bytesMode, inputs(ops), true
}

func parseHead(opts []option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	n, sign, bytesMode, files, ok := headTailArgs(opts, ops, "-")
	if !ok {
		return nil, nil, false
	}
	return func(in func(int) io.Reader, out io.Writer) int {
		r := in(0)
		switch {
		case bytesMode && sign == 0:
			_, err := io.Copy(out, io.LimitReader(r, n))
			return status(err)
		case sign == 0:
			var err error
			left := n
			if left == 0 {
				return 0
			}
			errStop := errors.New("stop")
			err = eachLine(r, func(line []byte) error {
				if _, err := out.Write(line); err != nil {
					return err
				}
				if left--; left == 0 {
					return errStop
				}
				return nil
			})
			if errors.Is(err, errStop) {
				err = nil
			}
			return status(err)
		}
		// All but the last n lines or bytes.
		data, err := io.ReadAll(r)
		if err != nil {
			return 1
		}
		if bytesMode {
			_, err = out.Write(data[:max(int64(len(data))-n, 0)])
			return status(err)
		}
		lines := splitLines(data)
		end := max(int64(len(lines))-n, 0)
		for _, l := range lines[:end] {
			if _, err := out.Write(l); err != nil {
				return status(err)
			}
		}
		return 0
	}, files, true
}

func parseTail(opts []option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	n, sign, bytesMode, files, ok := headTailArgs(opts, ops, "+")
	if !ok {
		return nil, nil, false
	}
	return func(in func(int) io.Reader, out io.Writer) int {
		data, err := io.ReadAll(in(0))
		if err != nil {
			return 1
		}
		if bytesMode {
			start := max(int64(len(data))-n, 0)
			if sign == '+' {
				start = min(max(n-1, 0), int64(len(data)))
			}
			_, err = out.Write(data[start:])
			return status(err)
		}
		lines := splitLines(data)
		start := max(int64(len(lines))-n, 0)
		if sign == '+' {
			start = min(max(n-1, 0), int64(len(lines)))
		}
		for _, l := range lines[start:] {
			if _, err := out.Write(l); err != nil {
				return status(err)
			}
		}
		return 0
	}, files, true
}

// splitLines splits data after each newline (the last line may lack one).
func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return append(out, data)
		}
		out = append(out, data[:i+1])
		data = data[i+1:]
	}
	return out
}

// --- tr ---

// trClasses are the character classes tr knows, in the C locale.
var trClasses = map[string]func(c byte) bool{
	"alnum":  func(c byte) bool { return isAlpha(c) || isDigit(c) },
	"alpha":  isAlpha,
	"blank":  func(c byte) bool { return c == ' ' || c == '\t' },
	"cntrl":  func(c byte) bool { return c < 32 || c == 127 },
	"digit":  isDigit,
	"graph":  func(c byte) bool { return c > 32 && c < 127 },
	"lower":  func(c byte) bool { return c >= 'a' && c <= 'z' },
	"print":  func(c byte) bool { return c >= 32 && c < 127 },
	"punct":  func(c byte) bool { return c > 32 && c < 127 && !isAlpha(c) && !isDigit(c) },
	"space":  func(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' },
	"upper":  func(c byte) bool { return c >= 'A' && c <= 'Z' },
	"xdigit": func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' },
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// trSet expands a tr SET: characters, backslash escapes, ascending ranges
// and [:class:]es. ok is false for what it does not handle ([=c=], [c*n],
// a descending range, a trailing backslash) and for a class when classes
// is false.
func trSet(s string, classes bool) (set []byte, ok bool) {
	type token struct {
		c     byte
		plain bool   // an unescaped character ('-' makes ranges)
		class []byte // a class's characters
	}
	var toks []token
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return nil, false // GNU warns about it
			}
			i++
			e := s[i]
			switch {
			case strings.IndexByte("abfnrtv", e) >= 0:
				c = "\a\b\f\n\r\t\v"[strings.IndexByte("abfnrtv", e)]
			case e >= '0' && e <= '7':
				v, j := 0, i
				for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
					v = v*8 + int(s[j]-'0')
					j++
				}
				if v > 255 {
					return nil, false
				}
				c, i = byte(v), j-1
			default:
				c = e
			}
			toks = append(toks, token{c: c})
		case c == '[' && i+1 < len(s) && (s[i+1] == ':' || s[i+1] == '=' || strings.Contains(s[i:], "*")):
			end := strings.Index(s[i+1:], ":]")
			if s[i+1] != ':' || end < 1 || !classes {
				return nil, false
			}
			is, known := trClasses[s[i+2:i+1+end]]
			if !known {
				return nil, false
			}
			var cl []byte
			for b := range 256 {
				if is(byte(b)) {
					cl = append(cl, byte(b))
				}
			}
			toks = append(toks, token{class: cl})
			i += end + 2
		default:
			toks = append(toks, token{c: c, plain: true})
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.class != nil:
			set = append(set, t.class...)
		case i+2 < len(toks) && toks[i+1].plain && toks[i+1].c == '-' && toks[i+2].class == nil:
			lo, hi := t.c, toks[i+2].c
			if lo > hi {
				return nil, false
			}
			for c := int(lo); c <= int(hi); c++ {
				set = append(set, byte(c))
			}
			i += 2
		default:
			set = append(set, t.c)
		}
	}
	return set, true
}

func parseTr(opts []option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	var del, squeeze bool
	for _, o := range opts {
		switch o.name {
		case "d", "delete":
			del = true
		case "s", "squeeze-repeats":
			squeeze = true
		default:
			return nil, nil, false
		}
	}
	t, ok := trTables(del, squeeze, ops)
	if !ok {
		return nil, nil, false
	}
	return t.run, []string{"-"}, true
}

// trTable is what a tr command does to each byte: delete it, translate
// it, squeeze its repeats.
type trTable struct {
	xlate            [256]byte
	inDel, inSqueeze [256]bool
}

// trTables builds the table of tr [-d] [-s] SET1 [SET2], for the forms
// GNU tr takes (ok is false for the others).
func trTables(del, squeeze bool, ops []string) (*trTable, bool) {
	t := &trTable{}
	for i := range t.xlate {
		t.xlate[i] = byte(i)
	}
	mark := func(set string, dst *[256]bool) bool {
		cs, ok := trSet(set, true)
		for _, c := range cs {
			dst[c] = true
		}
		return ok
	}
	switch {
	case del && !squeeze && len(ops) == 1:
		return t, mark(ops[0], &t.inDel)
	case del && squeeze && len(ops) == 2:
		return t, mark(ops[0], &t.inDel) && mark(ops[1], &t.inSqueeze)
	case !del && squeeze && len(ops) == 1:
		return t, mark(ops[0], &t.inSqueeze)
	case !del && len(ops) == 2:
		caseMap := ops[0] == "[:lower:]" && ops[1] == "[:upper:]" || ops[0] == "[:upper:]" && ops[1] == "[:lower:]"
		s1, ok := trSet(ops[0], true)
		if !ok {
			return nil, false
		}
		s2, ok := trSet(ops[1], caseMap)
		if !ok || len(s2) == 0 || len(s1) == 0 {
			return nil, false
		}
		for i, c := range s1 {
			t.xlate[c] = s2[min(i, len(s2)-1)] // SET2 is padded with its last character
		}
		if squeeze {
			for _, c := range s2 {
				t.inSqueeze[c] = true
			}
		}
		return t, true
	}
	return nil, false
}

func (t *trTable) run(in func(int) io.Reader, out io.Writer) int {
	r := bufio.NewReaderSize(in(0), 64<<10)
	w := bufio.NewWriter(out)
	last := -1
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err != io.EOF {
				return 1
			}
			break
		}
		if t.inDel[c] {
			continue
		}
		c = t.xlate[c]
		if t.inSqueeze[c] && int(c) == last {
			continue
		}
		last = int(c)
		if err := w.WriteByte(c); err != nil {
			return status(err)
		}
	}
	return status(w.Flush())
}

// inprocess is the in-process tools middleware (see [InprocessTools]): a
// command that inprocessTool recognises, whose name resolves to the
// system's binary of that name, runs in the daemon.
func (st *runState) inprocess(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.mw.inprocTools {
		return next
	}
	return func(ctx context.Context, args []string) error {
		hc := interp.HandlerCtx(ctx)
		name := args[0]
		if _, known := inprocSpecs[name]; !known {
			return next(ctx, args) // an unknown tool, or a path
		}
		if !st.s.resolve.systemTool(hc, name, systemDirs) {
			return next(ctx, args)
		}
		run, closeAll, ok := inprocessTool(args, hc.Dir)
		if !ok {
			return next(ctx, args)
		}
		defer closeAll()
		if code := run(hc.Stdin, hc.Stdout); code != 0 {
			return interp.ExitStatus(code)
		}
		return nil
	}
}
