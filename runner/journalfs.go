package runner

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flexhook/flexhook/internal/atomicfile"
)

// journalFS is the journal's view of the state dir. osFS is the real one;
// the simulation test has one that forgets unsynced writes at a crash.
type journalFS interface {
	ReadFile(name string) ([]byte, error)
	// Append appends data to name (created with mode 0600), and syncs it
	// (and, for a new file, its directory) when sync is set.
	Append(name string, data []byte, sync bool) error
	// WriteAtomic replaces name with what write writes (mode 0600): the
	// old or the new content survives a crash, never a mix.
	WriteAtomic(name string, write func(io.Writer) error) error
	Truncate(name string, size int64) error
}

// osFS is a journalFS on a directory.
type osFS struct {
	dir string
	// dirUnsynced: a file was created by an unsynced append; the next
	// synced append syncs the directory too, so the file's entry is
	// durable with its content.
	dirUnsynced bool
}

func (o *osFS) path(name string) string { return filepath.Join(o.dir, name) }

func (o *osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(o.path(name)) }

// Append appends data; a write that fails part-way (ENOSPC) is cut back
// off, so that the next append starts a clean line.
func (o *osFS) Append(name string, data []byte, sync bool) error {
	path := o.path(name)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		o.dirUnsynced = true
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return err
	}
	if _, werr := f.Write(data); werr != nil {
		terr := f.Truncate(size)
		return errors.Join(werr, terr, f.Close())
	}
	var serr error
	if sync {
		serr = f.Sync()
	}
	if err := errors.Join(serr, f.Close()); err != nil {
		return err
	}
	if sync && o.dirUnsynced { // a new file is durable once its directory is
		if err := atomicfile.SyncDir(o.dir); err != nil {
			return err
		}
		o.dirUnsynced = false
	}
	return nil
}

func (o *osFS) WriteAtomic(name string, write func(io.Writer) error) error {
	return atomicfile.WriteFunc(o.path(name), 0o600, write)
}

// writeData is a WriteAtomic write of data.
func writeData(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func (o *osFS) Truncate(name string, size int64) error {
	err := os.Truncate(o.path(name), size)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// nullFS is the journal's FS in a dry-run: it holds nothing and writes
// nothing.
type nullFS struct{}

func (nullFS) ReadFile(string) ([]byte, error)                 { return nil, fs.ErrNotExist }
func (nullFS) Append(string, []byte, bool) error               { return nil }
func (nullFS) WriteAtomic(string, func(io.Writer) error) error { return nil }
func (nullFS) Truncate(string, int64) error                    { return nil }
