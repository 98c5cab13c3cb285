package runner

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

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
	// Close releases what the FS keeps open between calls. It stays
	// usable, keeping nothing open from then on.
	Close() error
}

// osFS is a journalFS on a directory. Its user serialises its calls.
type osFS struct {
	dir string
	// dirUnsynced: a file was created by an unsynced append; the next
	// synced append syncs the directory too, so the file's entry is
	// durable with its content.
	dirUnsynced bool
	// appending holds the files Append keeps open, by name (a log takes
	// one append per line: the ownership table's several per hook). A
	// Truncate or WriteAtomic of the name and Close close them; a file
	// removed or replaced behind the FS's back is found by the next
	// synced append, or the next unsynced one after appendRecheck, which
	// then opens the path again.
	appending map[string]appendFile
	closed    bool // by Close: Append keeps nothing open
}

// appendFile is a file Append keeps open, with its identity at open,
// its size after the last append, and when the path was last checked
// to still name it.
type appendFile struct {
	f       *os.File
	fi      os.FileInfo
	size    int64
	checked time.Time
}

// appendRecheck is how long an unsynced append trusts that the path
// still names the open file (a stat is a third of an append's cost, and
// the ownership table appends several times a hook); a synced append
// always checks.
const appendRecheck = time.Second

func (o *osFS) path(name string) string { return filepath.Join(o.dir, name) }

func (o *osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(o.path(name)) }

// Append appends data; a write that fails part-way (ENOSPC) is cut back
// off, so that the next append starts a clean line. The file stays open
// for the next append to name, unless the path names another file by
// then (renamed away, removed, replaced; checked at every synced append
// and at most appendRecheck apart otherwise): that append opens the
// path again, as the first one did. A failed write or sync closes it.
func (o *osFS) Append(name string, data []byte, sync bool) error {
	a, err := o.appendTo(name, sync)
	if err != nil {
		return err
	}
	if _, werr := a.f.Write(data); werr != nil {
		terr := a.f.Truncate(a.size)
		return errors.Join(werr, terr, o.drop(name))
	}
	a.size += int64(len(data))
	o.appending[name] = a
	if sync {
		if err := a.f.Sync(); err != nil {
			return errors.Join(err, o.drop(name))
		}
	}
	if o.closed {
		if err := o.drop(name); err != nil {
			return err
		}
	}
	if sync && o.dirUnsynced { // a new file is durable once its directory is
		if err := atomicfile.SyncDir(o.dir); err != nil {
			return err
		}
		o.dirUnsynced = false
	}
	return nil
}

// appendTo is the open file name's next append goes to, with its size:
// the one kept open, while the path still names it (checked at a synced
// append, and appendRecheck apart otherwise), else the path opened anew
// and kept.
func (o *osFS) appendTo(name string, sync bool) (appendFile, error) {
	now := time.Now()
	a, open := o.appending[name]
	if open && !sync && now.Sub(a.checked) < appendRecheck {
		return a, nil
	}
	path := o.path(name)
	fi, statErr := os.Stat(path)
	if open {
		// While a is open its inode is not reused, so a path naming the
		// same inode names a's file.
		if statErr == nil && os.SameFile(fi, a.fi) {
			a.size, a.checked = fi.Size(), now
			o.appending[name] = a
			return a, nil
		}
		_ = o.drop(name) // the lines in it were written; the path's file takes the next
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return appendFile{}, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		o.dirUnsynced = true
	}
	ffi, err := f.Stat()
	if err != nil {
		return appendFile{}, errors.Join(err, f.Close())
	}
	a = appendFile{f: f, fi: ffi, size: ffi.Size(), checked: now}
	if o.appending == nil {
		o.appending = map[string]appendFile{}
	}
	o.appending[name] = a
	return a, nil
}

func (o *osFS) WriteAtomic(name string, write func(io.Writer) error) error {
	return errors.Join(o.drop(name), atomicfile.WriteFunc(o.path(name), 0o600, write))
}

// writeData is a WriteAtomic write of data.
func writeData(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func (o *osFS) Truncate(name string, size int64) error {
	cerr := o.drop(name)
	err := os.Truncate(o.path(name), size)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(cerr, err)
}

// Close closes the files Append keeps open.
func (o *osFS) Close() error {
	o.closed = true
	var errs []error
	for name := range o.appending {
		errs = append(errs, o.drop(name))
	}
	return errors.Join(errs...)
}

// drop closes name's file if Append keeps it open.
func (o *osFS) drop(name string) error {
	a, ok := o.appending[name]
	if !ok {
		return nil
	}
	delete(o.appending, name)
	return a.f.Close()
}

// nullFS is the journal's FS in a dry-run: it holds nothing and writes
// nothing.
type nullFS struct{}

func (nullFS) ReadFile(string) ([]byte, error)                 { return nil, fs.ErrNotExist }
func (nullFS) Append(string, []byte, bool) error               { return nil }
func (nullFS) WriteAtomic(string, func(io.Writer) error) error { return nil }
func (nullFS) Truncate(string, int64) error                    { return nil }
func (nullFS) Close() error                                    { return nil }
