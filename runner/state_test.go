package runner

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// status.json, written through the file's buffer, is what
// json.MarshalIndent renders, with a newline, and reads back the same.
func TestSaveStatus(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := Status{
		Subnet: netip.MustParsePrefix("10.50.1.0/24"), PublicIP: netip.MustParseAddr("192.0.2.1"),
		Applied:   []netip.Prefix{netip.MustParsePrefix("10.50.2.0/24"), netip.MustParsePrefix("10.50.3.0/24")},
		Failing:   []Failure{{Subnet: netip.MustParsePrefix("10.50.4.0/24"), Hook: "SubnetAddCommand", Error: `exit <1> & "x"`, Attempts: 2}},
		UpdatedAt: at, MTU: 1450, MTUSource: "default", Pid: 7,
		Refused:    []Refused{{Key: "10.50.9.0-24", Reason: "overlaps", Since: at}},
		RefusedNow: map[string]int{"overlaps": 1}, Batch: &BatchProgress{Phase: "add", Done: 1, Total: 2, Since: at},
	}
	require.NoError(t, saveStatus(dir, st))
	got, err := os.ReadFile(filepath.Join(dir, StatusFile))
	require.NoError(t, err)
	want, err := json.MarshalIndent(st, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(got))
	back, err := ReadStatus(dir)
	require.NoError(t, err)
	assert.Equal(t, st, back)
}
