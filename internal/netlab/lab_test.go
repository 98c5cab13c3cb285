package netlab

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var execCommand = exec.CommandContext

func TestReadSubnetEnv(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       string // "" = not found
	}{
		{"flannel format", "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_MTU=1450\n", "10.50.3.1/24"},
		{"bare network gets .1", "FLANNEL_SUBNET=10.50.7.0/24\n", "10.50.7.1/24"},
		{"quoted", "FLANNEL_SUBNET=\"10.50.9.1/24\"\n", "10.50.9.1/24"},
		{"missing", "FLANNEL_NETWORK=10.50.0.0/16\n", ""},
		{"partial write", "FLANNEL_SUBNET=10.50.", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "subnet.env")
			require.NoError(t, os.WriteFile(p, []byte(tc.body), 0o600))
			got, ok := readSubnetEnv(p)
			if tc.want == "" {
				require.False(t, ok, got)
				return
			}
			require.True(t, ok)
			require.Equal(t, netip.MustParsePrefix(tc.want), got)
		})
	}
}

func TestOwnerPid(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"fhlab-1234-abcdef-hub", 1234, true},
		{"fhlab-77-0a0b0c-n3", 77, true},
		{"fhlab-1234-abcdef-98765", 1234, true},
		{"fhlab-x-abcdef-n1", 0, false},
		{"other-1234-n1", 0, false},
	} {
		pid, ok := ownerPid(tc.name)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.pid, pid, tc.name)
	}
}

func TestNewWithoutHandleReexec(t *testing.T) {
	was := reexecInstalled.Swap(false)
	defer reexecInstalled.Store(was)
	_, err := New(context.Background(), t)
	require.ErrorIs(t, err, ErrNoReexec)
}

// The state-dir snapshot keeps dot-files (a hidden leftover is a
// leftover) but not flexhook's own atomic-write temporaries.
func TestFlexhookTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".status.json.tmp123": true, ".applied.json.tmp9": true, ".owners.json.tmp1": true,
		".privatekey": false, ".wg-key": false, "status.json": false, ".status.json": false,
	} {
		if got := flexhookTemp(name); got != want {
			t.Errorf("flexhookTemp(%q) = %v, want %v", name, got, want)
		}
	}
}
