package coreutils

import (
	"bufio"
	"io"
	"strings"

	"github.com/flexhook/flexhook/internal/toolargs"
)

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

func parseTr(opts []toolargs.Option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
	var del, squeeze bool
	for _, o := range opts {
		switch o.Name {
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
	r := pooledReader(in(0))
	defer releaseReader(r)
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
