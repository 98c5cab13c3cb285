package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is a running `flexhook run` (or flanneld) whose log lines are
// read as they come, each stamped with the time it was read.
type daemon struct {
	name    string // the binary's base name, for errors
	cmd     *exec.Cmd
	started time.Time // just before the process started
	lines   chan logLine
	done    chan struct{}

	mu   sync.Mutex
	tail []string // the last lines, for errors

	stopOnce sync.Once
	stopErr  error
}

type logLine struct {
	at   time.Time
	text string
}

func startDaemon(ctx context.Context, bin string, args []string) (*daemon, error) {
	return startDaemonEnv(ctx, bin, args, nil)
}

// startDaemonEnv is startDaemon with env added to the driver's
// environment (later entries win: GOMEMLIMIT=...).
func startDaemonEnv(ctx context.Context, bin string, args, env []string) (*daemon, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = nil
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{name: filepath.Base(bin), cmd: cmd, started: started, lines: make(chan logLine, 1<<16), done: make(chan struct{})}
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := logLine{time.Now(), sc.Text()}
			d.mu.Lock()
			d.tail = append(d.tail, l.text)
			if len(d.tail) > 20 {
				d.tail = d.tail[1:]
			}
			d.mu.Unlock()
			select {
			case d.lines <- l:
			default: // nobody waits for it
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// waitLine returns when a line matching ok is read.
func (d *daemon) waitLine(ctx context.Context, timeout time.Duration, ok func(string) bool) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, open := <-d.lines:
			if !open {
				return time.Time{}, fmt.Errorf("%s exited; last lines:\n%s", d.name, d.lastLines())
			}
			if ok(l.text) {
				return l.at, nil
			}
		case <-t.C:
			return time.Time{}, fmt.Errorf("timed out after %v; last lines:\n%s", timeout, d.lastLines())
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (d *daemon) lastLines() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

// stop sends SIGTERM (ShutdownCommand runs) and waits for the exit.
func (d *daemon) stop() error {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			_ = d.cmd.Process.Kill()
			<-d.done
			d.stopErr = fmt.Errorf("%s did not stop on SIGTERM", d.name)
		}
	})
	return d.stopErr
}

var fieldRE = regexp.MustCompile(`\b(\w+)=(\d+)\b`)

// field returns the integer value of key=N in a slog text line, or -1.
func field(line, key string) int {
	for _, m := range fieldRE.FindAllStringSubmatch(line, -1) {
		if m[1] == key {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	return -1
}

// untilApplied waits for the first "hooks batch done" that leaves at
// least n leases applied and returns the time from the process's start to
// that line and the daemon's VmHWM read right then.
func (d *daemon) untilApplied(ctx context.Context, timeout time.Duration, n int) (time.Duration, int64, error) {
	at, err := d.waitLine(ctx, timeout, func(l string) bool {
		return strings.Contains(l, `msg="hooks batch done"`) && field(l, "applied") >= n
	})
	if err != nil {
		return 0, 0, err
	}
	hwm, err := vmHWM(d.cmd.Process.Pid)
	return at.Sub(d.started), hwm, err
}

// vmHWM returns a process's peak resident set in bytes.
func vmHWM(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
