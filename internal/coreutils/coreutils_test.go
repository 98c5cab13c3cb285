package coreutils

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// toolInputs are the stdin texts every parity case runs on.
var toolInputs = []string{
	"",
	"a\n",
	"10.50.2.0/24\n",
	"no newline",
	"x:y:z\n1:2\n\n:lead\ntrail:\nnone\n",
	"l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\nl9\nl10\nl11\nl12\n",
	"tab\tsep\tline\nA B  C   d\r\n\xff\xfe:bytes\n",
	"aaa  bbb::ccc\n\n\nHello World 123\n",
}

// toolCases are argvs the in-process tools must run exactly as the real
// ones: same stdout, same (empty) stderr, same status.
var toolCases = [][]string{
	{"cut", "-d/", "-f1"}, {"cut", "-d", "/", "-f", "1"}, {"cut", "-d/", "-f", "2"}, {"cut", "-f1"},
	{"cut", "-d:", "-f1,3"}, {"cut", "-d:", "-f2-"}, {"cut", "-d:", "-f-2"}, {"cut", "-d:", "-f1-2,4"},
	{"cut", "-s", "-d:", "-f1"}, {"cut", "-sd:", "-f2"}, {"cut", "--complement", "-d:", "-f2"},
	{"cut", "--output-delimiter=-", "-d:", "-f1,2"}, {"cut", "--output-delim", "--", "-d:", "-f1,3"},
	{"cut", "-b1-3"}, {"cut", "-c2"}, {"cut", "-b2-"}, {"cut", "--bytes=1,3"}, {"cut", "-c", "1-2", "--complement"},
	{"cut", "-d:", "--fields=2"}, {"cut", "--fi=2", "--delim=:"}, {"cut", "-nb1"}, {"cut", "-d", " ", "-f2,3"},
	{"cut", "-f", "1", "-d", "/", "-"},
	{"cat"}, {"cat", "-"},
	{"tr", "a-z", "A-Z"}, {"tr", "[:lower:]", "[:upper:]"}, {"tr", "[:upper:]", "[:lower:]"}, {"tr", "-d", `\n`},
	{"tr", "-d", "[:digit:]"}, {"tr", "-s", " "}, {"tr", "-s", "a-z"}, {"tr", "abc", "x"}, {"tr", "-ds", "a", "b"},
	{"tr", `\101\102`, "xy"}, {"tr", `a\-z`, "xyz"}, {"tr", "-d", "[:space:]"}, {"tr", "/", ":"},
	{"tr", "-s", ":", ";"}, {"tr", "[:digit:]", "#"}, {"tr", "-d", "[:punct:][:blank:]"}, {"tr", "a-cx-z", "A-CX-Z"},
	{"tr", `\t\r`, "TR"}, {"tr", "-s", "[:space:]"}, {"tr", "--delete", "l"}, {"tr", "--squeeze-repeats", "a"},
	{"head"}, {"head", "-n", "3"}, {"head", "-n3"}, {"head", "-3"}, {"head", "-c", "5"}, {"head", "-n", "-2"},
	{"head", "-c", "-3"}, {"head", "-n", "0"}, {"head", "--lines=2"}, {"head", "-1"}, {"head", "-c", "0"},
	{"tail"}, {"tail", "-n", "3"}, {"tail", "-3"}, {"tail", "-n", "+2"}, {"tail", "-c", "4"}, {"tail", "-c", "+3"},
	{"tail", "-n", "0"}, {"tail", "--lines=+1"}, {"tail", "-n", "+0"}, {"tail", "-1"}, {"tail", "-c", "+0"},
}

// fallbackCases must run the real binary: forms the in-process tools do
// not reproduce, or that fail (the real tool says why).
var fallbackCases = [][]string{
	{"cut"}, {"cut", "-d::", "-f1"}, {"cut", "-f0"}, {"cut", "-f3-1"}, {"cut", "-b1", "-d:"}, {"cut", "-z", "-f1"},
	{"cut", "-f1", "-b2"}, {"cut", "-f1", "missing-file"}, {"cut", "-d", "", "-f1"}, {"cut", "-f", "x"},
	{"cat", "-n"}, {"cat", "-A"}, {"cat", "missing-file"}, {"cat", "."},
	{"tr", "-c", "a", "b"}, {"tr", "[=a=]", "b"}, {"tr", "z-a", "x"}, {"tr", "-d", "a", "b"}, {"tr", "a"},
	{"tr", "[a*3]", "x"}, {"tr", "a", ""}, {"tr", "a", "[:digit:]"}, {"tr", `a\`, "b"}, {"tr", "-t", "ab", "x"},
	{"head", "-q"}, {"head", "-n", "2k"}, {"head", "a", "b"}, {"head", "-v"},
	{"tail", "-f"}, {"tail", "+2"}, {"tail", "-n", "1k"}, {"tail", "-z"}, {"tail", "a", "b"},
	{"sed", "p"},
	// What these say depends on who reads them.
	{"cut", "-d", " ", "-f4", "/proc/self/stat"}, {"cat", "/dev/stdin"}, {"head", "-n1", "/proc/self/status"},
	{"tail", "-c", "5", "/dev/fd/0"}, {"cat", "/dev/null"},
}

func realTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.SkipOrFail(t, "no %s to compare with", name)
	}
	return p
}

func runReal(t *testing.T, dir string, argv []string, stdin string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(realTool(t, argv[0]), argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

func TestInprocessToolsParity(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f1"), []byte("f:1\nfile one\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f2"), []byte("f:2 no newline"), 0o600))
	cases := append([][]string{}, toolCases...)
	for _, tool := range []string{"cut -d: -f2", "cat", "head -n1", "tail -n1"} {
		argv := strings.Fields(tool)
		cases = append(cases, append(append([]string{}, argv...), "f1"))
		if argv[0] == "cut" || argv[0] == "cat" {
			cases = append(cases, append(append([]string{}, argv...), "f1", "-", "f2"))
		}
	}
	for _, argv := range cases {
		for _, in := range toolInputs {
			run, closeAll, ok := Command(argv, dir)
			require.True(t, ok, "%q is not run in-process", argv)
			var out bytes.Buffer
			code := run(strings.NewReader(in), &out)
			closeAll()
			wantOut, wantErr, wantCode := runReal(t, dir, argv, in)
			assert.Equal(t, wantOut, out.String(), "%q on %q", argv, in)
			assert.Equal(t, wantCode, code, "%q on %q", argv, in)
			assert.Empty(t, wantErr, "%q on %q: the real tool complained; the case belongs to fallbackCases", argv, in)
		}
	}
}

func TestInprocessToolsFallBack(t *testing.T) {
	dir := t.TempDir()
	for _, argv := range fallbackCases {
		_, _, ok := Command(argv, dir)
		assert.False(t, ok, "%q must run the real binary", argv)
	}
}
