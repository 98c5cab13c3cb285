package netcmd

import (
	"errors"
	"strconv"
	"strings"
)

// ErrNotRead marks a command line this package does not read exactly; the
// real binary runs it and decides.
var ErrNotRead = errors.New("not a form netcmd reads")

// words walks a command's arguments.
type words struct{ a []string }

// next returns the next word, "" after the last (no form has an empty
// word where a word is due, so "" never matches).
func (w *words) next() string {
	if len(w.a) == 0 {
		return ""
	}
	s := w.a[0]
	w.a = w.a[1:]
	return s
}

func (w *words) done() bool { return len(w.a) == 0 }

// devOnce reads the device name after a dev keyword into *dev; a second
// dev, or a word that is no device name, is not read.
func (w *words) devOnce(dev *string) error {
	name, ok := devName(w.next())
	if !ok || *dev != "" {
		return ErrNotRead
	}
	*dev = name
	return nil
}

// matches is iproute2's matches(): word is a non-empty prefix of full.
func matches(word, full string) bool {
	return word != "" && strings.HasPrefix(full, word)
}

// keyword is one entry of a tool's keyword table: its name, and whether
// the tool compares it by prefix (matches) or exactly (strcmp).
type keyword struct {
	name   string
	prefix bool
}

// lookup returns the first keyword of table that w stands for, as the
// tool's chain of comparisons finds it, or "".
func lookup(table []keyword, w string) string {
	for _, k := range table {
		if w == k.name || k.prefix && matches(w, k.name) {
			return k.name
		}
	}
	return ""
}

// number reads s as strtoul(s, &end, 0) does when iproute2 accepts it:
// 0x or 0X and hex digits, a leading 0 and octal digits, else decimal
// digits; nothing else (no sign, no space, no trailing text), at most max.
func number(s string, max uint64) (uint64, bool) {
	base, digits := 10, s
	switch {
	case len(s) > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	if digits == "" || strings.ContainsAny(digits, "+-_ ") {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

// devName checks a device name as the kernel's dev_valid_name takes it:
// 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace.
func devName(s string) (string, bool) {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\r\v\f") {
		return "", false
	}
	return s, true
}
