package shell

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// memOut is a child's stdout or stderr when the hook's side is a writer
// in memory (the hook's captured stdout, its logged stderr, a middleware's
// buffer) rather than a file: a sealed memfd of max+1 bytes the child
// writes into directly, copied to the writer once the child has exited.
// It spares every command a pipe, its poller registration and a copying
// goroutine. A child writing past max gets an error (EPERM) from write;
// the hook's stdout bound (MaxOutput) makes the hook fail then anyway.
//
// Each memOut is fresh and used for one command: a grandchild that keeps
// the descriptor can only write into memory no one reads again.
type memOut struct {
	f   *os.File
	max int64
}

func newMemOut(max int) (*memOut, error) {
	fd, err := unix.MemfdCreate("flexhook-out", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	m := &memOut{f: os.NewFile(uintptr(fd), "flexhook-out"), max: int64(max)}
	if err := unix.Ftruncate(fd, m.max+1); err != nil {
		m.f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		m.f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	return m, nil
}

// copyTo writes what the child wrote (up to the shared file offset, at
// most max+1 bytes) to w and closes the memfd.
func (m *memOut) copyTo(w io.Writer) error {
	defer m.f.Close()
	n, err := m.f.Seek(0, io.SeekCurrent)
	if err != nil || n == 0 {
		return err
	}
	_, err = io.Copy(w, io.NewSectionReader(m.f, 0, min(n, m.max+1)))
	return err
}
