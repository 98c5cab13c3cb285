package runner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/testutil"
)

// fileIs asserts path's content.
func fileIs(t *testing.T, path, want string, msg string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err, msg)
	assert.Equal(t, want, string(b), msg)
}

func openFDs(t *testing.T, path string) int {
	t.Helper()
	n, err := testutil.OpenFDs(path)
	require.NoError(t, err)
	return n
}

// Append keeps a log open between appends, and every other way the file
// changes reaches the next append: a Truncate (a compaction, a torn tail
// cut) or a WriteAtomic of the name through the FS, and a rename or a
// removal behind its back (the next line then starts a new file at the
// path). Close closes it, and later appends keep nothing open.
func TestOSFSAppendFollowsThePath(t *testing.T) {
	dir := t.TempDir()
	o := &osFS{dir: dir}
	path := filepath.Join(dir, OwnersLogFile)
	appendLine := func(s string) {
		t.Helper()
		require.NoError(t, o.Append(OwnersLogFile, []byte(s+"\n"), false))
	}

	appendLine("a")
	appendLine("b")
	fileIs(t, path, "a\nb\n", "appends")
	assert.Equal(t, 1, openFDs(t, path), "one file kept open between appends")

	require.NoError(t, o.Truncate(OwnersLogFile, 0))
	assert.Zero(t, openFDs(t, path), "Truncate closes it")
	appendLine("c")
	fileIs(t, path, "c\n", "after Truncate to 0 the next line is at offset 0")
	appendLine("d")
	require.NoError(t, o.Truncate(OwnersLogFile, 2))
	appendLine("e")
	fileIs(t, path, "c\ne\n", "after a cut the next line follows it")

	require.NoError(t, o.WriteAtomic(OwnersLogFile, writeData([]byte("w\n"))))
	assert.Zero(t, openFDs(t, path), "WriteAtomic closes it")
	appendLine("f")
	fileIs(t, path, "w\nf\n", "after WriteAtomic the next line goes to the new file")

	// Behind its back: an unsynced append trusts the open file for
	// appendRecheck (age ends that), a synced one always checks.
	age := func() {
		a := o.appending[OwnersLogFile]
		a.checked = time.Time{}
		o.appending[OwnersLogFile] = a
	}
	require.NoError(t, os.Rename(path, path+".old"))
	appendLine("f2")
	fileIs(t, path+".old", "w\nf\nf2\n", "within appendRecheck an unsynced append goes to the open file")
	age()
	appendLine("g")
	fileIs(t, path, "g\n", "renamed away: a new file at the path")
	fileIs(t, path+".old", "w\nf\nf2\n", "the renamed file gets nothing more")
	assert.Zero(t, openFDs(t, path+".old"), "the renamed file is closed")

	require.NoError(t, os.WriteFile(path+".new", []byte("n\n"), 0o600))
	require.NoError(t, os.Rename(path+".new", path))
	require.NoError(t, o.Append(OwnersLogFile, []byte("h\n"), true))
	fileIs(t, path, "n\nh\n", "replaced by a rename: a synced append goes to the new file at once")

	require.NoError(t, os.Remove(path))
	age()
	appendLine("i")
	fileIs(t, path, "i\n", "removed: a new file at the path")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, 1, openFDs(t, path))

	require.NoError(t, o.Close())
	assert.Zero(t, openFDs(t, path), "Close closes it")
	appendLine("j")
	fileIs(t, path, "i\nj\n", "appends after Close")
	assert.Zero(t, openFDs(t, path), "nothing kept open after Close")
}

const fsizeInnerEnv = "FLEXHOOK_RUNNER_FSIZE_INNER"

// A write that fails part-way (here past RLIMIT_FSIZE: the kernel writes
// what fits, then refuses with EFBIG) is cut back off the kept file, so
// the next append starts a clean line. The limit is the process's, so the
// test runs again alone in a child process of the test binary.
func TestOSFSAppendCutsBackAFailedWrite(t *testing.T) {
	if os.Getenv(fsizeInnerEnv) != "1" {
		exe, err := os.Executable()
		require.NoError(t, err)
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), fsizeInnerEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("inner test:\n%s", out)
		require.NoError(t, err)
		require.Contains(t, string(out), "--- PASS: "+t.Name())
		return
	}
	const limit = 4096
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: limit}))
	dir := t.TempDir()
	o := &osFS{dir: dir}
	path := filepath.Join(dir, JournalLogFile)
	line := func(i, n int) []byte { return []byte(fmt.Sprintf("%-*d\n", n-1, i)) }
	for i := range limit / 100 {
		require.NoError(t, o.Append(JournalLogFile, line(i, 100), i%2 == 0))
	}
	good := limit / 100 * 100
	err := o.Append(JournalLogFile, line(99, 100), true) // 96 bytes fit
	require.ErrorIs(t, err, syscall.EFBIG)
	fi, statErr := os.Stat(path)
	require.NoError(t, statErr)
	assert.EqualValues(t, good, fi.Size(), "the part written is cut back off")
	assert.Zero(t, openFDs(t, path), "a failed write closes the file")

	require.NoError(t, o.Append(JournalLogFile, line(7, 50), false))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Len(t, b, good+50)
	assert.True(t, strings.HasSuffix(string(b[:good]), "\n"))
	assert.Equal(t, string(line(7, 50)), string(b[good:]), "the next append starts a clean line")
}

// BenchmarkOSFSAppend appends owners.log lines as a hook's claims and
// releases do (unsynced), emptied every ownersCompactEvery lines as
// compaction does.
func BenchmarkOSFSAppend(b *testing.B) {
	o := &osFS{dir: b.TempDir()}
	b.Cleanup(func() { _ = o.Close() })
	line := []byte(`{"Object":"route 10.50.2.0/24","By":"10.50.2.0/24"}` + "\n")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := o.Append(OwnersLogFile, line, false); err != nil {
			b.Fatal(err)
		}
		if n++; n%ownersCompactEvery == 0 {
			if err := o.Truncate(OwnersLogFile, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
}
