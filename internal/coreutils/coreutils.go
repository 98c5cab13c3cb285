// Package coreutils has in-process versions of the text tools recipes run
// inside $(...) and backticks (`echo $SUBNET | cut -d/ -f1`): cut, cat,
// tr, head and tail, run in the daemon instead of a fork and exec (the
// shell's inprocess middleware). Each implements only forms whose output
// and exit status it reproduces exactly (the parity tests run every form
// against the real GNU tool); an option, an operand or a file it does not
// handle is not taken (ok is false), and the real binary runs.
package coreutils

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/flexhook/flexhook/internal/toolargs"
)

// Known reports whether name is one of the tools.
func Known(name string) bool {
	_, ok := inprocSpecs[name]
	return ok
}

// absPath is path relative to dir unless absolute.
func absPath(dir, path string) string {
	if path == "" || strings.HasPrefix(path, "/") {
		return path
	}
	return dir + "/" + path
}

// Func runs an in-process tool on its streams and returns its exit
// status.
type Func func(stdin io.Reader, stdout io.Writer) int

// Command returns the in-process version of argv, its files already
// open (closed by the caller through closeAll), or ok=false.
func Command(argv []string, dir string) (run Func, closeAll func(), ok bool) {
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
	opts, ops, ok := spec.Parse(argv[1:])
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
type toolParser func(opts []toolargs.Option, ops []string) (run func(in func(int) io.Reader, out io.Writer) int, files []string, ok bool)

// inprocSpecs are the option tables the tools are parsed with (the same
// notation as the dry-run tables). Options the tools do not implement
// are absent, so they run the real binary.
var inprocSpecs = map[string]*toolargs.Spec{
	"cut":  {Short: "b:c:d:f:ns", Long: []string{"bytes=", "characters=", "delimiter=", "fields=", "complement", "only-delimited", "output-delimiter="}},
	"cat":  {},
	"tr":   {Short: "ds", Long: []string{"delete", "squeeze-repeats"}},
	"head": {Short: "c:n:", Digits: true, Long: []string{"bytes=", "lines="}},
	"tail": {Short: "c:n:", Digits: true, Long: []string{"bytes=", "lines="}},
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

// readers are the 64 KiB line readers of eachLine and tr: a hook that
// runs cut once per lease would otherwise allocate one per lease.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// pooledReader is a reader from the pool on r; put it back with
// releaseReader when done.
func pooledReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func releaseReader(br *bufio.Reader) {
	br.Reset(nil) // keep no reference to the input
	readers.Put(br)
}

// eachLine calls f with every line of r, newline included (the last one
// may lack it), until f returns false or an error.
func eachLine(r io.Reader, f func(line []byte) error) error {
	br := pooledReader(r)
	defer releaseReader(br)
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

func parseCat(opts []toolargs.Option, ops []string) (func(func(int) io.Reader, io.Writer) int, []string, bool) {
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
