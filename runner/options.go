package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
)

// Defaults for the engine's options.
const (
	DefaultMTU             = 1500
	DefaultRetryInitial    = time.Second
	DefaultRetryMax        = 2 * time.Minute
	DefaultShutdownTimeout = time.Minute
	DefaultStoreTimeout    = 15 * time.Second
	// DefaultProgressInterval is how often a long batch of hooks reports.
	DefaultProgressInterval = 5 * time.Second
)

// timing holds the engine's durations.
type timing struct {
	retryInitial, retryMax time.Duration // the backoff of hooks, renewals and the store
	renewMargin            time.Duration
	shutdownTimeout        time.Duration
	storeTimeout           time.Duration
	resyncInterval         time.Duration
	progressEvery          time.Duration
}

type options struct {
	node        nodeOptions
	stateDir    string
	logger      *slog.Logger
	subnetFile  string
	mtu         mtuOptions
	readOnly    bool
	backendData string
	timing      timing
	shape       *leases.Shape
	parallel    int
	metrics     *metrics.Metrics
	onStarted   func(context.Context, leases.Lease) error
	peek        func(context.Context, leases.Range, leases.Attrs) (leases.Lease, error)
	owners      *Owners
	keepOnStop  bool
	masq        Masq
	version     string
}

// nodeOptions say who this node is to the others: its public addresses,
// and the networks of its interfaces' addresses at start.
type nodeOptions struct {
	publicIP, publicIPv6 netip.Addr
	nodeAddrs            []netip.Prefix
}

func defaultOptions() options {
	return options{
		timing: timing{
			retryInitial:    DefaultRetryInitial,
			retryMax:        DefaultRetryMax,
			renewMargin:     leases.DefaultRenewMargin,
			shutdownTimeout: DefaultShutdownTimeout,
			storeTimeout:    DefaultStoreTimeout,
			progressEvery:   DefaultProgressInterval,
		},
		parallel: 1,
	}
}

// Option configures an Engine; see New.
type Option func(*options) error

// KeepOnStop makes a stop (Run's context done) a restart: the engine
// stops without ShutdownCommand and the kernel keeps the backend and the
// remote leases' routes, so the next start picks them up and pod traffic
// flows on meanwhile (flanneld's behaviour). Leaving the cluster is Leave,
// or the own lease's deletion. Off: a stop runs ShutdownCommand.
func KeepOnStop(on bool) Option {
	return func(o *options) error {
		o.keepOnStop = on
		return nil
	}
}

// Ownership gives the engine the ownership table its hooks' shell
// checks (shell.Owners): the objects of a lease whose last version was
// removed are released, and a hook stopped by a *shell.ConflictError
// shows as conflicting in status.json and /metrics.
func Ownership(o *Owners) Option {
	return func(opts *options) error {
		opts.owners = o
		return nil
	}
}

// PublicIP sets the IPv4 address other nodes reach this node on (required).
func PublicIP(ip netip.Addr) Option {
	return func(o *options) error {
		if !ip.Is4() {
			return fmt.Errorf("public IP %v: not an IPv4 address", ip)
		}
		o.node.publicIP = ip
		return nil
	}
}

// PublicIPv6 sets the node's public IPv6 address (dual stack).
func PublicIPv6(ip netip.Addr) Option {
	return func(o *options) error {
		if !ip.Is6() || ip.Is4In6() {
			return fmt.Errorf("public IPv6 %v: not an IPv6 address", ip)
		}
		o.node.publicIPv6 = ip
		return nil
	}
}

// StateDir sets the node's state directory, where the engine keeps
// applied.json and status.json. It is created with mode 0700. Required
// unless ReadOnly.
func StateDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("state dir: empty path")
		}
		o.stateDir = dir
		return nil
	}
}

// Logger sets the logger (default slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// Version is the daemon's version, written into status.json so that
// `flexhook status` shows what runs (after an upgrade, the CLI and the
// daemon may differ).
func Version(v string) Option {
	return func(o *options) error {
		o.version = v
		return nil
	}
}

// ProgressInterval sets how often a running batch of hooks logs how far
// it got and rewrites status.json (default DefaultProgressInterval); 0
// reports after every subnet.
func ProgressInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("progress interval %v: negative", d)
		}
		o.timing.progressEvery = d
		return nil
	}
}

// Masq keeps rules the node needs beside its hooks for as long as the
// backend is up: `run --ip-masq`'s masquerade rules (internal/masq).
type Masq interface {
	// Ensure (re)writes the rules for cfg's networks and the own lease's
	// subnets; it is idempotent.
	Ensure(ctx context.Context, cfg *hooks.Config, own leases.Lease) error
	// Remove deletes them (nothing there is no error).
	Remove(ctx context.Context) error
}

// IPMasq makes the engine keep m's rules: Ensure after PostStartupCommand
// (before subnet.env, whose FLANNEL_IPMASQ is then true, so that flannel's
// CNI plugin does not masquerade a second time), and Remove after every
// ShutdownCommand. A failed Ensure fails the start as a failed
// PostStartupCommand does. Nil (the default) writes FLANNEL_IPMASQ=false.
func IPMasq(m Masq) Option {
	return func(o *options) error {
		o.masq = m
		return nil
	}
}

// SubnetFile makes the engine write flannel's subnet.env to path once the
// lease is acquired, so flannel's CNI plugin works unchanged.
func SubnetFile(path string) Option {
	return func(o *options) error {
		o.subnetFile = path
		return nil
	}
}

// ReadOnly runs the engine for `run --dry-run`: the store is only listed
// and watched, the lease is looked up or picked hypothetically, and no
// journal, status or subnet file is written. The Executor given to New
// should be in dry-run mode too.
func ReadOnly(ro bool) Option {
	return func(o *options) error {
		o.readOnly = ro
		return nil
	}
}

// BackendData replaces PreStartup's output as this node's BackendData when
// non-empty (dry-run: the simulated output of a PreStartup that was not
// really run).
func BackendData(data string) Option {
	return func(o *options) error {
		o.backendData = data
		return nil
	}
}

// Retry sets the exponential backoff for failed hooks, renewals and store
// watches: the first retry after initial, doubling up to max.
func Retry(initial, max time.Duration) Option {
	return func(o *options) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("retry %v..%v: need 0 < initial <= max", initial, max)
		}
		o.timing.retryInitial, o.timing.retryMax = initial, max
		return nil
	}
}

// RenewMargin sets how long before its expiration the lease is renewed
// (default leases.DefaultRenewMargin).
func RenewMargin(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("renew margin %v: must be positive", d)
		}
		o.timing.renewMargin = d
		return nil
	}
}

// ShutdownTimeout bounds the ShutdownCommand run after Run's context is
// done (default one minute).
func ShutdownTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("shutdown timeout %v: must be positive", d)
		}
		o.timing.shutdownTimeout = d
		return nil
	}
}

// DataShape makes lease admission refuse remote leases whose BackendData
// does not have shape s (a preset's, or --backend-data-pattern). nil, the
// default, checks only the rules every BackendData must meet.
func DataShape(s *leases.Shape) Option {
	return func(o *options) error {
		o.shape = s
		return nil
	}
}

// NodeAddrs gives lease admission the addresses the node has before any
// hook runs (its underlay, its other interfaces): a remote lease may not
// carry one as its PublicIP, nor take a subnet overlapping their networks
// (see leases.Policy.NodeAddrs).
func NodeAddrs(addrs []netip.Prefix) Option {
	return func(o *options) error {
		o.node.nodeAddrs = addrs
		return nil
	}
}

// StoreTimeout bounds every store call the engine makes (Acquire, Renew,
// List; default 15s), so that a slow or partitioned store is a failure to
// retry, never a hang.
func StoreTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("store timeout %v: must be positive", d)
		}
		o.timing.storeTimeout = d
		return nil
	}
}

// ResyncInterval makes the engine run SubnetAddCommand again for every
// applied lease every d (default 0: off), repairing state changed behind
// its back (a route deleted by hand); Adds converge through the shell's
// replace-existing. flannel's route backends re-check every 10s.
func ResyncInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("resync interval %v: must not be negative", d)
		}
		o.timing.resyncInterval = d
		return nil
	}
}

// MaxParallel bounds Parallel.
const MaxParallel = 64

// Parallel sets how many subnets' hooks may run at once (default 1:
// flannel's serial order). Each subnet's hooks still run in order (a
// changed lease's Remove before its Add), and PreStartupCommand,
// PostStartupCommand and ShutdownCommand always run alone. Parallel is
// safe when the hooks of different subnets touch different kernel
// objects (routes, neighbours, fdb entries of their own subnet), as every
// preset's do; a hook that rewrites a shared file is not.
func Parallel(n int) Option {
	return func(o *options) error {
		if n < 1 || n > MaxParallel {
			return fmt.Errorf("parallel %d: must be between 1 and %d", n, MaxParallel)
		}
		o.parallel = n
		return nil
	}
}

// Metrics has the engine record its hooks, leases, renewals and health in
// m (nil: nothing is recorded).
func Metrics(m *metrics.Metrics) Option {
	return func(o *options) error {
		o.metrics = m
		return nil
	}
}

// OnStarted sets a function run once PostStartupCommand has succeeded,
// with the own lease and a context bounded by the store timeout (the kube
// store sets the Node's NetworkUnavailable condition there, as flanneld
// does). Its error is logged; the node runs on.
func OnStarted(fn func(context.Context, leases.Lease) error) Option {
	return func(o *options) error {
		if fn == nil {
			return errors.New("OnStarted: nil function")
		}
		o.onStarted = fn
		return nil
	}
}

// Peek sets how a dry-run (ReadOnly) finds the lease this node would get,
// for a store that does not allocate (the kube store: the Node's pod
// CIDRs) and so cannot be guessed from the store's list. fn must write
// nothing.
func Peek(fn func(context.Context, leases.Range, leases.Attrs) (leases.Lease, error)) Option {
	return func(o *options) error {
		if fn == nil {
			return errors.New("Peek: nil function")
		}
		o.peek = fn
		return nil
	}
}
