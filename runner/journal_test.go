package runner

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

func openTestJournal(t *testing.T, dir string) (*journal, string) {
	t.Helper()
	var logs testutil.SyncBuffer
	j, err := openJournal(&osFS{dir: dir}, slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return time.Unix(1700000000, 0) })
	require.NoError(t, err)
	return j, logs.String()
}

func journalStrings(j *journal) []string {
	var out []string
	for _, a := range j.sorted() {
		out = append(out, strings.TrimSpace(a.Subnet.String()+" "+a.PublicIP.String()+" "+a.BackendData))
	}
	return out
}

// Every version whose Add may start is kept, several per subnet, each
// until its own Remove; a reopen (a crash, no compaction) sees the same.
func TestJournalVersions(t *testing.T) {
	dir := t.TempDir()
	j, _ := openTestJournal(t, dir)
	v2, v3 := ver("10.50.7.0/24 192.0.2.2 a"), ver("10.50.7.0/24 192.0.2.3 a")
	require.NoError(t, j.intend([]*journalLease{v2}))
	require.NoError(t, j.compact())
	require.NoError(t, j.intend([]*journalLease{v3, ver("10.50.7.0/24 192.0.2.3 a")}))
	assert.Equal(t, []string{"10.50.7.0/24 192.0.2.2 a", "10.50.7.0/24 192.0.2.3 a"}, journalStrings(j))
	require.NoError(t, j.forget(v2))

	again, logs := openTestJournal(t, dir)
	assert.Equal(t, []string{"10.50.7.0/24 192.0.2.3 a"}, journalStrings(again),
		"the version added after the last rewrite is what a Remove needs, not applied.json's")
	assert.Empty(t, logs)
	assert.Empty(t, again.problem)

	require.NoError(t, again.compact())
	fi, err := os.Stat(filepath.Join(dir, JournalLogFile))
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the rewrite empties the log")
	fi, err = os.Stat(filepath.Join(dir, JournalFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	third, _ := openTestJournal(t, dir)
	assert.Equal(t, journalStrings(again), journalStrings(third))
}

// A torn tail (a crash mid-append, also zeroed blocks) is cut off, the
// start goes on and says so, and the next append lands on a clean line.
func TestJournalTornTail(t *testing.T) {
	for _, tail := range []string{`{"Op":"add","Subnet":"10.50.5.0/24","Publ`, "\x00\x00\x00\x00\n\x00\x00", `{"Op":"add","Subnet":"10.50.5.0/24","PublicIP":"192.0.2.5","BackendType":"extension"}`} {
		dir := t.TempDir()
		j, _ := openTestJournal(t, dir)
		require.NoError(t, j.intend([]*journalLease{ver("10.50.2.0/24 192.0.2.2 x")}))
		f, err := os.OpenFile(filepath.Join(dir, JournalLogFile), os.O_WRONLY|os.O_APPEND, 0)
		require.NoError(t, err)
		_, err = f.WriteString(tail)
		require.NoError(t, err)
		require.NoError(t, f.Close())

		j, logs := openTestJournal(t, dir)
		assert.Equal(t, []string{"10.50.2.0/24 192.0.2.2 x"}, journalStrings(j), "%q", tail)
		assert.Contains(t, logs, "cut a torn tail")
		assert.Contains(t, j.problem, "torn tail")
		require.NoError(t, j.intend([]*journalLease{ver("10.50.3.0/24 192.0.2.3 y")}))
		j, _ = openTestJournal(t, dir)
		assert.Equal(t, []string{"10.50.2.0/24 192.0.2.2 x", "10.50.3.0/24 192.0.2.3 y"}, journalStrings(j))
		assert.Empty(t, j.problem, "repaired once, clean after")
	}
}

// A corrupt body is moved aside and reported; what parses is kept.
func TestJournalCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := `{"Op":"add","Subnet":"10.50.4.0/24","PublicIP":"192.0.2.4","BackendType":"extension"}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalLogFile), []byte("not json\n"+good+"\n"), 0o600))
	j, logs := openTestJournal(t, dir)
	assert.Equal(t, []string{"10.50.4.0/24 192.0.2.4"}, journalStrings(j))
	assert.Contains(t, logs, "applied.log is corrupt (line 1 does not parse")
	assert.FileExists(t, filepath.Join(dir, JournalLogFile+".corrupt-1700000000"))

	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalFile), []byte(`{"Version":9}`), 0o600))
	j, _ = openTestJournal(t, dir)
	assert.Empty(t, journalStrings(j))
	assert.Contains(t, j.problem, "unsupported version 9")
	assert.FileExists(t, filepath.Join(dir, JournalFile+".corrupt-1700000000"))
	b, err := os.ReadFile(filepath.Join(dir, JournalFile))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"Version": 2`, "a clean journal is written in its place")
}

// Files written by version 1 (applied.json's Applied, log lines without
// Op) still load.
func TestJournalVersion1(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalFile), []byte(
		`{"Version":1,"Applied":[{"Subnet":"10.50.2.0/24","PublicIP":"192.0.2.2","BackendType":"extension","BackendData":"x"}]}`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalLogFile), []byte(
		`{"Subnet":"10.50.2.0/24","PublicIP":"192.0.2.9","BackendType":"extension","BackendData":"x"}`+"\n"), 0o600))
	j, _ := openTestJournal(t, dir)
	assert.Equal(t, []string{"10.50.2.0/24 192.0.2.2 x", "10.50.2.0/24 192.0.2.9 x"}, journalStrings(j))
	assert.Empty(t, j.problem)
}

// When intent cannot be recorded, nothing is.
func TestJournalIntentFails(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes through 0500; make the path unusable instead
		dir := t.TempDir()
		j, _ := openTestJournal(t, dir)
		j.fs = &osFS{dir: filepath.Join(dir, "missing")}
		assert.Error(t, j.intend([]*journalLease{ver("10.50.2.0/24 192.0.2.2 x")}))
		assert.Zero(t, j.len())
		return
	}
	dir := t.TempDir()
	j, _ := openTestJournal(t, dir)
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	assert.Error(t, j.intend([]*journalLease{ver("10.50.2.0/24 192.0.2.2 x")}))
	assert.Zero(t, j.len())
}

// applied.json, written one version at a time, is what
// json.MarshalIndent writes for the whole file, and reads back the same.
func TestJournalEncode(t *testing.T) {
	j, _ := openTestJournal(t, t.TempDir())
	empty, err := j.encode()
	require.NoError(t, err)
	want, err := json.MarshalIndent(journalFile{Version: journalVersion}, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(empty))

	dual := ver("10.50.3.0/24 192.0.2.3 \"q\"\\u")
	dual.IPv6Subnet, dual.PublicIPv6 = netip.MustParsePrefix("fd00:0:0:3::/64"), netip.MustParseAddr("2001:db8::3")
	require.NoError(t, j.intend([]*journalLease{ver("10.50.7.0/24 192.0.2.2 a"), dual, ver("10.50.7.0/24 192.0.2.9")}))
	got, err := j.encode()
	require.NoError(t, err)
	var all []journalLease
	for _, v := range j.sorted() {
		all = append(all, *v)
	}
	want, err = json.MarshalIndent(journalFile{Version: journalVersion, Leases: all}, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(got))

	require.NoError(t, j.compact())
	again, _ := openTestJournal(t, j.fs.(*osFS).dir)
	assert.Equal(t, journalStrings(j), journalStrings(again))
	assert.Equal(t, 3, again.len())
}
