package shell_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/runner/shell"
)

// A private key and its public key, as wg pubkey prints it.
const (
	wgKeyPriv = "4O1Vhzg4tAMYw/JD+THcNcXivOeZ8Rv0drqzpjXgnF4="
	wgKeyPub  = "9Hmf3B44SpQQvycIyqRq9LMpTRdij8CRkfmVL5Em8yo="
)

// wgKeySteps run in order in a state dir holding privatekey (wgKeyPriv),
// emptykey (empty), badkey (not a key), twolines (the key twice) and
// worldkey (a key, mode 0644), once with the real wg and once with the
// fast path. fast marks the steps whose wg commands must all run in the
// daemon; every other step must end as wg does by running it. stdin is
// the hook's own. keyFile names a file the step writes a new key to and
// whose public key the step prints: the real wg pubkey must agree.
var wgKeySteps = []struct {
	cmd, stdin, keyFile string
	fast                bool
}{
	{cmd: "wg pubkey < privatekey", fast: true},
	{cmd: "wg pubkey", stdin: wgKeyPriv + "\n", fast: true},                        // the hook's stdin
	{cmd: "wg pubkey; read X; echo \"[$X]\"", stdin: wgKeyPriv + "\n", fast: true}, // wg reads it all
	{cmd: "echo " + wgKeyPriv + " | wg pubkey", fast: true},
	{cmd: "printf '%s' " + wgKeyPriv + " | wg pubkey", fast: true},              // no newline
	{cmd: "printf '%s \\t\\r\\n\\n' " + wgKeyPriv + " | wg pubkey", fast: true}, // trailing whitespace
	{cmd: "wg pubkey < emptykey", fast: true},
	{cmd: "wg pubkey < badkey", fast: true},
	{cmd: "wg pubkey < twolines", fast: true},
	{cmd: "printf ' %s\\n' " + wgKeyPriv + " | wg pubkey", fast: true}, // a leading space
	{cmd: "printf 'short' | wg pubkey", fast: true},
	{cmd: "echo " + wgKeyPriv[:42] + "5= | wg pubkey", fast: true},                                        // stray bits
	{cmd: "wg pubkey", fast: true},                                                                        // no stdin: /dev/null
	{cmd: "wg pubkey < privatekey | wg pubkey", fast: true},                                               // a public key read as a private one
	{cmd: "wg pubkey < nosuchfile"},                                                                       // the shell's error: wg never runs
	{cmd: "wg genkey | tee gen1 | wg pubkey", keyFile: "gen1", fast: true},                                // the wireguard preset
	{cmd: "[ -s gen2 ] || wg genkey > gen2; wg pubkey < gen2", keyFile: "gen2", fast: true},               // wireguard-prod's
	{cmd: "[ -s gen2 ] || wg genkey > gen2; wg pubkey < gen2", keyFile: "gen2", fast: true},               // the key kept
	{cmd: "wg genkey > worldkey", fast: true},                                                             // wg warns
	{cmd: "wg genkey >> worldkey; wg pubkey < worldkey", fast: true},                                      // two keys: refused
	{cmd: "wg genkey > gen3 && wg pubkey < gen3 > pub3 && wg pubkey < gen3", keyFile: "gen3", fast: true}, // files 0600
	{cmd: "wg genkey extra"},                                                                              // wg's usage errors
	{cmd: "wg pubkey --help < privatekey"},
	{cmd: "wg genpsk > psk"},
	{cmd: "/usr/bin/wg pubkey < badkey"}, // a path: the real wg, its PROG_NAME
}

// keyRE is a WireGuard key in base64.
var keyRE = regexp.MustCompile(`[A-Za-z0-9+/]{43}=`)

// TestWgKeysParity runs wgKeySteps with the real wg and with the fast
// path: every step ends alike (exit status, stdout, stderr, the trace,
// the state dir's files and modes, keys made anew standing as <key>),
// the fast steps run no wg process (done in process, per the debug log),
// and each new key's public key is the one the real wg computes.
func TestWgKeysParity(t *testing.T) {
	wgPath, err := exec.LookPath("wg")
	if err != nil {
		testutil.SkipOrFail(t, "needs wg (Debian: wireguard-tools)")
	}
	type stepResult struct {
		status                int
		stdout, stderr, trace string
		files                 string
		inProcess             int
	}
	realPub := func(t *testing.T, keyFile string) string {
		f, err := os.Open(keyFile)
		require.NoError(t, err)
		defer f.Close()
		cmd := exec.Command(wgPath, "pubkey")
		cmd.Stdin = f
		out, err := cmd.Output()
		require.NoError(t, err, keyFile)
		return string(out)
	}
	runs := map[bool][]stepResult{}
	for _, fast := range []bool{false, true} {
		dir := t.TempDir()
		for name, data := range map[string]string{"privatekey": wgKeyPriv + "\n", "emptykey": "", "badkey": "not a key\n",
			"twolines": wgKeyPriv + "\n" + wgKeyPriv + "\n", "worldkey": wgKeyPriv + "\n"} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600))
		}
		require.NoError(t, os.Chmod(filepath.Join(dir, "worldkey"), 0o644))
		var logs, trace bytes.Buffer
		sh, err := shell.New(shell.Dir(dir), shell.FastPath(fast), shell.Trace(shell.NewTextTracer(&trace)),
			shell.Logger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		require.NoError(t, err)
		for _, s := range wgKeySteps {
			logs.Reset()
			trace.Reset()
			res, err := sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PreStartup, s.cmd), Stdin: s.stdin})
			r := stepResult{stdout: normKeys(res.Stdout), stderr: strings.ReplaceAll(res.Stderr, dir, "$DIR"), trace: trace.String(),
				files: dirState(t, dir), inProcess: strings.Count(logs.String(), `msg="done in process"`)}
			var he *shell.HookError
			if err != nil {
				require.ErrorAs(t, err, &he, s.cmd)
				r.status = he.Status
			}
			if s.keyFile != "" {
				assert.Equal(t, realPub(t, filepath.Join(dir, s.keyFile)), res.Stdout,
					"%s (fast path %v): the real wg pubkey of %s", s.cmd, fast, s.keyFile)
			}
			runs[fast] = append(runs[fast], r)
		}
		require.NoError(t, sh.Close())
	}
	inProc := 0
	for i, s := range wgKeySteps {
		want, got := runs[false][i], runs[true][i]
		assert.Equal(t, want.status, got.status, "%s: status", s.cmd)
		assert.Equal(t, want.stdout, got.stdout, "%s: stdout", s.cmd)
		assert.Equal(t, want.stderr, got.stderr, "%s: stderr", s.cmd)
		assert.Equal(t, want.trace, got.trace, "%s: trace", s.cmd)
		assert.Equal(t, want.files, got.files, "%s: the state dir", s.cmd)
		assert.Zero(t, want.inProcess, "%s: nothing in process without the fast path", s.cmd)
		wgCmds := strings.Count(got.trace, "+ wg ")
		if s.fast {
			assert.Equal(t, wgCmds, got.inProcess, "%s: every wg command in process", s.cmd)
		} else {
			assert.Zero(t, got.inProcess, "%s: the real wg's", s.cmd)
		}
		inProc += got.inProcess
	}
	// The steps do what they say (the real wg's results).
	at := func(i int) stepResult { return runs[false][i] }
	assert.Equal(t, wgKeyPub+"\n", at(0).stdout)
	assert.Equal(t, at(0).stdout+"[]\n", at(2).stdout)
	assert.Equal(t, 1, at(6).status)
	assert.Equal(t, "wg: Key is not the correct length or format\n", at(6).stderr)
	assert.Equal(t, "wg: Trailing characters found after key\n", at(8).stderr)
	assert.Equal(t, at(16).stdout, at(17).stdout, "the kept key")
	assert.Contains(t, at(18).stderr, "Warning: writing to world accessible file.")
	assert.True(t, strings.HasSuffix(at(19).stderr, "\nwg: Trailing characters found after key\n"), at(19).stderr)
	assert.Equal(t, "Usage: wg genkey\n", at(21).stderr)
	assert.Equal(t, "/usr/bin/wg: Key is not the correct length or format\n", at(24).stderr)
	t.Logf("%d steps, %d wg commands in process", len(wgKeySteps), inProc)
}

// normKeys replaces every key but the fixed ones with <key>.
func normKeys(s string) string {
	return keyRE.ReplaceAllStringFunc(s, func(k string) string {
		if k == wgKeyPriv || k == wgKeyPub {
			return k
		}
		return "<key>"
	})
}

// dirState lists dir's files with their modes and contents, keys other
// than the fixed ones as <key>.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range dirEntries(t, dir) {
		st, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		fmt.Fprintf(&b, "%s %v %q\n", name, st.Mode(), normKeys(string(data)))
	}
	return b.String()
}
