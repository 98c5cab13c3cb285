// Command flexhook runs flannel's extension backend as a product: it gives
// the node a subnet lease in a shared store (a directory, etcd, or
// Kubernetes Node annotations), runs the
// net-conf.json hook commands through an embedded POSIX shell, and keeps
// running them as other nodes' leases come and go.
//
//	flexhook run      [--config FILE | --preset NAME] [--store DIR | --etcd-endpoints URLS | --kube-subnet-mgr] ...
//	flexhook check    (--config FILE | --preset NAME)
//	flexhook dry-run  (--config FILE | --preset NAME) --subnet CIDR --public-ip IP [--peer SUBNET,PUBLIC_IP[,DATA]]...
//	flexhook presets  [NAME]
//	flexhook leases   [list | remove SUBNET] [--store DIR | --etcd-endpoints URLS | --kube-subnet-mgr]
//	flexhook status   [--state-dir DIR] [-o text|wide|json]
//	flexhook leave    [--state-dir DIR] [--wait DURATION]
//	flexhook lab      (--config FILE | --preset NAME) [--nodes N] [--once]
//	flexhook lab verify (--config FILE | --preset NAME) [--nodes N] [--json]
//	flexhook version
//
// Every flag also reads FLEXHOOK_<FLAG> from the environment (--etcd-endpoints
// from FLEXHOOK_ETCD_ENDPOINTS); a flag wins over its variable. Exit codes:
// 0 ok, 1 runtime failure, 2 usage or config error.
//
// This package is flags, the config source (source.go), the store's
// opening and the node's addresses, wired into the engine; the logic
// lives in hooks, presets, runner and leases. The lab's commands (lab,
// lab verify) drive internal/netlab.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/internal/suggest"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // usage or config error
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..." (make build); without them Go's
// own build info is read.
var version, commit = "", ""

func main() {
	netlab.HandleReexec() // `flexhook lab` runs itself in the namespaces it makes
	// Files hooks create (wireguard's `tee privatekey`) are private to root.
	syscall.Umask(0o077)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// After the first signal, restore the default handling so that a
		// second one kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `flexhook runs flannel extension-backend configs through an embedded shell.

usage:
  flexhook run      [--config FILE | --preset NAME] [--store DIR | --etcd-endpoints URLS] [--public-ip IP | --iface NAME]
                    [--state-dir DIR] [--subnet-file PATH] [--trace] [--dry-run] [--hook-timeout D] ...
  flexhook check    (--config FILE | --preset NAME)
  flexhook dry-run  (--config FILE | --preset NAME) --subnet CIDR --public-ip IP [--peer SUBNET,PUBLIC_IP[,DATA]]... [--backend-data DATA]
  flexhook presets  [NAME]
  flexhook leases   [list | remove SUBNET] [--store DIR | --etcd-endpoints URLS ...]
  flexhook status   [--state-dir DIR] [-o text|wide|json]   (exit 1 while a hook keeps failing, 3 when the daemon does not run)
  flexhook leave    [--state-dir DIR]   (leave the cluster: remove every peer, ShutdownCommand, delete the lease)
  flexhook lab      (--config FILE | --preset NAME) [--nodes N] [--store file|etcd] [--once]   (root: a netns lab)
  flexhook lab verify (--config FILE | --preset NAME) [--nodes N] [--json] (root: a report card)
  flexhook version

Run "flexhook help COMMAND" (or "flexhook COMMAND -h") for a command's flags. Every flag also reads
FLEXHOOK_<FLAG> from the environment (--etcd-endpoints: FLEXHOOK_ETCD_ENDPOINTS);
flags win. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
`

// run is the whole CLI; main only adds signals and os.Exit. It returns the
// exit code and writes nothing outside stdout and stderr (besides what the
// command itself is for).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "flexhook: %v\n", err)
	code := exitCode(err)
	if code == exitUsage && errors.As(err, new(*usageError)) && !strings.Contains(err.Error(), "; see flexhook ") {
		fmt.Fprintln(stderr, `run "flexhook help" for usage`)
	}
	return code
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		io.WriteString(stderr, usageText)
		return &exitError{code: exitUsage, err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(ctx, rest, stdout, stderr)
	case "dry-run":
		return cmdDryRun(ctx, rest, stdout, stderr)
	case "presets":
		return cmdPresets(ctx, rest, stdout, stderr)
	case "leases":
		return cmdLeases(ctx, rest, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "leave":
		return cmdLeave(ctx, rest, stdout, stderr)
	case "lab":
		return cmdLab(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "flexhook %s (commit %s, %s)\n", versionString(), commitString(), runtime.Version())
		return nil
	case "help", "-h", "--help", "-help":
		if len(rest) > 0 && slices.Contains(commands, rest[0]) && rest[0] != "help" && rest[0] != "version" {
			return dispatch(ctx, append(slices.Clone(rest), "-h"), stdout, stderr) // help CMD [SUB]: its flags
		}
		if len(rest) > 0 {
			return unknownCommand(rest[0])
		}
		io.WriteString(stdout, usageText)
		return nil
	}
	return unknownCommand(cmd)
}

// commands are flexhook's commands, for help and did-you-mean.
var commands = []string{"run", "check", "dry-run", "presets", "leases", "status", "leave", "lab", "version", "help"}

func unknownCommand(cmd string) error {
	if c, ok := suggest.Closest(cmd, commands); ok {
		return usageErrorf("unknown command %q (did you mean %q?)", cmd, c)
	}
	return usageErrorf("unknown command %q (commands: %s)", cmd, strings.Join(commands, ", "))
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// commitString is the commit make build stamped, else the VCS revision
// Go stamped into the binary (12 hex digits, "-dirty" when the tree had
// changes), or "unknown" (go test, a build outside a checkout, or with
// -buildvcs=false).
func commitString() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// errHelp is returned after -h printed a command's usage: exit 0.
var errHelp = errors.New("help requested")

// exitError carries the exit code of the error it wraps.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a bad command line or environment: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// configError marks err as a config error (exit 2).
func configError(err error) error { return &exitError{code: exitUsage, err: err} }

// exitCode maps an error to the process exit code: explicit codes first,
// then usage and config errors (2), anything else is a runtime failure (1).
func exitCode(err error) int {
	var ee *exitError
	var ue *usageError
	var he *hooks.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &he):
		return exitUsage
	}
	return exitFailure
}

// newLogger returns the logger on stderr every command logs to: text
// (key=value) or JSON lines.
func newLogger(w io.Writer, c CommonFlags) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.Level(c.LogLevel)}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
