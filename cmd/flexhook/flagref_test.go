package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repoRoot is the module's root directory (tests change directory).
var repoRoot = filepath.Join(testdata, "..", "..", "..")

// The table's flag struct is the one each command parses: its -h, printed
// by the command itself, is what the struct gives. A command that parsed
// another struct than the table names would fail here, so the flag
// reference and the completions cannot drift from the parser.
func TestCommandTableMatchesParsers(t *testing.T) {
	n := 0
	for _, c := range commandTable() {
		for _, p := range append([][]string{{c.name}}, subPaths(c)...) {
			spec, synopsis := c.flags, c.synopsis
			if len(p) == 2 {
				s := c.subs[subIndex(c, p[1])]
				if s.flags != nil {
					spec, synopsis = s.flags, s.synopsis
				}
			}
			if spec == nil {
				continue
			}
			var want bytes.Buffer
			fs, err := newFlagSet(strings.Join(p, " "), spec(), synopsis, &want)
			require.NoError(t, err)
			fs.help()
			code, out, errOut := cli(t, append(p, "-h")...)
			require.Equal(t, 0, code, "%v -h: %s", p, errOut)
			assert.Equal(t, want.String(), out, "%v -h prints the flags of the table's struct", p)
			n++
		}
	}
	assert.Equal(t, 11, n, "run check dry-run presets leases (list, remove) status leave lab (verify)") // and not version, help, completion
}

func subPaths(c command) [][]string {
	var out [][]string
	for _, s := range c.subs {
		out = append(out, []string{c.name, s.name})
	}
	return out
}

func subIndex(c command, name string) int {
	for i, s := range c.subs {
		if s.name == name {
			return i
		}
	}
	return -1
}

// docs/flags.md is generated from the command table; -update rewrites it.
func TestFlagReference(t *testing.T) {
	got := flagReference(commandTable())
	path := filepath.Join(repoRoot, "docs", "flags.md")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `make docs` (go test ./cmd/flexhook -run TestFlagReference -update) to create it")
	if string(want) != got {
		assert.Equal(t, string(want), got)
		t.Fatal("docs/flags.md is not what the flag definitions give: run `make docs` " +
			"(go test ./cmd/flexhook -run TestFlagReference -update) and commit it")
	}

	for _, c := range commandTable() {
		assert.Contains(t, got, "\n## flexhook "+c.name+"\n", "a section per command")
	}
	assert.Contains(t, got, "\n## flexhook lab verify\n")
	assert.Contains(t, got, "| `--etcd-endpoints URLS` | `FLEXHOOK_ETCD_ENDPOINTS` |  | comma-separated etcd endpoints")
	assert.Contains(t, got, "| `-o`, `--output text\\|wide\\|json` | `FLEXHOOK_OUTPUT` | `text` |", "the short name, | escaped")
	assert.Contains(t, got, "| `--store file\\|etcd` | `FLEXHOOK_LAB_STORE` | `file` |", "lab's --store reads its own variable")
	assert.Contains(t, got, "| `--hook-timeout DURATION` | `FLEXHOOK_HOOK_TIMEOUT` | `2m` |")
	assert.Contains(t, got, "(run: default is the store's config, &lt;prefix&gt;/config in etcd)", "no raw HTML")
	assert.NotContains(t, got, "store-resync", "hidden flags are left out")
	assert.NotContains(t, got, "lease-ttl", "hidden flags are left out")
}

// `help NAME` works for every command in the table: its own usage, or
// (help, version: no flags) the general one.
func TestHelpOfEveryCommand(t *testing.T) {
	for _, c := range commandTable() {
		code, out, errOut := cli(t, "help", c.name)
		require.Equal(t, 0, code, "help %s: %s", c.name, errOut)
		if c.name == "help" || c.name == "version" {
			assert.Equal(t, usageText, out, "help %s", c.name)
			continue
		}
		assert.True(t, strings.HasPrefix(out, "usage: "+c.synopsis+"\n"), "help %s:\n%s", c.name, out)
		assert.Contains(t, usageText, "flexhook "+c.name+" ", "the usage lists %s", c.name)
	}
}
