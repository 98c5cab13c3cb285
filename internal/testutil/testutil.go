// Package testutil holds small helpers shared by the tests of several
// packages. The netns lab has its own package, internal/netlab.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// SyncBuffer is a bytes.Buffer that writer goroutines (a logger, a child
// process's output, an engine's tracer) and a test can share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AwkIsGawk tells whether awk is GNU awk here (Debian links it to mawk
// until gawk is installed): dry-run runs gawk sandboxed.
func AwkIsGawk() bool {
	p, err := exec.LookPath("awk")
	if err != nil {
		return false
	}
	real, err := filepath.EvalSymlinks(p)
	return err == nil && filepath.Base(real) == "gawk"
}

// Tail is the last n lines of s, for a failure message.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// OpenFDs counts this process's file descriptors open on path (Linux:
// the links in /proc/self/fd), so a test can tell a file was closed.
func OpenFDs(path string) (int, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // as the links name it
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, fd := range fds {
		if to, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && to == path {
			n++
		}
	}
	return n, nil
}
