package shell

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// orphanGrace is how long a command's output is still copied after the
// command exited, while some process it left behind (a daemon started
// with &) keeps the pipe open. What such an orphan writes later is read
// and dropped (a goroutine drains the pipe until the orphan closes it),
// so it never gets SIGPIPE.
const orphanGrace = 20 * time.Millisecond

// drainAfter is how long a command may run before a goroutine starts
// copying its output as it comes. Most commands (ip, bridge, wg) are
// done sooner, and their output is read once, after they exited, from a
// pipe large enough to hold it (pipeSize): no goroutine, no poller
// registration, no wake-up while they run.
const drainAfter = 2 * time.Millisecond

// pipeSize is asked for each pipe (F_SETPIPE_SZ; the kernel's default
// pipe-max-size): the hook's output bound fits in it.
const pipeSize = 1 << 20

// pipeOut is a child's stdout or stderr when the hook's side is a writer
// in memory (the hook's captured stdout, its logged stderr, a
// middleware's buffer) rather than a file. A pipe takes every way a
// program opens its output again (/dev/stdout, /proc/self/fd/1, with
// O_APPEND or O_TRUNC), as a shell's pipe does; the writer keeps the
// bound (capWriter drops what is over it and keeps draining, so the
// child never blocks). Unlike os/exec's own pipes, the command's end
// does not wait for orphans that hold the pipe.
type pipeOut struct {
	rfd   int      // the read end, non-blocking
	w     *os.File // the write end, the child's stdout or stderr
	dst   io.Writer
	timer *time.Timer
	done  chan struct{} // closed when the drainer ends
	stop  atomic.Int64  // unix nanos after which the drainer stops; 0: not yet
	eof   bool          // the drainer saw every writer close the pipe

	mu       sync.Mutex
	draining bool // a drainer runs
	finished bool // finish was called
}

// copyBufs are the copying buffers (a hook's output is mostly a line).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

func newPipeOut(dst io.Writer) (*pipeOut, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	p := &pipeOut{rfd: fds[0], w: os.NewFile(uintptr(fds[1]), "flexhook-out"), dst: dst, done: make(chan struct{})}
	p.timer = time.AfterFunc(drainAfter, p.drain)
	return p, nil
}

// readChunk is how much one readSome copies at most before it lets its
// caller look at the clock: an orphan that writes without end (yes &)
// must not keep a hook from ending.
const readChunk = 256 << 10

// readSome copies what the pipe holds now, at most readChunk bytes; eof
// reports that every writer closed it (or the pipe failed: nothing more
// will come), empty that it holds nothing now.
func (p *pipeOut) readSome(buf []byte) (eof, empty bool) {
	for n := 0; n < readChunk; {
		k, err := unix.Read(p.rfd, buf)
		switch {
		case k > 0:
			_, _ = p.dst.Write(buf[:k])
			n += k
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false, true
		default:
			return true, false // EOF (k == 0), or an error: stop reading
		}
	}
	return false, false
}

// drain copies the pipe into dst as data comes, for a command that runs
// long or writes much, until EOF or the stop time finish sets.
func (p *pipeOut) drain() {
	p.mu.Lock()
	if p.draining || p.finished {
		p.mu.Unlock()
		return
	}
	p.draining = true
	p.mu.Unlock()
	go func() {
		defer close(p.done)
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		for {
			if eof, _ := p.readSome(*bp); eof {
				p.eof = true
				return
			}
			if s := p.stop.Load(); s != 0 && time.Now().UnixNano() >= s {
				return
			}
			pfd := []unix.PollFd{{Fd: int32(p.rfd), Events: unix.POLLIN}}
			_, _ = unix.Poll(pfd, 5) // ms; bounds how late a stop is seen
		}
	}()
}

// finish is called once the child has exited: it closes the parent's
// write end and copies what is left. Without a drainer it reads what the
// pipe holds now, without waiting; with one, it lets it read until EOF,
// or for orphanGrace if an orphan holds the pipe. Then, if an orphan
// still holds it, a goroutine reads and drops what it writes until it
// closes it (through the runtime's poller: no thread is held).
func (p *pipeOut) finish() {
	p.w.Close()
	p.mu.Lock()
	p.timer.Stop()
	p.finished = true
	draining := p.draining
	p.mu.Unlock()
	eof := false
	if draining {
		p.stop.Store(time.Now().Add(orphanGrace).UnixNano())
		<-p.done
		eof = p.eof
	} else {
		// All the child wrote is in the pipe (up to pipeSize): read it
		// whole, or until the grace is up if an orphan keeps writing.
		bp := copyBufs.Get().(*[]byte)
		for deadline := time.Now().Add(orphanGrace); ; {
			var empty bool
			if eof, empty = p.readSome(*bp); eof || empty || time.Now().After(deadline) {
				break
			}
		}
		copyBufs.Put(bp)
	}
	if eof {
		unix.Close(p.rfd)
		return
	}
	orphans := os.NewFile(uintptr(p.rfd), "flexhook-orphan-out") // non-blocking: pollable
	go func() {
		_, _ = io.Copy(io.Discard, orphans)
		orphans.Close()
	}()
}
