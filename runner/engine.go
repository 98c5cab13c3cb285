package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner/shell"
)

// Executor runs one hook invocation. *shell.Shell satisfies it.
type Executor interface {
	Run(ctx context.Context, req shell.Request) (shell.Result, error)
}

var _ Executor = (*shell.Shell)(nil)

// Engine runs one node's lifecycle; see Run.
type Engine struct {
	hookRunner // cfg, exec, log; cfg is swapped by Reload, between hooks
	store      leases.Store
	o          options

	env *subnetFile // subnet.env and FLANNEL_MTU

	mu     sync.Mutex
	own    leases.Lease
	hasOwn bool

	// reload carries a new config from Reload to the loop, which swaps it
	// in between hooks (newest wins); pendingCfg is the newest not yet in.
	reload     chan *hooks.Config
	pendingCfg *hooks.Config
	// leave carries Leave's request to the loop.
	leave chan struct{}
}

// New returns an engine for cfg that keeps its lease in store and runs
// hooks through exec. PublicIP is required, and StateDir unless ReadOnly;
// the state dir is created with mode 0700.
func New(cfg *hooks.Config, store leases.Store, exec Executor, opts ...Option) (*Engine, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("runner: nil config")
	case store == nil:
		return nil, errors.New("runner: nil lease store")
	case exec == nil:
		return nil, errors.New("runner: nil executor")
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	if !o.node.publicIP.IsValid() {
		return nil, errors.New("runner: public IP is required")
	}
	if !o.readOnly {
		if o.stateDir == "" {
			return nil, errors.New("runner: state dir is required")
		}
		if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("runner: state dir: %w", err)
		}
	}
	log := o.logger
	if log == nil {
		log = slog.Default()
	}
	return &Engine{
		hookRunner: hookRunner{cfg: cfg, exec: exec, log: log, metrics: o.metrics},
		store:      store, o: o, reload: make(chan *hooks.Config, 1), leave: make(chan struct{}, 1),
		env: &subnetFile{path: o.subnetFile, ipMasq: o.masq != nil, o: o.mtu, log: log},
	}, nil
}

// Reload hands the engine a new config, which takes effect for the hooks
// that run after it (the watch loop swaps it in between two hooks). It is
// refused, with an error saying a restart is needed, when it changes what
// the lease was acquired for: Network, SubnetLen, SubnetMin, SubnetMax,
// EnableIPv6 or an IPv6 field. It returns the hooks whose text changed.
func (e *Engine) Reload(cfg *hooks.Config) ([]hooks.Kind, error) {
	if cfg == nil {
		return nil, errors.New("reload: nil config")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.cfg
	if e.pendingCfg != nil {
		cur = e.pendingCfg
	}
	if cfg.Range != cur.Range || cfg.EnableIPv6 != cur.EnableIPv6 {
		return nil, errors.New("reload: the network changed (Network, SubnetLen, SubnetMin/Max or IPv6): " +
			"a restart is needed; the running config is kept")
	}
	var changed []hooks.Kind
	for _, k := range hooks.Kinds {
		if cfg.Backend.Hook(k).Source != cur.Backend.Hook(k).Source {
			changed = append(changed, k)
		}
	}
	e.pendingCfg = cfg
	select { // newest wins
	case <-e.reload:
	default:
	}
	e.reload <- cfg
	return changed, nil
}

// swapConfig installs a config Reload accepted (the loop's goroutine,
// between hooks).
func (e *Engine) swapConfig(cfg *hooks.Config) {
	e.mu.Lock()
	e.cfg = cfg
	if e.pendingCfg == cfg {
		e.pendingCfg = nil
	}
	e.mu.Unlock()
	e.log.Info("config reloaded: later hooks run the new commands")
}

// Lease returns the node's own lease once it is acquired (in ReadOnly
// mode: the lease the node would take).
func (e *Engine) Lease() (leases.Lease, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.own, e.hasOwn
}

func (e *Engine) setOwn(l leases.Lease) {
	e.mu.Lock()
	e.own, e.hasOwn = l, true
	e.mu.Unlock()
	e.o.metrics.LeaseExpires(l.Expiration)
}

// Run runs the node's lifecycle until ctx is done: PreStartupCommand
// (its trimmed output becomes BackendData), lease acquisition,
// PostStartupCommand, subnet.env, then SubnetAddCommand/SubnetRemoveCommand for every
// change of the remote leases, with lease renewal. When ctx is done it
// stops watching, runs ShutdownCommand with a fresh bounded context and
// returns nil (or the ShutdownCommand's error). It returns an error
// wrapping leases.ErrLeaseGone, after running ShutdownCommand, when the
// own lease was deleted by someone else.
func (e *Engine) Run(ctx context.Context) error {
	// The journal first: what it must repair is repaired (and reported)
	// before any hook runs; a state dir it cannot read stops the start.
	var fsys journalFS = nullFS{}
	if !e.o.readOnly {
		fsys = &osFS{dir: e.o.stateDir}
	}
	j, err := openJournal(fsys, e.log, time.Now)
	if err != nil {
		_ = fsys.Close() // loading appends nothing, so nothing is open
		return err
	}
	defer func() {
		if err := j.close(); err != nil {
			e.log.Warn("closing the journal", "error", err)
		}
	}()

	// Whatever stops the start-up once PreStartupCommand has run (or was
	// interrupted: it may have made its device half-way), ShutdownCommand
	// runs, so nothing it set up is left behind; except a stop with
	// KeepOnStop: a restart keeps the backend (a rolling update that
	// comes while the store is slow must not take the data path down).
	preRan := !e.cfg.Backend.Hook(hooks.PreStartup).Empty()
	self := leases.Lease{Attrs: leases.Attrs{PublicIP: e.o.node.publicIP, PublicIPv6: e.o.node.publicIPv6}}
	startFailed := func(what string, err error) error {
		stopped := ctx.Err() != nil
		if stopped {
			e.log.Info("stopped " + what)
		}
		var serr error
		if preRan && !(stopped && e.o.keepOnStop) {
			serr = e.shutdown(ctx, self)
		}
		if stopped {
			return serr
		}
		return errors.Join(err, serr)
	}
	data, err := e.preStartup(ctx)
	if err != nil {
		return startFailed("during PreStartupCommand", err)
	}
	attrs := leases.Attrs{
		PublicIP:    e.o.node.publicIP,
		PublicIPv6:  e.o.node.publicIPv6,
		BackendType: leases.BackendType,
		BackendData: data,
	}
	var own leases.Lease
	if e.o.readOnly {
		own, err = e.lookup(ctx, attrs)
	} else {
		own, err = e.acquire(ctx, attrs)
	}
	if err != nil {
		return startFailed("before a lease was acquired", err)
	}
	e.setOwn(own)

	if _, err := e.runHook(ctx, hooks.PostStartup, own, ""); err != nil {
		if ctx.Err() != nil {
			if e.o.keepOnStop {
				return nil
			}
			return e.shutdown(ctx, own)
		}
		return errors.Join(err, e.shutdown(ctx, own))
	}
	// The masquerade rules before subnet.env: a pod made once the CNI
	// plugin reads FLANNEL_IPMASQ=true is masqueraded by them alone.
	if e.o.masq != nil && !e.o.readOnly {
		mctx, cancel := context.WithTimeout(ctx, e.o.timing.storeTimeout)
		err := e.o.masq.Ensure(mctx, e.cfg, own)
		cancel()
		if err != nil {
			return errors.Join(err, e.shutdown(ctx, own))
		}
		e.log.Info("ip masquerade rules in place", "network", e.cfg.Network, "subnet", own.Subnet)
	}
	// subnet.env once the backend is up (as flanneld writes it after
	// RegisterNetwork), so FLANNEL_MTU is the MTU of the device it made.
	if !e.o.readOnly {
		if _, err := e.env.refresh(e.cfg, own); err != nil {
			return errors.Join(err, e.shutdown(ctx, own))
		}
	}
	// What the node's own hooks rebuilt at start is the node's from now.
	if e.o.owners != nil {
		if err := e.o.owners.TakeBaseline(); err != nil {
			e.log.Error("cannot list the kernel's objects; none counts as the node's", "error", err)
		}
	}
	e.o.metrics.Started()
	if fn := e.o.onStarted; fn != nil {
		sctx, cancel := context.WithTimeout(ctx, e.o.timing.storeTimeout)
		if err := fn(sctx, own); err != nil {
			e.log.Error("after PostStartupCommand", "error", err)
		}
		cancel()
	}

	return e.newLoop(j).run(ctx)
}

// preStartup runs PreStartupCommand and returns the node's BackendData.
func (e *Engine) preStartup(ctx context.Context) (string, error) {
	self := leases.Lease{Attrs: leases.Attrs{PublicIP: e.o.node.publicIP, PublicIPv6: e.o.node.publicIPv6}}
	res, err := e.runHook(ctx, hooks.PreStartup, self, "")
	if err != nil && e.o.readOnly && e.o.backendData != "" && ctx.Err() == nil {
		// A simulated PreStartup may read state it did not create (see
		// Simulate); the given data stands in for its output.
		e.log.Warn("PreStartupCommand failed in the dry-run; going on with the given BackendData", "error", err)
		return e.o.backendData, nil
	}
	if err != nil {
		return "", err
	}
	if e.o.backendData != "" {
		return e.o.backendData, nil
	}
	return strings.TrimSpace(res.Stdout), nil
}

// acquire gets the own lease from the store, retrying with backoff.
func (e *Engine) acquire(ctx context.Context, attrs leases.Attrs) (leases.Lease, error) {
	var l leases.Lease
	err := retry.Do(ctx, e.backoff(), func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, e.o.timing.storeTimeout)
		defer cancel()
		var err error
		l, err = e.store.Acquire(actx, e.cfg.Range, attrs)
		return err
	}, func(_ int, err error, wait time.Duration) {
		e.log.Error("acquire lease failed; retrying", "error", err, "retry_in", wait)
	})
	if err != nil {
		return leases.Lease{}, err
	}
	e.log.Info("lease acquired", "subnet", l.Subnet, "ipv6_subnet", l.IPv6Subnet, "expires", l.Expiration)
	return l, nil
}

// lookup is acquire for ReadOnly: the lease carrying our PublicIP, or a
// hypothetical free one. Nothing is written.
func (e *Engine) lookup(ctx context.Context, attrs leases.Attrs) (leases.Lease, error) {
	lctx, cancel := context.WithTimeout(ctx, e.o.timing.storeTimeout)
	defer cancel()
	if fn := e.o.peek; fn != nil {
		l, err := fn(lctx, e.cfg.Range, attrs)
		if err != nil {
			return leases.Lease{}, fmt.Errorf("dry-run: %w", err)
		}
		e.log.Info(fmt.Sprintf("dry-run: would take %s", l.Subnet), "subnet", l.Subnet, "ipv6_subnet", l.IPv6Subnet)
		return l, nil
	}
	ls, err := e.store.List(lctx)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("list leases: %w", err)
	}
	if l, ok := leases.FindByPublicIP(ls, e.o.node.publicIP); ok {
		l.Attrs = attrs
		e.log.Info(fmt.Sprintf("dry-run: would take back %s", l.Subnet), "subnet", l.Subnet)
		return l, nil
	}
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	v4, v6, err := leases.PickFree(e.cfg.Range, ls, rnd)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("dry-run: pick a free subnet: %w", err)
	}
	e.log.Info(fmt.Sprintf("dry-run: would acquire %s", v4), "subnet", v4, "ipv6_subnet", v6)
	return leases.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs}, nil
}

// Leave asks a running engine to leave the cluster: it runs
// SubnetRemoveCommand for every remote lease it applied,
// ShutdownCommand, deletes its own lease from the store (so the other
// nodes remove it too), and Run returns nil. Asked before the loop runs,
// it is done once it does. Stopping Run's context instead is a restart
// (see KeepOnStop).
func (e *Engine) Leave() {
	select {
	case e.leave <- struct{}{}:
	default:
	}
}

// shutdown runs ShutdownCommand for the own lease with a fresh context
// bounded by the shutdown timeout, since ctx may already be done. The
// journal is kept: a restart adds every lease still in the store again and
// removes those gone.
func (e *Engine) shutdown(ctx context.Context, own leases.Lease) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.timing.shutdownTimeout)
	defer cancel()
	_, err := e.runHook(sctx, hooks.Shutdown, own, "")
	if e.o.masq != nil && !e.o.readOnly {
		if merr := e.o.masq.Remove(sctx); merr != nil {
			err = errors.Join(err, merr)
		}
	}
	return err
}

// backoff is the engine's retry backoff (Retry) for hooks, renewals and
// the store.
func (e *Engine) backoff() retry.Backoff {
	return retry.Backoff{Initial: e.o.timing.retryInitial, Max: e.o.timing.retryMax}
}
