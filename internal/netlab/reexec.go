package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The lab re-executes its own binary (the test binary, or flexhook itself for `flexhook lab`)
// for the steps that need namespace syscalls right before an exec, so that
// no shell is ever involved. The mode travels in this environment variable;
// HandleReexec consumes it.
const reexecEnv = "FHLAB_REEXEC"

const (
	modeMountWrap = "mount-wrap" // unshare a mount ns, the node's dir (or a tmpfs) on /run/wireguard, exec argv
	modeEnter     = "enter"      // join the mount and net ns of FHLAB_PID, exec argv
)

// pidEnv names the process whose namespaces modeEnter joins.
const pidEnv = "FHLAB_PID"

// wgDirEnv names the node's own directory modeMountWrap binds on the
// wireguard run dir, so that a wireguard-go an agent started keeps its
// control socket where the node's next agent finds it (as on a host,
// across restarts); without it, a tmpfs of the agent's own.
const wgDirEnv = "FHLAB_WGDIR"

var reexecInstalled atomic.Bool

// HandleReexec must be called first thing in TestMain or main of every
// program that uses a Lab. In the parent it only records that it was
// called and returns. In a child the lab started, it performs the
// namespace step and replaces the process with the requested command; it
// never returns there (on failure it prints the error and exits 127).
func HandleReexec() {
	mode := os.Getenv(reexecEnv)
	if mode == "" {
		reexecInstalled.Store(true)
		return
	}
	err := runReexec(mode, os.Args[1:])
	fmt.Fprintf(os.Stderr, "netlab %s: %v\n", mode, err)
	os.Exit(127)
}

func runReexec(mode string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command to exec")
	}
	// Namespace changes apply to the calling thread only; exec from that
	// same thread carries them into the new program.
	runtime.LockOSThread()
	switch mode {
	case modeMountWrap:
		if err := mountWrap(); err != nil {
			return err
		}
	case modeEnter:
		if err := enterNamespaces(os.Getenv(pidEnv)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	os.Unsetenv(reexecEnv)
	os.Unsetenv(pidEnv)
	os.Unsetenv(wgDirEnv)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if err := unix.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// wireguardRunDir is where wireguard-go and wg keep their control sockets.
// It is not per network namespace, so every node gets its own tmpfs there.
func wireguardRunDir() string {
	run, err := filepath.EvalSymlinks("/var/run")
	if err != nil {
		run = "/run"
	}
	return filepath.Join(run, "wireguard")
}

func mountWrap() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	dir := wireguardRunDir()
	if own := os.Getenv(wgDirEnv); own != "" {
		if err := unix.Mount(own, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", own, dir, err)
		}
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

func enterNamespaces(pidStr string) error {
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return fmt.Errorf("bad %s %q", pidEnv, pidStr)
	}
	// setns(CLONE_NEWNS) refuses a thread that shares its fs_struct with
	// the other threads of the Go runtime: unshare that first.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	for _, ns := range []struct {
		name string
		flag int
	}{{"mnt", unix.CLONE_NEWNS}, {"net", unix.CLONE_NEWNET}} {
		p := fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = unix.Setns(fd, ns.flag)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("setns %s: %w", p, err)
		}
	}
	return nil
}
