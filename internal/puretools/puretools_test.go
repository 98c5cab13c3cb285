package puretools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPureArgv(t *testing.T) {
	look := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			return ""
		}
		return p
	}
	tests := []struct {
		argv string
		run  string // the argv dry-run runs; "" when it is skipped
	}{
		{"cut -d/ -f1", "/usr/bin/cut -d/ -f1"},
		{"/usr/bin/cut -f1", "/usr/bin/cut -f1"},
		{"/bin/cut -f1", "/bin/cut -f1"},
		{"./cut -f1", ""},
		{"cut --bogus", ""},
		{"cut --fie=1", "/usr/bin/cut --fie=1"},
		{"cut --fields 1", "/usr/bin/cut --fields 1"},
		{"cut -f", ""}, // missing its argument
		{"ip route add x", ""},
		{"tee f", ""},
		{"cat f", ""},
		{"xargs rm", ""},
		{"sed s/a/b/", "/usr/bin/sed --sandbox s/a/b/"},
		{"sed -n -e s/i/b/p", "/usr/bin/sed --sandbox -n -e s/i/b/p"},
		{"sed -i s/a/b/ f", ""},
		{"sed -ni s/a/b/ f", ""},
		{"sed -i.bak s/a/b/ f", ""},
		{"sed -e s/a/b/ -i f", ""},
		{"sed --in-place s/a/b/ f", ""},
		{"sed --in s/a/b/ f", ""},
		{"sed --i s/a/b/ f", ""},
		{"sed s/a/b/ -- -i", "/usr/bin/sed --sandbox s/a/b/ -- -i"},
		{"sed -e -i s/a/b/", "/usr/bin/sed --sandbox -e -i s/a/b/"}, // -i is -e's script
		{"gawk {print}", "/usr/bin/gawk --sandbox {print}"},
		{"gawk -i inplace {print} f", ""},
		{"gawk -dout {print}", ""},
		{"gawk --dump {print}", ""},
		{"gawk --prof=out {print}", ""},
		{"gawk -o {print}", ""},
		{"gawk -W dump-variables=out {print}", ""},
		{"gawk -Wprofile {print}", ""},
		{"gawk -W version", "/usr/bin/gawk --sandbox -W version"},
		{"gawk -f prog.awk", "/usr/bin/gawk --sandbox -f prog.awk"},
		// awk is gawk or mawk, whichever the system links it to.
		{"awk {print$1}", ifGawk("/usr/bin/awk --sandbox {print$1}", "/usr/bin/awk {print$1}")},
		{"awk -F: {print$1}", ifGawk("/usr/bin/awk --sandbox -F: {print$1}", "/usr/bin/awk -F: {print$1}")},
		{"awk {print>\"f\"}", ifGawk("/usr/bin/awk --sandbox {print>\"f\"}", "")},
		{"awk {system(\"x\")}", ifGawk("/usr/bin/awk --sandbox {system(\"x\")}", "")},
		{"awk -f prog.awk", ifGawk("/usr/bin/awk --sandbox -f prog.awk", "")},
		{"awk -W exec prog", ifGawk("/usr/bin/awk --sandbox -W exec prog", "")}, // gawk: a program file, sandboxed
		{"mawk {print$1}", "/usr/bin/mawk {print$1}"},
		{"mawk {print>\"f\"}", ""},
		{"mawk {print|\"sh\"}", ""},
		{"mawk BEGIN{system(\"x\")}", ""},
		{"mawk -f prog.awk", ""},
		{"mawk -W exec prog", ""},
		{"mawk -We prog", ""},
		{"mawk -W version", "/usr/bin/mawk -W version"},
		{"sort -u", "/usr/bin/sort -u"},
		{"sort -o out", ""},
		{"sort -uo out", ""},
		{"sort --output=out", ""},
		{"sort --outp=out", ""},
		{"sort --o=out", ""},
		{"sort --compress-prog=x", ""},
		{"sort -T /tmp", ""},
		{"sort --temp=/tmp", ""},
		{"sort -S 1k", ""},
		{"sort -k 1 -t o", "/usr/bin/sort -k 1 -t o"},
		{"sort -t -o", "/usr/bin/sort -t -o"}, // -o is -t's separator
		{"uniq in", "/usr/bin/uniq in"},
		{"uniq in out", ""},
		{"uniq -f 1 in", "/usr/bin/uniq -f 1 in"},
		{"tail -n 1", "/usr/bin/tail -n 1"},
		{"tail -5", "/usr/bin/tail -5"},
		{"tail -5f log", ""},
		{"tail -f log", ""},
		{"tail --fo log", ""},
		{"tail --follow=name log", ""},
		{"tail +1f log", ""},
		{"grep -r x /", ""},
		{"grep --recur x /", ""},
		{"grep --direc=recurse x /", ""},
		{"grep -e x -i", "/usr/bin/grep -e x -i"},
		{"head -c 4", "/usr/bin/head -c 4"},
		{"/usr/bin/printf %s x", "/usr/bin/printf %s x"},
		{"expr 1 + 1", "/usr/bin/expr 1 + 1"},
	}
	for _, tt := range tests {
		t.Run(tt.argv, func(t *testing.T) {
			got, ok := PureArgv(strings.Fields(tt.argv), look)
			assert.Equal(t, tt.run != "", ok)
			if ok {
				assert.Equal(t, tt.run, strings.Join(got, " "))
			}
		})
	}
}

// A tool is trusted by what it resolves to, not by its name.
func TestPureArgvNeedsTheSystemTool(t *testing.T) {
	dir := t.TempDir()
	touch, err := exec.LookPath("touch")
	require.NoError(t, err)
	data, err := os.ReadFile(touch)
	require.NoError(t, err)
	fake := filepath.Join(dir, "cut")
	require.NoError(t, os.WriteFile(fake, data, 0o755))
	link := filepath.Join(dir, "head")
	require.NoError(t, os.Symlink(touch, link)) // a system binary, but not head
	at := func(p string) func(string) string { return func(string) string { return p } }
	for _, tc := range []struct{ argv, path string }{
		{"cut ran", fake},
		{fake + " ran", fake},
		{"head ran", link},
		{"cut ran", ""}, // not found
	} {
		_, ok := PureArgv(strings.Fields(tc.argv), at(tc.path))
		assert.False(t, ok, "%s resolving to %q", tc.argv, tc.path)
	}
}

var awkIsGawk = testutil.AwkIsGawk()

func ifGawk(gawk, mawk string) string {
	if awkIsGawk {
		return gawk
	}
	return mawk
}
