package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Running reports whether node i's flexhook process is alive.
func (l *Lab) Running(i int) bool {
	n := l.mustNode(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	return n.running()
}

func (n *node) running() bool {
	if n.agent.done == nil {
		return false
	}
	select {
	case <-n.agent.done:
		return false
	default:
		return true
	}
}

// StartNode runs `flexhook run --store S --public-ip U --state-dir D
// --subnet-file F args...` in node i's network namespace and its own mount
// namespace, waits until the lease is in subnet.env, then puts the
// subnet's .1 on bridge cni0. args normally hold --preset or --config.
func (l *Lab) StartNode(ctx context.Context, i int, args ...string) error {
	n, err := l.node(i)
	if err != nil {
		return err
	}
	if l.flexhook == "" {
		return errors.New("netlab: no flexhook binary (Flexhook)")
	}
	l.mu.Lock()
	if n.running() {
		l.mu.Unlock()
		return fmt.Errorf("netlab: node %d already running", i)
	}
	n.agent.args = append([]string(nil), args...)
	l.mu.Unlock()

	if err := os.Remove(n.subnetFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: node %d: %w", i, err)
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("netlab: node %d log: %w", i, err)
	}
	argv := []string{"netns", "exec", n.ns, l.self, l.flexhook, "run",
		"--store", l.store,
		"--public-ip", n.underlay.String(),
		"--state-dir", n.stateDir,
		"--subnet-file", n.subnetFile,
	}
	if n.underlay6.IsValid() {
		argv = append(argv, "--public-ipv6", n.underlay6.String())
	}
	argv = append(argv, args...)
	fmt.Fprintf(logFile, "=== netlab: start node %d at %s: flexhook %s\n",
		i, time.Now().Format(time.RFC3339Nano), strings.Join(argv[5:], " "))
	wgDir := filepath.Join(n.dir, "wireguard-run") // the node's /run/wireguard, across its agents
	if err := os.MkdirAll(wgDir, 0o700); err != nil {
		logFile.Close()
		return fmt.Errorf("netlab: node %d: %w", i, err)
	}
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(), reexecEnv+"="+modeMountWrap, wgDirEnv+"="+wgDir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("netlab: node %d start: %w", i, err)
	}
	done := make(chan struct{})
	l.mu.Lock()
	n.agent.cmd, n.agent.done, n.agent.logFile, n.agent.waitErr = cmd, done, logFile, nil
	l.mu.Unlock()
	go func() {
		err := cmd.Wait()
		l.mu.Lock()
		n.agent.waitErr = err
		l.mu.Unlock()
		logFile.Close()
		close(done)
	}()
	l.log.Logf("netlab: node %d (%s, %s) started, pid %d", i, n.ns, n.underlay, cmd.Process.Pid)

	pod, err := l.waitSubnet(ctx, n, done)
	if err != nil {
		return err
	}
	if err := l.setPod(ctx, n, pod); err != nil {
		return err
	}
	l.log.Logf("netlab: node %d has subnet %s, pod address %s", i, pod.Masked(), pod.Addr())
	if pod6, ok := readSubnetEnv6(n.subnetFile); ok && n.underlay6.IsValid() {
		if _, err := runIP(ctx, "-n", n.ns, "addr", "replace", pod6.String(), "dev", "cni0", "nodad"); err != nil {
			return err
		}
		l.mu.Lock()
		n.pod6 = pod6
		l.mu.Unlock()
		l.log.Logf("netlab: node %d has IPv6 subnet %s, pod address %s", i, pod6.Masked(), pod6.Addr())
	}
	return nil
}

const startTimeout = 30 * time.Second

func (l *Lab) waitSubnet(ctx context.Context, n *node, done <-chan struct{}) (netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p, ok := readSubnetEnv(n.subnetFile); ok {
			return p, nil
		}
		select {
		case <-done:
			l.mu.Lock()
			err := n.agent.waitErr
			l.mu.Unlock()
			return netip.Prefix{}, fmt.Errorf("netlab: node %d: flexhook exited before writing %s (%w); log:\n%s",
				n.index, n.subnetFile, err, tail(n.logPath, 40))
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("netlab: node %d: no FLANNEL_SUBNET in %s: %w; log:\n%s",
				n.index, n.subnetFile, ctx.Err(), tail(n.logPath, 40))
		case <-tick.C:
		}
	}
}

func (l *Lab) setPod(ctx context.Context, n *node, pod netip.Prefix) error {
	l.mu.Lock()
	old := n.pod
	l.mu.Unlock()
	if old == pod {
		return nil
	}
	if !old.IsValid() {
		for _, args := range [][]string{
			{"-n", n.ns, "link", "add", "cni0", "type", "bridge"},
			{"-n", n.ns, "link", "set", "cni0", "up"},
		} {
			if _, err := runIP(ctx, args...); err != nil {
				return err
			}
		}
	} else if _, err := runIP(ctx, "-n", n.ns, "addr", "flush", "dev", "cni0"); err != nil {
		return err
	}
	if _, err := runIP(ctx, "-n", n.ns, "addr", "add", pod.String(), "dev", "cni0"); err != nil {
		return err
	}
	l.mu.Lock()
	n.pod = pod
	l.mu.Unlock()
	return nil
}

// StopNode sends SIGTERM to node i's flexhook and waits for it to exit
// (SIGKILL after 20 s). It returns an error when the exit was not clean.
func (l *Lab) StopNode(ctx context.Context, i int) error {
	return l.stop(ctx, i, syscall.SIGTERM)
}

// LeaveNode makes node i's flexhook leave the cluster (SIGUSR1, what
// `flexhook leave` sends): it removes every peer, runs ShutdownCommand,
// deletes its lease and exits; LeaveNode waits for that.
func (l *Lab) LeaveNode(ctx context.Context, i int) error {
	return l.stop(ctx, i, syscall.SIGUSR1)
}

// KillNode kills node i's flexhook with SIGKILL and waits for it.
func (l *Lab) KillNode(ctx context.Context, i int) error {
	err := l.stop(ctx, i, syscall.SIGKILL)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil
	}
	return err
}

// RestartNode stops node i gracefully and starts it again with the same
// arguments.
func (l *Lab) RestartNode(ctx context.Context, i int) error {
	if err := l.StopNode(ctx, i); err != nil {
		return err
	}
	n, err := l.node(i)
	if err != nil {
		return err
	}
	l.mu.Lock()
	args := n.agent.args
	l.mu.Unlock()
	return l.StartNode(ctx, i, args...)
}

const stopTimeout = 20 * time.Second

func (l *Lab) stop(ctx context.Context, i int, sig syscall.Signal) error {
	n, err := l.node(i)
	if err != nil {
		return err
	}
	l.mu.Lock()
	cmd, done := n.agent.cmd, n.agent.done
	running := n.running()
	l.mu.Unlock()
	if !running {
		return fmt.Errorf("netlab: node %d not running", i)
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("netlab: node %d stop: %w", i, ctx.Err())
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("netlab: node %d ignored %v for %v; log:\n%s", i, sig, stopTimeout, tail(n.logPath, 40))
	}
	l.mu.Lock()
	err = n.agent.waitErr
	l.mu.Unlock()
	l.log.Logf("netlab: node %d stopped (%v): %v", i, sig, exitText(err))
	if err != nil {
		return fmt.Errorf("netlab: node %d exit after %v: %w; log:\n%s", i, sig, err, tail(n.logPath, 40))
	}
	return nil
}

// ExitCode waits until node i's flexhook has exited and returns its exit
// code (-1 when it died by a signal).
func (l *Lab) ExitCode(ctx context.Context, i int) (int, error) {
	n, err := l.node(i)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	done := n.agent.done
	l.mu.Unlock()
	if done == nil {
		return 0, fmt.Errorf("netlab: node %d never started", i)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, fmt.Errorf("netlab: node %d still running: %w", i, ctx.Err())
	}
	l.mu.Lock()
	werr := n.agent.waitErr
	l.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case werr == nil:
		return 0, nil
	case errors.As(werr, &ee):
		return ee.ExitCode(), nil
	default:
		return 0, werr
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// Flexhook runs the lab's flexhook binary in the host namespaces (for
