package hooks

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flexhook/flexhook/internal/suggest"
)

// DefaultFile is the file name errors from [Parse] carry.
const DefaultFile = "net-conf.json"

// Error is a config error. Its position, when known, takes one of two forms:
//
//   - File, Line and Col point into the JSON document (invalid JSON, a value
//     of the wrong JSON type): "net-conf.json:3:14: Field: msg".
//   - File is empty, Field names a hook and Line and Col point into that
//     hook's command (a shell syntax error): "SubnetAddCommand:1:42: msg".
//
// Errors about a value's meaning name only the field: "SubnetLen: msg".
type Error struct {
	File  string // the config file's base name; empty for hook and field errors
	Line  int    // 1-based; 0 when there is no position
	Col   int    // 1-based, in characters
	Field string // "Network", "Backend.Type", "SubnetAddCommand", ...
	Msg   string
	Err   error // the underlying error (*json.SyntaxError, syntax.ParseError, ...), if any
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.File == "" && e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// lineCol returns the 1-based line and column (in characters) of byte
// offset off in data.
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	if i := bytes.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, 1 + utf8.RuneCount(before)
}

// closest returns the candidate nearest to s, if it is a likely typo.
func closest(s string, candidates []string) (string, bool) { return suggest.Closest(s, candidates) }
