package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/runner"
)

type leaveFlags struct {
	CommonFlags
	StateDirFlags
	Wait time.Duration `flag:"wait" envconfig:"WAIT" default:"3m" arg:"DURATION" usage:"how long to wait for the daemon to finish leaving (0: do not wait)"`
}

const leaveSynopsis = "flexhook leave [--state-dir DIR] [--wait DURATION]"

// cmdLeave makes the node leave the cluster: it sends SIGUSR1 to the
// daemon whose status.json is in --state-dir, which runs
// SubnetRemoveCommand for every remote lease it applied, then
// ShutdownCommand, deletes its own lease from the store and exits; leave
// waits for that. (A stop, SIGTERM, keeps everything for the next start.)
// daemonAlive says whether the daemon that wrote st still runs. status.json
// outlives its daemon: its pid may be gone, or another process's by now
// (SIGUSR1 would kill it), or a pid of another pid namespace.
func daemonAlive(st runner.Status) error {
	if st.Pid <= 0 || syscall.Kill(st.Pid, 0) != nil {
		return fmt.Errorf("the daemon (pid %d) is not running", st.Pid)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.Pid))
	if err != nil || !strings.Contains(string(cmdline), "flexhook") || !strings.Contains(string(cmdline), "run") {
		return fmt.Errorf("pid %d is not a flexhook run (a stale status.json, or another pid namespace)", st.Pid)
	}
	return nil
}

func cmdLeave(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var f leaveFlags
	if err := parseFlags("leave", &f, leaveSynopsis, args, stdout); err != nil {
		return err
	}
	st, err := nodeStatus(f.StateDir)
	if err != nil {
		return err
	}
	if err := daemonAlive(st); err != nil {
		return fmt.Errorf("%s: %w; nothing signalled", f.StateDir, err)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signal pid %d: %w", st.Pid, err)
	}
	fmt.Fprintf(stdout, "leave requested from pid %d (subnet %s)\n", st.Pid, st.Subnet)
	if f.Wait <= 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, f.Wait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for syscall.Kill(st.Pid, 0) == nil {
		select {
		case <-wctx.Done():
			return fmt.Errorf("pid %d still runs after %s: %w", st.Pid, f.Wait, wctx.Err())
		case <-tick.C:
		}
	}
	fmt.Fprintf(stdout, "left: pid %d exited\n", st.Pid)
	return nil
}
