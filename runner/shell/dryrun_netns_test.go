//go:build integration

package shell_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

const dryInnerEnv = "FLEXHOOK_SHELL_DRY_INNER"

// dangerous is, per allowed text tool, each option or program form that
// writes a file, runs a program or never ends, as a dry-run hook line in
// a directory holding "data", "prog.awk" (an awk program that writes
// ran-awkf) and "sedscript" (a sed script that writes ran-sedf). Every
// file any of them would write is named ran-*, awkvars.out, awkprof.out
// or data.bak; every program they would run is touch.
var dangerous = map[string][]string{
	"sed": {`sed -i s/a/X/ data`, `sed -ibak s/a/X/ data`, `sed --in-place=.bak s/a/X/ data`,
		`sed --in-pl s/a/X/ data`, `sed --i s/a/X/ data`, `sed -n -i.bak p data`},
	"gawk": {`gawk -d '{print}' data`, `gawk -dran-gd '{print}' data`, `gawk --dump-variables=ran-gdv '{print}' data`,
		`gawk --dump '{print}' data`, `gawk -p '{print}' data`, `gawk --prof=ran-gp '{print}' data`,
		`gawk -o '{print}' data`, `gawk --pretty=ran-go '{print}' data`, `gawk -i inplace '{print "X"}' data`,
		`gawk -l readfile '{print}' data`, `gawk -W dump-variables=ran-gw '{print}' data`, `gawk -Wprof '{print}' data`,
		`gawk -D '{print}' data`, `gawk --deb '{print}' data`},
	"mawk": {`mawk -W exec prog.awk data`, `mawk -We prog.awk data`, `mawk -f prog.awk data`,
		`mawk 'BEGIN{print "x" > "ran-mr"}'`, `mawk 'BEGIN{system("touch ran-ms")}'`,
		`mawk 'BEGIN{print | "touch ran-mp"}'`, `mawk 'BEGIN{printf "x" >> "ran-ma"}'`},
	"sort": {`sort -o ran-so data`, `sort -oran-so2 data`, `sort --output=ran-so3 data`, `sort --outp=ran-so4 data`,
		`sort --o=ran-so5 data`, `sort -uo ran-so6 data`, `sort --compress-program=touch -S 1k data`,
		`sort --compress-prog=touch data`, `sort -T . data`, `sort --temporary-d=. data`, `sort -S 1k data`,
		`sort --batch-size=2 data`},
	"uniq": {`uniq data ran-uo`, `uniq -c data ran-uo2`, `uniq -- data ran-uo3`},
	"tail": {`tail -f data`, `tail -F data`, `tail --fo data`, `tail --follow=name data`, `tail -5f data`,
		`tail +1f data`, `tail --pid=1 -f data`, `tail -n 1 --retry -f data`},
	"grep": {`grep -r a /`, `grep -R a .`, `grep --recur a .`, `grep -d recurse a .`, `grep --direc=recurse a .`,
		`grep -D read a data`},
	"cut":    {`cut --output-file=ran-c -f1 data`, `cut -Z data`}, // unknown options: skipped, never guessed
	"tr":     {`tr --output=ran-t a b`},
	"head":   {`head --output=ran-h data`},
	"wc":     {`wc --output=ran-w data`},
	"md5sum": {`md5sum --output=ran-m data`},
	"base64": {`base64 --output=ran-b data`},
}

// pure is, per tool, a form dry-run does run, so that the table proves it
// is the options that decide, and what each prints.
var pure = map[string]struct{ src, out string }{
	"sed":       {`sed s/a/X/ data`, "X\nb\n"},
	"gawk":      {`gawk '{print "g" $0}' data`, "ga\ngb\n"},
	"mawk":      {`mawk '{print "m" $0}' data`, "ma\nmb\n"},
	"sort":      {`sort -r data`, "b\na\n"},
	"uniq":      {`uniq -c data`, "      1 a\n      1 b\n"},
	"tail":      {`tail -n 1 data`, "b\n"},
	"grep":      {`grep -c a data`, "1\n"},
	"cut":       {`echo a:b | cut -d: -f2`, "b\n"},
	"tr":        {`echo ab | tr a-z A-Z`, "AB\n"},
	"head":      {`head -1 data`, "a\n"},
	"wc":        {`wc -l < data`, "2\n"},
	"md5sum":    {`md5sum < data`, "dd8c6a395b5dd36c56d23275028f526c  -\n"},
	"base64":    {`printf ab | base64`, "YWI=\n"},
	"basename":  {`basename /a/b.c .c`, "b\n"},
	"dirname":   {`dirname /a/b.c`, "/a\n"},
	"seq":       {`seq -s, 3`, "1,2,3\n"},
	"sha256sum": {`printf '' | sha256sum`, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  -\n"},
	"expr":      {`expr 2 + 3`, "5\n"},
}

// TestDryRunDangerousOptions runs every dangerous form of every allowed
// text tool through the dry-run shell, in a throwaway network and mount
// namespace with a scratch working directory: nothing is written there
// (or anywhere the forms name), no program runs, nothing hangs, and the
// namespace's links and routes are as before.
func TestDryRunDangerousOptions(t *testing.T) {
	if os.Getenv(dryInnerEnv) == "1" {
		dryRunDangerousInner(t)
		return
	}
	runInner(t, "TestDryRunDangerousOptions", dryInnerEnv, "gawk", "mawk", "ip")
}

func dryRunDangerousInner(t *testing.T) {
	netState := func() string {
		out, err := exec.Command("ip", "-d", "addr").CombinedOutput()
		require.NoError(t, err)
		routes, err := exec.Command("ip", "route", "show", "table", "all").CombinedOutput()
		require.NoError(t, err)
		return string(out) + string(routes)
	}
	before := netState()
	// A tmpfs of our own for the scratch dir: whatever escaped would
	// show in it, and nothing of the machine's is at stake.
	scratch := t.TempDir()
	dir := filepath.Join(scratch, "cwd")
	require.NoError(t, os.Mkdir(dir, 0o700))
	fixtures := map[string]string{
		"data":      "a\nb\n",
		"prog.awk":  `BEGIN { print "x" > "ran-awkf" }` + "\n",
		"sedscript": "w ran-sedf\n",
	}
	for name, content := range fixtures {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	rec := &recorder{}
	sh, err := shell.New(shell.Dir(dir), shell.DryRun(true), shell.Trace(rec), shell.Timeout(20*time.Second))
	require.NoError(t, err)
	run := func(t *testing.T, src string) (shell.Result, error) {
		// A hang guard, not a timing assertion: a form that ran for real
		// and never ended would hit it.
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		res, err := sh.Run(ctx, shell.Request{Hook: parse(t, hooks.SubnetAdd, src), Stdin: "\n"})
		require.NoError(t, ctx.Err(), "%s hung", src)
		return res, err
	}

	tools := slices.Sorted(func(yield func(string) bool) {
		for k := range dangerous {
			if !yield(k) {
				return
			}
		}
	})
	for _, tool := range tools {
		for _, src := range dangerous[tool] {
			t.Run(tool+"/"+src, func(t *testing.T) {
				rec.evs = nil
				_, err := run(t, src)
				require.NoError(t, err, "a skipped command succeeds")
				require.NotEmpty(t, rec.evs)
				for _, ev := range rec.evs {
					if filepath.Base(ev.Argv[0]) == tool {
						assert.True(t, ev.Skipped, "%s ran", shell.FormatArgv(ev.Argv))
					}
				}
				assert.ElementsMatch(t, []string{"data", "prog.awk", "sedscript"}, dirEntries(t, dir), "a file was written")
				for name, content := range fixtures {
					b, err := os.ReadFile(filepath.Join(dir, name))
					require.NoError(t, err)
					assert.Equal(t, content, string(b), "%s changed", name)
				}
			})
		}
	}
	for _, tool := range slices.Sorted(func(yield func(string) bool) {
		for k := range pure {
			if !yield(k) {
				return
			}
		}
	}) {
		p := pure[tool]
		t.Run("pure/"+tool, func(t *testing.T) {
			rec.evs = nil
			res, err := run(t, p.src)
			require.NoError(t, err, "stderr: %s", res.Stderr)
			assert.Equal(t, p.out, res.Stdout)
			ran := slices.ContainsFunc(rec.evs, func(ev shell.TraceEvent) bool {
				return filepath.Base(ev.Argv[0]) == tool && !ev.Skipped
			})
			assert.True(t, ran, "%s was not run: %v", p.src, rec.evs)
		})
	}

	// Tools at odd paths: copies of touch named like pure tools.
	touch, err := exec.LookPath("touch")
	require.NoError(t, err)
	bin, err := os.ReadFile(touch)
	require.NoError(t, err)
	odd := filepath.Join(scratch, "bin")
	require.NoError(t, os.Mkdir(odd, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(odd, "cut"), bin, 0o755))
	require.NoError(t, os.Symlink(touch, filepath.Join(odd, "head")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tr"), bin, 0o755))
	oddSh, err := shell.New(shell.Dir(dir), shell.DryRun(true), shell.Trace(rec),
		shell.Environ([]string{"PATH=" + odd + ":/usr/bin:/bin"}))
	require.NoError(t, err)
	for _, src := range []string{"cut ran-path", odd + "/cut ran-abs", "head ran-link", "./tr ran-dot"} {
		t.Run("odd/"+src, func(t *testing.T) {
			rec.evs = nil
			_, err := oddSh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.SubnetAdd, src)})
			require.NoError(t, err)
			require.Len(t, rec.evs, 1)
			assert.True(t, rec.evs[0].Skipped, "%s ran", src)
			assert.NoFileExists(t, filepath.Join(dir, strings.Fields(src)[1]))
		})
	}
	for _, name := range []string{"awkvars.out", "awkprof.out"} {
		assert.NoFileExists(t, filepath.Join(dir, name))
	}
	assert.Equal(t, before, netState(), "the namespace changed")
}
