//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// TestLabCommand runs `flexhook lab --once` from the real binary on a
// custom config (host-gw's hooks written another way), then the host-gw
// preset with etcd as the store: every pod address reaches every other,
// the traced commands are shown, and nothing of the lab is left.
func TestLabCommand(t *testing.T) {
	bin := requireLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{
  "Network": "10.50.0.0/16",
  "Backend": {
    "Type": "extension",
    "SubnetAddCommand": "route() { ip route \"$1\" \"$SUBNET\" via \"$PUBLIC_IP\"; }; route replace",
    "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"
  }
}`), 0o600))
	out, err := exec.CommandContext(ctx, bin, "lab", "--config", cfg, "--nodes", "2", "--once").CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	assert.Contains(t, s, "2 nodes running "+cfg)
	assert.Contains(t, s, "SubnetAddCommand 10.50.")
	assert.Contains(t, s, "+ ip route replace 10.50.")
	assert.Equal(t, 2, strings.Count(s, "✓"), "both directions reach:\n%s", s)
	assert.NotContains(t, s, "✗")
	noLeftovers(t, s)

	// The same with etcd (Debian's etcd-server) as the store.
	out, err = exec.CommandContext(ctx, bin, "lab", "--preset", "host-gw", "--nodes", "2", "--store", "etcd", "--once").CombinedOutput()
	require.NoError(t, err, "%s", out)
	s = string(out)
	assert.Contains(t, s, "2 nodes running preset host-gw (store http://192.0.2.1:2379)")
	assert.Equal(t, 2, strings.Count(s, "✓"), "both directions reach:\n%s", s)
	noLeftovers(t, s)
}

// noLeftovers checks that the lab whose id the output names removed its
// namespaces.
func noLeftovers(t *testing.T, s string) {
	t.Helper()
	m := regexp.MustCompile(`netlab: lab (\S+) ready`).FindStringSubmatch(s)
	require.NotNil(t, m, "no lab id in:\n%s", s)
	left, err := filepath.Glob("/run/netns/" + netlab.Prefix + m[1] + "-*")
	require.NoError(t, err)
	assert.Empty(t, left, "the lab removed its namespaces")
}
