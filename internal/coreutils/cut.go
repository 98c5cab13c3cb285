package coreutils

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"

	"github.com/flexhook/flexhook/internal/toolargs"
)

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

func parseCut(opts []toolargs.Option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	var (
		mode                  byte // 'b' (bytes, chars) or 'f'
		listS                 string
		delim                 byte = '\t'
		hasDelim, only, compl bool
		outDelim              string
		hasOutDelim           bool
	)
	for _, o := range opts {
		switch o.Name {
		case "b", "c", "bytes", "characters", "f", "fields":
			m := byte('b')
			if o.Name == "f" || o.Name == "fields" {
				m = 'f'
			}
			if mode != 0 {
				return nil, nil, false // "only one type of list may be specified"
			}
			mode, listS = m, o.Val
		case "d", "delimiter":
			if len(o.Val) != 1 {
				return nil, nil, false
			}
			delim, hasDelim = o.Val[0], true
		case "s", "only-delimited":
			only = true
		case "complement":
			compl = true
		case "output-delimiter":
			outDelim, hasOutDelim = o.Val, true
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
