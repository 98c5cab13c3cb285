package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// No secret reaches the log, at debug level with --trace, in both log
// formats: the etcd password (flag or environment; the store is
// unreachable, so the daemon keeps retrying and logging), and the private
// key the wireguard preset's PreStartupCommand makes (run as it is, with
// the file store; the preset's other hooks would change this machine's
// network).
func TestSecretsNotLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	pre := presetHook(t, bin, "wireguard", "PreStartupCommand")
	const password = "s3cret-Pa55w0rd"
	run := func(t *testing.T, state string, env []string, until string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"run", "--public-ip", "192.0.2.1", "--state-dir", state,
			"--subnet-file", filepath.Join(state, "subnet.env"), "--log-level", "debug", "--trace"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var logs testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), until) }, 30*time.Second, 20*time.Millisecond,
			"no %q in the log", until)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		_ = cmd.Wait()
		return logs.String()
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			// The flag with text, the environment with json (a failed
			// connection takes 5s).
			viaEnv := format == "json"
			args := []string{"--preset", "host-gw", "--etcd-endpoints", "http://127.0.0.1:1",
				"--etcd-username", "flexhook", "--log-format", format}
			var env []string
			if viaEnv {
				env = []string{"FLEXHOOK_ETCD_PASSWORD=" + password}
			} else {
				args = append(args, "--etcd-password", password)
			}
			out := run(t, t.TempDir(), env, "etcd not reachable", args...)
			assert.Contains(t, out, "127.0.0.1:1", "the retries are logged")
			assert.NotContains(t, out, password, "env %v: the etcd password is logged:\n%s", viaEnv, out)
			checkFormat(t, format, out)
		})
		t.Run(format+"/private key", func(t *testing.T) {
			if _, err := exec.LookPath("wg"); err != nil {
				testutil.SkipOrFail(t, "no wg (wireguard-tools): the private key check needs it; the password check ran")
			}
			state := t.TempDir()
			cfg := filepath.Join(state, "net-conf.json")
			conf, err := json.Marshal(map[string]any{"Network": "10.62.0.0/16", "Backend": map[string]string{
				"Type": "extension", "PreStartupCommand": pre, "PostStartupCommand": "echo up"}})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(cfg, conf, 0o600))
			out := run(t, state, nil, "lease acquired", "--config", cfg, "--store", filepath.Join(state, "leases"), "--log-format", format)
			priv, err := os.ReadFile(filepath.Join(state, "privatekey"))
			require.NoError(t, err, "PreStartupCommand made no private key:\n%s", out)
			require.Len(t, strings.TrimSpace(string(priv)), 44)
			assert.NotContains(t, out, strings.TrimSpace(string(priv)), "the private key is logged")
			assert.Contains(t, out, "wg genkey", "the trace ran (the check looked at a real log)")
			checkFormat(t, format, out)
		})
	}
}

// checkFormat checks every log line is a JSON object with --log-format
// json, and a key=value line otherwise.
func checkFormat(t *testing.T, format, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if format == "json" {
			var v map[string]any
			assert.NoError(t, json.Unmarshal([]byte(line), &v), "not a JSON line: %s", line)
		} else {
			assert.True(t, strings.HasPrefix(line, "time="), "not a text line: %s", line)
		}
	}
}

// presetHook returns one hook's text from `flexhook presets NAME`.
func presetHook(t *testing.T, bin, preset, hook string) string {
	t.Helper()
	out, err := exec.Command(bin, "presets", preset).Output()
	require.NoError(t, err)
	var c struct{ Backend map[string]string }
	require.NoError(t, json.Unmarshal(out, &c))
	require.NotEmpty(t, c.Backend[hook])
	return c.Backend[hook]
}
