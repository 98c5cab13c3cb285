package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
)

// Close kills every process in the lab's namespaces, deletes the
// namespaces (and with them every link), and removes the lab's temp files.
// It is idempotent and keeps going after errors, returning them joined.
// When the logger is a test that failed, node logs are printed first.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nodes := append([]*node(nil), l.nodes...)
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if f, ok := l.log.(interface{ Failed() bool }); ok && f.Failed() {
		for _, n := range nodes {
			l.log.Logf("netlab: node %d (%s) log tail:\n%s", n.index, n.ns, tail(n.logPath, 80))
		}
	}
	var errs []error
	for _, n := range nodes {
		l.mu.Lock()
		cmd, running, done := n.agent.cmd, n.running(), n.agent.done
		l.mu.Unlock()
		if running {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Process.Kill()
			select {
			case <-done:
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("netlab: node %d did not die", n.index))
			}
		}
	}
	names := make([]string, 0, len(nodes)+1)
	for _, n := range nodes {
		l.mu.Lock()
		if n.podNs != "" {
			names = append(names, n.podNs)
		}
		l.mu.Unlock()
		names = append(names, n.ns)
	}
	names = append(names, l.hub)
	for _, name := range names {
		if err := removeNetns(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	if l.work != "" {
		if err := os.RemoveAll(l.work); err != nil {
			errs = append(errs, fmt.Errorf("netlab: remove %s: %w", l.work, err))
		}
	}
	if l.wgHeld {
		others, _ := listLabNetns()
		alive := false
		for _, o := range others {
			if !strings.HasPrefix(o, Prefix+l.id+"-") {
				alive = true
			}
		}
		releaseWireguardDir(alive)
	}
	if len(errs) == 0 {
		l.log.Logf("netlab: lab %s removed", l.id)
	}
	return errors.Join(errs...)
}

// removeNetns kills every process in netns name and deletes it. A
// namespace that is already gone is not an error.
func removeNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Kill what runs there until nothing does (a process may fork while
	// its parent dies): 50 rounds, 20 ms apart.
	err := retry.Do(ctx, retry.Backoff{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 51},
		func(ctx context.Context) error {
			ps, err := netnsProcesses(ctx, name)
			if err != nil || len(ps) == 0 {
				return nil // nothing to kill, or nothing known: the delete says
			}
			for _, p := range ps {
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			}
			return fmt.Errorf("netlab: processes survive in %s: %v", name, ps)
		}, nil)
	if err != nil {
		return err
	}
	if _, err := runIP(ctx, "netns", "del", name); err != nil {
		return err
	}
	return nil
}

func listLabNetns() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// ownerPid extracts <pid> from "fhlab-<pid>-<rand>-..." (also work dirs).
func ownerPid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	pidStr, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

// pidAlive reports whether pid is a live (not zombie) process.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	k := strings.LastIndexByte(s, ')')
	if k < 0 || k+2 >= len(s) {
		return true
	}
	state := s[k+2]
	return state != 'Z' && state != 'X'
}

// Sweep deletes namespaces and temp dirs of labs whose owning process is
// gone (a crashed or killed earlier run), with the processes inside them.
// Labs of live processes are left alone.
func Sweep(ctx context.Context, log Logger) error {
	names, err := listLabNetns()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if pid, ok := ownerPid(name); ok && pidAlive(pid) {
			continue
		}
		log.Logf("netlab: sweeping stale namespace %s", name)
		if err := removeNetns(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"*"))
	for _, d := range dirs {
		if pid, ok := ownerPid(filepath.Base(d)); ok && !pidAlive(pid) {
			log.Logf("netlab: sweeping stale dir %s", d)
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists what of this lab still exists: namespaces with its id,
// processes inside any of its namespaces, its work dir. After Close it
// must be empty.
func (l *Lab) Leftovers() []string {
	var left []string
	names, _ := listLabNetns()
	for _, n := range names {
		if strings.HasPrefix(n, Prefix+l.id+"-") {
			left = append(left, "netns "+n)
		}
	}
	l.mu.Lock()
	inodes := make(map[uint64]string, len(l.inodes))
	for k, v := range l.inodes {
		inodes[k] = v
	}
	l.mu.Unlock()
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil {
			continue
		}
		if ns, ok := inodes[st.Ino]; ok {
			pid := strings.Split(p, "/")[2]
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			left = append(left, fmt.Sprintf("process %s (%s) in %s", pid, strings.TrimSpace(string(comm)), ns))
		}
	}
	if l.work != "" {
		if _, err := os.Stat(l.work); err == nil {
			left = append(left, "dir "+l.work)
		}
	}
	return left
}
