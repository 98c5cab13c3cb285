// Package testutil holds small helpers shared by the tests of several
// packages. The netns lab has its own package, internal/netlab.
package testutil

import (
	"bytes"
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
