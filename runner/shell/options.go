package shell

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/flexhook/flexhook/hooks"
)

// Defaults for [New].
const (
	DefaultTimeout   = 2 * time.Minute
	DefaultKillGrace = 5 * time.Second
	DefaultMaxOutput = 1 << 20 // bytes of stdout (and of kept stderr) per hook
)

// WireguardMode selects how `ip link add NAME type wireguard` runs.
type WireguardMode int

const (
	// WireguardAuto runs the real ip first and falls back to
	// `wireguard-go NAME` when the kernel lacks the wireguard link type.
	WireguardAuto WireguardMode = iota
	// WireguardAlways runs `wireguard-go NAME` instead of ip.
	WireguardAlways
	// WireguardNever runs ip unchanged.
	WireguardNever
)

// String returns the flag spelling: auto, always or never.
func (m WireguardMode) String() string {
	switch m {
	case WireguardAuto:
		return "auto"
	case WireguardAlways:
		return "always"
	case WireguardNever:
		return "never"
	}
	return fmt.Sprintf("WireguardMode(%d)", int(m))
}

// ParseWireguardMode parses the value of --wireguard-userspace.
func ParseWireguardMode(s string) (WireguardMode, error) {
	switch s {
	case "auto", "":
		return WireguardAuto, nil
	case "always":
		return WireguardAlways, nil
	case "never":
		return WireguardNever, nil
	}
	return 0, fmt.Errorf("wireguard-userspace: %q is not one of auto, always, never", s)
}

// Option configures a [Shell].
type Option func(*Shell) error

// Dir sets the working directory of hooks: the node's state dir. It must
// exist. Required unless DryRun(true).
func Dir(dir string) Option {
	return func(s *Shell) error {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("dir %q: %w", dir, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("dir %q: not a directory", abs)
		}
		s.dir = abs
		return nil
	}
}

// Environ sets the base environment of hooks (NAME=value pairs); the
// default is os.Environ(). Request.Env is appended to it (later wins).
func Environ(env []string) Option {
	return func(s *Shell) error {
		s.environ = append([]string(nil), env...)
		return nil
	}
}

// DryRun makes hooks change nothing: see the package documentation.
func DryRun(on bool) Option {
	return func(s *Shell) error {
		s.dryRun = on
		return nil
	}
}

// Timeout sets the deadline of one hook run (default [DefaultTimeout]).
func Timeout(d time.Duration) Option {
	return func(s *Shell) error {
		if d <= 0 {
			return fmt.Errorf("timeout: %v is not positive", d)
		}
		s.limits.timeout = d
		return nil
	}
}

// KillGrace sets how long a process group has between SIGTERM and SIGKILL
// when its hook times out or is cancelled (default [DefaultKillGrace]). It
// is also how long a finished command's orphans may hold its output pipes.
func KillGrace(d time.Duration) Option {
	return func(s *Shell) error {
		if d <= 0 {
			return fmt.Errorf("kill grace: %v is not positive", d)
		}
		s.limits.killGrace = d
		return nil
	}
}

// MaxOutput bounds the stdout a hook may produce (default
// [DefaultMaxOutput]); more is an error wrapping [ErrOutputTooLarge].
func MaxOutput(n int) Option {
	return func(s *Shell) error {
		if n <= 0 {
			return fmt.Errorf("max output: %d is not positive", n)
		}
		s.limits.maxOutput = n
		return nil
	}
}

// Trace sets the tracer that receives one [TraceEvent] per command.
func Trace(t Tracer) Option {
	return func(s *Shell) error {
		s.tracer = t
		return nil
	}
}

// Logger sets the logger for hook stderr lines and decisions such as the
// wireguard-go fallback (nil or not given: slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(s *Shell) error {
		if l == nil {
			l = slog.Default()
		}
		s.log = l
		return nil
	}
}

// Wireguard sets the wireguard-userspace mode (default [WireguardAuto]).
func Wireguard(mode WireguardMode) Option {
	return func(s *Shell) error {
		switch mode {
		case WireguardAuto, WireguardAlways, WireguardNever:
			s.wgMode = mode
			return nil
		}
		return fmt.Errorf("wireguard-userspace: unknown mode %d", int(mode))
	}
}

// ReplaceExisting makes the adds and deletes of hooks idempotent (default
// true). A del (`ip route|neigh|addr del`, `bridge fdb del`) that fails
// only because its object is absent ("No such process", "No such file or
// directory", "Address not found") counts as success, logged at Info.
// When
// `ip route|neigh|addr add` or `bridge fdb add` fails because its object
// already exists (RTNETLINK answers: File exists; ip addr's "Address
// already assigned"), the same command runs again with add replaced by
// replace, and the hook goes on with the replace's status. Both commands
// are traced, and the replace is logged at Info.
//
// Events are level-triggered: a hook that failed half-way (the route
// added, a later step failed) is retried from its start, and a changed
// lease (a peer that restarted with a new VTEP MAC) runs SubnetAdd again
// over what the old one left, as the published vxlan recipe has no
// SubnetRemoveCommand. With plain add either stops its && chain at the
// first object that exists, and the peer stays unreachable. The recipes
// are run unchanged, so the executor makes add behave as upstream
// flannel's own vxlan backend does: it sets routes with RouteReplace and
// ARP and FDB entries with NeighSet (replace semantics). The commands are
// those internal/netcmd reads (iproute2's abbreviations included); what it
// does not read is never replaced. With [Owners], only an object of the
// hook's own lease, or of nobody flexhook knows that was not there when
// it started, is replaced. Dry-run never runs either command. With false,
// every add runs as written.
func ReplaceExisting(on bool) Option {
	return func(s *Shell) error {
		s.mw.replaceExisting = on
		return nil
	}
}

// Owners has the hooks' commands that internal/netcmd reads checked
// against o before they run and reported to it after (see
// [Ownership]): a lease's hook never changes or replaces what another
// lease, the node's own hooks, or the node before flexhook made. Nil (the
// default) checks nothing.
func Owners(o Ownership) Option {
	return func(s *Shell) error {
		s.mw.owners = o
		return nil
	}
}

// InprocessTools runs cut, cat, tr, head and tail in the daemon instead of
// forking them, for the forms they reproduce exactly (default on); the
// trace shows them as any command. Anything else runs the real binary.
func InprocessTools(on bool) Option {
	return func(s *Shell) error {
		s.mw.inprocTools = on
		return nil
	}
}

// FastPath performs the presets' ip, bridge and arp commands through
// rtnetlink, and their wg set commands through wgctrl, and runs their wg
// genkey and wg pubkey, in the daemon instead of running the binaries
// (default off); any other form, and any failure of a kernel request,
// runs the real binary, so errors read and exit as the real tool's
// (genkey and pubkey print wg's own). Never in dry-run. Close releases
// its sockets; after it, every command runs its binary.
func FastPath(on bool) Option {
	return func(s *Shell) error {
		s.mw.fastPath = on
		return nil
	}
}

// OnCommand has f called, with the hook's kind, for every command (not
// builtin) a hook runs, as the trace sees them (metrics count them).
func OnCommand(f func(hooks.Kind)) Option {
	return func(s *Shell) error {
		s.onCommand = f
		return nil
	}
}
