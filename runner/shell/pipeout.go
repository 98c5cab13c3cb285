package shell

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// orphanGrace is how long a command's output is still read after the
// command exited, while some process it left behind (a daemon started
// with &) keeps the pipe open. What such an orphan writes later goes
// nowhere: no one reads the pipe again.
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

// readAvailable copies what the pipe holds now; eof reports that every
// writer has closed it.
func (p *pipeOut) readAvailable(buf []byte) (eof bool) {
	for {
		n, err := unix.Read(p.rfd, buf)
		switch {
		case n > 0:
			_, _ = p.dst.Write(buf[:n])
		case err == unix.EINTR:
		case n == 0 && err == nil:
			return true
		default: // EAGAIN: empty for now
			return false
		}
	}
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
			if p.readAvailable(*bp) {
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
// write end, copies what is left and closes the read end. Without a
// drainer it reads what the pipe holds now, without waiting; with one,
// it lets it read until EOF, or for orphanGrace if an orphan holds the
// pipe.
func (p *pipeOut) finish() {
	p.w.Close()
	p.mu.Lock()
	p.timer.Stop()
	p.finished = true
	draining := p.draining
	p.mu.Unlock()
	if draining {
		p.stop.Store(time.Now().Add(orphanGrace).UnixNano())
		<-p.done
	} else {
		bp := copyBufs.Get().(*[]byte)
		p.readAvailable(*bp)
		copyBufs.Put(bp)
	}
	unix.Close(p.rfd)
}
