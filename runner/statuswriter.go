package runner

import "log/slog"

// statusWriter writes status.json in its own goroutine, so that the loop
// never waits on the disk for it; a newer status replaces one not yet
// written.
type statusWriter struct {
	ch   chan Status
	done chan struct{}
}

func startStatusWriter(dir string, log *slog.Logger) *statusWriter {
	w := &statusWriter{ch: make(chan Status, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for st := range w.ch {
			if err := saveStatus(dir, st); err != nil {
				log.Error("write status", "error", err)
			}
		}
	}()
	return w
}

// put hands st over (the loop is the only sender).
func (w *statusWriter) put(st Status) {
	select {
	case <-w.ch: // an older status not yet written
	default:
	}
	w.ch <- st
}

// close writes what is pending and ends the goroutine.
func (w *statusWriter) close() {
	close(w.ch)
	<-w.done
}
