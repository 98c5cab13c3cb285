package atomicfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/atomicfile"
)

// WriteFunc replaces the file with what its function writes, larger than
// its buffer too; a function that fails leaves the old content and no
// temporary file.
func TestWriteFunc(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	require.NoError(t, atomicfile.Write(path, []byte("old\n"), 0o600))

	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	require.NoError(t, atomicfile.WriteFunc(path, 0o640, func(w io.Writer) error {
		for range 2 {
			if _, err := w.Write(big); err != nil {
				return err
			}
		}
		return nil
	}))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, append(append([]byte(nil), big...), big...), got)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())

	boom := errors.New("boom")
	err = atomicfile.WriteFunc(path, 0o600, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Len(t, got, 2*len(big), "the old content stays")
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, des, 1, "no temporary file is left")
}
