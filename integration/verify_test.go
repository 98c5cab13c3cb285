//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// verifyCard is `flexhook lab verify --json`'s output.
type verifyCard struct {
	OK     bool `json:"ok"`
	Checks []struct {
		N      int      `json:"check"`
		Name   string   `json:"name"`
		OK     bool     `json:"ok"`
		Detail []string `json:"detail"`
	} `json:"checks"`
}

// TestLabVerify runs `flexhook lab verify` on the presets, on a vxlan
// backend written in another style, and on deliberately broken backends:
// each passes, or fails exactly the check it must, naming the leftover.
// The published vxlan recipe has no SubnetRemoveCommand and the
// wireguard one keeps its private key in the state dir after a stop:
// the verifier says so.
func TestLabVerify(t *testing.T) {
	bin := requireLab(t)
	testdata, err := filepath.Abs("../cmd/flexhook/testdata/verify")
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		source []string
		fail   int    // the one check that must fail (0: none)
		detail string // what its detail must name
	}{
		{"host-gw", []string{"--preset", "host-gw"}, 0, ""},
		{"vxlan-own-style", []string{"--config", filepath.Join(testdata, "vxlan-own-style.json")}, 0, ""},
		{"vxlan", []string{"--preset", "vxlan"}, 5, "still holds route: "},
		{"wireguard", []string{"--preset", "wireguard"}, 4, "+ file: privatekey"},
		{"remove-does-nothing", []string{"--config", filepath.Join(testdata, "remove-does-nothing.json")}, 5, "still holds route: "},
		{"shutdown-forgets-device", []string{"--config", filepath.Join(testdata, "shutdown-forgets-device.json")}, 4, "+ link: fx-vxlan kind=vxlan"},
		{"add-not-idempotent", []string{"--config", filepath.Join(testdata, "add-not-idempotent.json")}, 3, "File exists"},
		{"dryrun-differs", []string{"--config", filepath.Join(testdata, "dryrun-differs.json")}, 8, "dev fx-missing"},
		{"mtu-too-big", []string{"--config", filepath.Join(testdata, "mtu-too-big.json")}, 9, "FLANNEL_MTU 1500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, append(append([]string{"lab", "verify"}, tc.source...), "--json")...).Output()
			var card verifyCard
			require.NoError(t, json.Unmarshal(out, &card), "%s", out)
			require.Len(t, card.Checks, 9, "%s", out)
			assert.Equal(t, tc.fail == 0, card.OK)
			assert.Equal(t, tc.fail == 0, err == nil, "exit status 0 only when every check passes: %v", err)
			for _, c := range card.Checks {
				if c.N == tc.fail {
					assert.False(t, c.OK, "check %d must fail: %s", c.N, c.Name)
					assert.Contains(t, strings.Join(c.Detail, "\n"), tc.detail, "check %d names the leftover", c.N)
					continue
				}
				assert.True(t, c.OK, "check %d %s: %s", c.N, c.Name, strings.Join(c.Detail, "\n"))
			}
		})
	}
}
