// Package atomicfile replaces files so that a reader sees the old or the
// new content, never a mix, and a crash keeps one of them: write a
// temporary file in the same directory, fsync it, rename it over the
// file, fsync the directory.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Write replaces path with data (mode perm), through a temporary file
// named ".BASE.tmp*" beside it.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	_, err := WriteIn(dir, base, "."+base+".tmp*", data, perm, time.Time{})
	return err
}

// WriteFunc is Write with the content written by write, through a
// buffer: a large file is never held in memory whole.
func WriteFunc(path string, perm fs.FileMode, write func(io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	_, err := writeIn(dir, base, "."+base+".tmp*", perm, time.Time{}, func(f *os.File) error {
		b := bufio.NewWriterSize(f, 32<<10)
		if err := write(b); err != nil {
			return err
		}
		return b.Flush()
	})
	return err
}

// WriteIn replaces dir/name with data (mode perm) through a temporary
// file named by pattern (os.CreateTemp's), setting its modification time
// to mtime unless zero; it returns the modification time as stored.
func WriteIn(dir, name, pattern string, data []byte, perm fs.FileMode, mtime time.Time) (time.Time, error) {
	return writeIn(dir, name, pattern, perm, mtime, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

func writeIn(dir, name, pattern string, perm fs.FileMode, mtime time.Time, write func(*os.File) error) (time.Time, error) {
	path := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return time.Time{}, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	fail := func(err error) (time.Time, error) { return time.Time{}, fmt.Errorf("write %s: %w", path, err) }
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, time.Now(), mtime); err != nil {
			return fail(err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	done = true
	// The rename is durable only once the directory is synced.
	if err := SyncDir(dir); err != nil {
		return fail(err)
	}
	return fi.ModTime(), nil
}

// SyncDir fsyncs directory dir, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
