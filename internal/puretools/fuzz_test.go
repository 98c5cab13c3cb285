package puretools_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flexhook/flexhook/internal/puretools"
	"github.com/flexhook/flexhook/internal/testutil"
)

// fuzzTools are the names dry-run may treat as pure tools.
var fuzzTools = []string{"cut", "tr", "sed", "awk", "gawk", "mawk", "head", "tail", "grep", "sort", "uniq",
	"wc", "basename", "dirname", "seq", "md5sum", "sha256sum", "base64", "expr", "cat", "tee", "touch"}

// FuzzPureArgv checks dry-run's classification of commands: whatever
// PureArgv lets run must write no file. As root, each command it lets
// through really runs (as nobody, in an empty directory of nobody's, with
// a 2s bound) and the directory must stay empty; elsewhere only the
// classification runs. (A long computation is not a finding: the hook
// timeout bounds it; the endless forms have their own test.)
func FuzzPureArgv(f *testing.F) {
	seeds := []string{
		"sed -i s/a/X/ data", "sed s/a/b/w out data", "sed --in-pl s/a/X/ data", "sed -n 1p data",
		"gawk -d {print} data", "gawk --prof=out {print} data", "gawk BEGIN{print>\"out\"}", "gawk -W dump-variables=o {print}",
		"mawk BEGIN{print>\"o\"}", "mawk -W exec prog", "awk {print} data",
		"sort -o out data", "sort --outp=out data", "sort --compress-prog=touch data", "sort -u data",
		"uniq data out", "tail -f data", "tail --fo data", "head -c 4 data", "cut -d: -f1 data",
		"grep -r a .", "tr a b", "base64 -d data", "seq 3", "expr 1 + 2", "tee out", "touch out",
	}
	for _, s := range seeds {
		name, args, _ := strings.Cut(s, " ")
		f.Add(uint8(slices.Index(fuzzTools, name)), args)
	}
	look := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			return ""
		}
		return p
	}
	root := os.Geteuid() == 0
	f.Fuzz(func(t *testing.T, tool uint8, args string) {
		argv := append([]string{fuzzTools[int(tool)%len(fuzzTools)]}, strings.Fields(args)...)
		run, ok := puretools.PureArgv(argv, look)
		if !ok {
			return
		}
		if !root {
			testutil.SkipOrFail(t, "needs root: runs the tool as nobody in a directory it owns")
		}
		if slices.Contains([]string{"cat", "tee", "touch"}, argv[0]) {
			t.Fatalf("%q is pure", argv)
		}
		dir := t.TempDir()
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data"), []byte("a\nb\n"), 0o444); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, run[0], run[1:]...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Setpgid: true}
		_ = cmd.Run()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("pure %q wrote %q", run, names)
		}
	})
}
