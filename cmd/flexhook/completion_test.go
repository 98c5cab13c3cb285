package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/presets"
)

// completionScript writes `flexhook completion SHELL` to a file and
// returns its path, after comparing it with its golden file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	code, out, errOut := cli(t, "completion", shell)
	require.Equal(t, 0, code, errOut)
	golden(t, "completion-"+shell, out)
	path := filepath.Join(t.TempDir(), "flexhook."+shell)
	require.NoError(t, os.WriteFile(path, []byte(out), 0o644))
	return path
}

// needTool returns the path of a tool the test runs (a shell), or skips
// (fails under CI=true) without it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.SkipOrFail(t, "needs %s (Debian package %s)", name, name)
	}
	return p
}

func TestCompletionUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion"}, "flexhook: completion: want one shell: bash, zsh, fish\n"},
		{[]string{"completion", "bash", "zsh"}, "flexhook: completion: want one shell: bash, zsh, fish\n"},
		{[]string{"completion", "bsh"}, `flexhook: completion: unknown shell "bsh" (did you mean "bash"?)`},
		{[]string{"completion", "powershell"}, `flexhook: completion: unknown shell "powershell" (want bash, zsh, fish)`},
		{[]string{"completion", "--bogus", "bash"}, "flexhook: completion: unknown flag --bogus; see flexhook completion -h"},
		{[]string{"compleiton", "bash"}, `flexhook: unknown command "compleiton" (did you mean "completion"?)`},
	} {
		code, out, errOut := cli(t, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Empty(t, out, "%v", tc.args)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
}

func TestCompletionHelp(t *testing.T) {
	for _, args := range [][]string{{"completion", "-h"}, {"help", "completion"}} {
		code, out, errOut := cli(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, errOut)
		assert.True(t, strings.HasPrefix(out, "usage: flexhook completion bash|zsh|fish\n"), "%v:\n%s", args, out)
		for _, sh := range shells {
			assert.Contains(t, out, "flexhook completion "+sh, "%v: how to load it in %s", args, sh)
		}
	}
	code, out, _ := cli(t, "help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "flexhook completion bash|zsh|fish", "the usage lists the command")
}

// bashComplete sources the script in a bash, sets COMP_WORDS to words
// (the last one is the word at the cursor), calls the completion function
// as bash would on TAB, and returns COMPREPLY. It runs in dir.
func bashComplete(t *testing.T, bash, script, dir string, words ...string) []string {
	t.Helper()
	const driver = `source "$1" || exit 9
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_flexhook || exit 8
printf '%s\n' "${COMPREPLY[@]}"
`
	cmd := exec.CommandContext(t.Context(), bash, append([]string{"--norc", "--noprofile", "-c", driver, "bash", script}, words...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%q: %s", words, stderr.String())
	assert.Empty(t, stderr.String(), "%q", words)
	var reply []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if line != "" {
			reply = append(reply, line)
		}
	}
	slices.Sort(reply)
	return reply
}

func TestBashCompletion(t *testing.T) {
	bash := needTool(t, "bash")
	script := completionScript(t, "bash")
	out, err := exec.CommandContext(t.Context(), bash, "-n", script).CombinedOutput()
	require.NoError(t, err, "bash -n: %s", out)

	// A directory with a subdirectory and two files, for FILE and DIR.
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "state"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "net-conf.json"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "subnet.env"), nil, 0o644))

	names := presets.Names()
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"flexhook", "ru"}, []string{"run"}},
		{[]string{"flexhook", "l"}, []string{"lab", "leases", "leave"}},
		{[]string{"flexhook", "run", "--pre"}, []string{"--preset"}},
		{[]string{"flexhook", "run", "--preset", ""}, names},
		{[]string{"flexhook", "run", "--preset", "vx"}, []string{"vxlan", "vxlan-prod"}},
		// --preset=vx: bash splits the = off (COMP_WORDBREAKS) ...
		{[]string{"flexhook", "run", "--preset", "=", "vx"}, []string{"vxlan", "vxlan-prod"}},
		{[]string{"flexhook", "run", "--preset", "="}, names},
		// ... or, with = not a word break, it stays one word.
		{[]string{"flexhook", "check", "--preset=host"}, []string{"--preset=host-gw", "--preset=host-gw-prod"}},
		// A flag's value is not taken for the command or an argument.
		{[]string{"flexhook", "run", "--state-dir", "presets", "--hook-t"}, []string{"--hook-timeout"}},
		{[]string{"flexhook", "run", "--log-format", ""}, []string{"json", "text"}},
		{[]string{"flexhook", "run", "--log-level", "w"}, []string{"warn"}},
		{[]string{"flexhook", "run", "--wireguard-userspace", "a"}, []string{"always", "auto"}},
		{[]string{"flexhook", "status", "-o", ""}, []string{"json", "text", "wide"}},
		{[]string{"flexhook", "status", "--output", "w"}, []string{"wide"}},
		{[]string{"flexhook", "leases", "-o", ""}, []string{"json", "text"}},
		{[]string{"flexhook", "status", "--j"}, []string{"--json"}},
		// Subcommands, and their flags: lab verify has --json, lab does not.
		{[]string{"flexhook", "leases", ""}, []string{"list", "remove"}},
		{[]string{"flexhook", "leases", "list", "--out"}, []string{"--output"}},
		{[]string{"flexhook", "leases", "remove", ""}, nil},
		{[]string{"flexhook", "lab", ""}, []string{"verify"}},
		{[]string{"flexhook", "lab", "verify", "--j"}, []string{"--json"}},
		{[]string{"flexhook", "lab", "--j"}, nil},
		{[]string{"flexhook", "lab", "--o"}, []string{"--once"}},
		{[]string{"flexhook", "lab", "verify", "--store", ""}, []string{"etcd", "file"}},
		// Files for FILE and PATH, directories for DIR.
		{[]string{"flexhook", "check", "--config", ""}, []string{"net-conf.json", "state", "subnet.env"}},
		{[]string{"flexhook", "run", "--subnet-file", "sub"}, []string{"subnet.env"}},
		{[]string{"flexhook", "run", "--store", ""}, []string{"state"}},
		{[]string{"flexhook", "status", "--state-dir", "s"}, []string{"state"}},
		// Free values: nothing to offer.
		{[]string{"flexhook", "dry-run", "--subnet", ""}, nil},
		// Positional arguments: presets, shells, commands; once only.
		{[]string{"flexhook", "presets", "wire"}, []string{"wireguard", "wireguard-prod"}},
		{[]string{"flexhook", "presets", "vxlan", ""}, nil},
		{[]string{"flexhook", "completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"flexhook", "help", "dr"}, []string{"dry-run"}},
		{[]string{"flexhook", "--v"}, []string{"--version"}},
	} {
		assert.Equal(t, tc.want, bashComplete(t, bash, script, dir, tc.words...), "%q", tc.words)
	}
}

func TestZshCompletion(t *testing.T) {
	zsh := needTool(t, "zsh")
	script := completionScript(t, "zsh")
	out, err := exec.CommandContext(t.Context(), zsh, "-n", script).CombinedOutput()
	require.NoError(t, err, "zsh -n: %s", out)
	// compinit loads it by its first line.
	assert.True(t, strings.HasPrefix(readFile(t, script), "#compdef flexhook\n"))
}

// fishComplete asks fish what it completes line to, as "word\tdescription" lines.
func fishComplete(t *testing.T, fish, script, line string) []string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), fish, "--no-config", "-c", `source $argv[1]; and complete -C $argv[2]`, script, line)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%q: %s", line, stderr.String())
	assert.Empty(t, stderr.String(), "%q", line)
	var words []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if w, _, _ := strings.Cut(l, "\t"); w != "" {
			words = append(words, w)
		}
	}
	slices.Sort(words)
	return words
}

func TestFishCompletion(t *testing.T) {
	fish := needTool(t, "fish")
	script := completionScript(t, "fish")
	out, err := exec.CommandContext(t.Context(), fish, "--no-config", "--no-execute", script).CombinedOutput()
	require.NoError(t, err, "fish --no-execute: %s", out)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"flexhook ru", []string{"run"}},
		{"flexhook run --pre", []string{"--preset"}},
		{"flexhook run --preset ", presets.Names()},
		{"flexhook status -o ", []string{"json", "text", "wide"}},
		{"flexhook leases ", []string{"list", "remove"}},
		{"flexhook lab verify --j", []string{"--json"}},
		{"flexhook lab --j", nil},
		{"flexhook completion ", []string{"bash", "fish", "zsh"}},
	} {
		assert.Equal(t, tc.want, fishComplete(t, fish, script, tc.line), "%q", tc.line)
	}
}

// The values offered for a flag are values it takes: its own check
// accepts them, or its usage text names each.
func TestCompletionValues(t *testing.T) {
	var ll logLevel
	var lf logFormat
	for _, v := range enumValues["log-level"] {
		assert.NoError(t, ll.Set(v), v)
	}
	for _, v := range enumValues["log-format"] {
		assert.NoError(t, lf.Set(v), v)
	}
	seen := map[string]bool{}
	for _, n := range completionTree(commandTable()) {
		for _, f := range n.flags {
			words := enumValues[f.name]
			if words == nil {
				continue
			}
			seen[f.name] = true
			for _, w := range words {
				assert.Contains(t, f.usage, w, "%s --%s: the usage names the value", n.path, f.name)
			}
		}
	}
	for name := range enumValues {
		assert.True(t, seen[name], "--%s: a flag no command has", name)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
