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
//	flexhook completion bash|zsh|fish
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
	"github.com/flexhook/flexhook/presets"
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
  flexhook completion bash|zsh|fish   (a completion script: source <(flexhook completion bash))
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
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-version":
		name = "version"
	case "-h", "--help", "-help":
		name = "help"
	}
	if c, ok := findCommand(name); ok {
		return c.run(ctx, rest, stdout, stderr)
	}
	return unknownCommand(name)
}

// command is one of flexhook's commands. The one table of them,
// commandTable, serves dispatch, help and did-you-mean, the flag
// reference (docs/flags.md, flagref.go) and the shell completions
// (completion.go). Its flag struct is the type the command parses: a test
// checks that each command's -h lists exactly the flags of that struct.
type command struct {
	name     string
	summary  string     // one line: completion menus, the flag reference
	synopsis string     // the usage line its -h prints
	flags    func() any // a new flag struct of the type it parses; nil: none (a subcommand: its parent's)
	// args lists what its first positional argument may be (beside its
	// subcommands), for completion; nil: nothing to offer.
	args func() []string
	// subs are its subcommands: `leases list|remove` (the leases flags),
	// `lab verify` (flags of its own). The command dispatches them itself.
	subs []command
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commandTable lists flexhook's commands in the order help shows them.
func commandTable() []command {
	return []command{
		{name: "run", summary: "run the daemon: take the node's lease, run the hooks as leases come and go",
			synopsis: runSynopsis, flags: func() any { return new(runFlags) }, run: cmdRun},
		{name: "check", summary: "check a config (with --host, this machine too) without running anything",
			synopsis: checkSynopsis, flags: func() any { return new(checkFlags) }, run: cmdCheck},
		{name: "dry-run", summary: "print the commands the hooks would run for a lease and its peers, changing nothing",
			synopsis: dryRunSynopsis, flags: func() any { return new(dryRunFlags) }, run: cmdDryRun},
		{name: "presets", summary: "list the embedded presets, or print one's net-conf.json",
			synopsis: presetsSynopsis, flags: func() any { return new(presetsFlags) }, args: presets.Names, run: cmdPresets},
		{name: "leases", summary: "list the store's leases, or remove one (a dead node's)",
			synopsis: leasesSynopsis, flags: func() any { return new(leasesFlags) }, run: cmdLeases,
			subs: []command{
				{name: "list", summary: "list the leases, and why any is refused"},
				{name: "remove", summary: "remove the lease of a SUBNET"},
			}},
		{name: "status", summary: "show the node's daemon: running?, its lease, counts, failing hooks",
			synopsis: statusSynopsis, flags: func() any { return new(statusFlags) }, run: cmdStatus},
		{name: "leave", summary: "make the node leave the cluster: remove every peer, ShutdownCommand, delete the lease",
			synopsis: leaveSynopsis, flags: func() any { return new(leaveFlags) }, run: cmdLeave},
		{name: "lab", summary: "run a config on an N-node network of namespaces (root)",
			synopsis: labSynopsis, flags: func() any { return new(labFlags) }, run: cmdLab,
			subs: []command{
				{name: "verify", summary: "run a fixed scenario on a fresh lab and print a report card (root)",
					synopsis: verifySynopsis, flags: func() any { return new(verifyFlags) }},
			}},
		{name: "completion", summary: "print a completion script for bash, zsh or fish",
			synopsis: completionSynopsis, args: func() []string { return slices.Clone(shells) }, run: cmdCompletion},
		{name: "version", summary: "print the version, commit and Go version", synopsis: "flexhook version", run: cmdVersion},
		{name: "help", summary: "show usage, or a command's flags (help COMMAND)", synopsis: "flexhook help [COMMAND [SUBCOMMAND]]",
			args: commandNames, run: cmdHelp},
	}
}

// findCommand returns the command called name.
func findCommand(name string) (command, bool) {
	cmds := commandTable()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return cmds[i], true
}

// commandNames are flexhook's commands, for help and did-you-mean.
func commandNames() []string {
	var names []string
	for _, c := range commandTable() {
		names = append(names, c.name)
	}
	return names
}

func cmdVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "flexhook %s (commit %s, %s)\n", versionString(), commitString(), runtime.Version())
	return nil
}

// cmdHelp prints the usage, or with a command's name (help lab verify)
// that command's flags.
func cmdHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		c, ok := findCommand(args[0])
		if !ok {
			return unknownCommand(args[0])
		}
		if c.name != "help" && c.name != "version" { // those two have no flags: the usage below says it all
			return dispatch(ctx, append(slices.Clone(args), "-h"), stdout, stderr)
		}
	}
	io.WriteString(stdout, usageText)
	return nil
}

func unknownCommand(cmd string) error {
	names := commandNames()
	if c, ok := suggest.Closest(cmd, names); ok {
		return usageErrorf("unknown command %q (did you mean %q?)", cmd, c)
	}
	return usageErrorf("unknown command %q (commands: %s)", cmd, strings.Join(names, ", "))
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
