package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// check -o json: one document per verdict, with the text form's exit
// codes; golden files hold the shapes (go test ./cmd/flexhook -update).
func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"check-json-preset", []string{"--preset", "vxlan-prod"}, 0},
		{"check-json-lint-warnings", []string{"--preset", "vxlan"}, 0},
		{"check-json-bad-quote", []string{"--config", filepath.Join("testdata", "bad-quote.json")}, 2},
		{"check-json-bad-json", []string{"--config", filepath.Join("testdata", "bad-json.json")}, 2},
		{"check-json-lint-error", []string{"--config", filepath.Join("testdata", "bad-builtin.json")}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, append([]string{"check", "-o", "json"}, tc.args...)...)
			assert.Equal(t, tc.code, code, errOut)
			var doc map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
			assert.Equal(t, "flexhook/v1", doc["api_version"])
			assert.Equal(t, tc.code == 0, doc["ok"])
			golden(t, tc.name, out)
		})
	}
	// No config named is a usage error, not a verdict: nothing on stdout.
	code, out, _ := cli(t, "check", "-o", "json")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	code, _, errOut := cli(t, "check", "--preset", "vxlan", "-o", "yaml")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `-o "yaml": want text or json`)
}

// check --host -o json: the host's problems are in the document and the
// exit code is 1, as in text.
func TestCheckHostJSON(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"ip", "cat", "cut"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			testutil.SkipOrFail(t, "no %s on this machine", tool)
		}
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	t.Setenv("PATH", bin)
	code, out, _ := cli(t, "check", "--preset", "vxlan", "--host", "-o", "json")
	assert.Equal(t, 1, code)
	var doc struct {
		OK   bool `json:"ok"`
		Host struct {
			OK       bool     `json:"ok"`
			Problems []string `json:"problems"`
		} `json:"host"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	assert.False(t, doc.OK)
	assert.False(t, doc.Host.OK)
	assert.Contains(t, doc.Host.Problems, "SubnetAddCommand:1:159: arp: not found on PATH (Debian: apt-get install --no-install-recommends net-tools)")
}
