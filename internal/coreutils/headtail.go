package coreutils

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/flexhook/flexhook/internal/toolargs"
)

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
func headTailArgs(opts []toolargs.Option, ops []string, signs string) (n int64, sign byte, bytesMode bool, files []string, ok bool) {
	n = 10
	for _, o := range opts {
		switch o.Name {
		case "n", "lines", "#":
			bytesMode = false
		case "c", "bytes":
			bytesMode = true
		default:
			return 0, 0, false, nil, false
		}
		if n, sign, ok = count(o.Val, signs); !ok {
			return 0, 0, false, nil, false
		}
		if o.Name == "#" {
			sign = 0
		}
	}
	if len(ops) > 1 {
		return 0, 0, false, nil, false // several files get headers
	}
	return n, sign, bytesMode, inputs(ops), true
}

func parseHead(opts []toolargs.Option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
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

func parseTail(opts []toolargs.Option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
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
