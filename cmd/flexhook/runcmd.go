package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/internal/pathmtu"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner"
	"github.com/flexhook/flexhook/runner/shell"
)

const runSynopsis = "flexhook run [--config FILE | --preset NAME] [--store DIR | --etcd-endpoints URLS | --kube-subnet-mgr] [--public-ip IP | --iface NAME] [--state-dir DIR] [--subnet-file PATH] [--trace] [--dry-run] ..."

// cmdRun is the daemon: it runs until ctx is cancelled (SIGTERM/SIGINT),
// then the engine runs ShutdownCommand and returns.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP is taken before anything can block (the store may be
	// unreachable for long): one that comes before the engine runs waits
	// here and is applied as a reload once it does, and none ends the
	// process (its default action) until run returns, ShutdownCommand
	// included. SIGTERM and SIGINT are main's, from the first instruction.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR1 asks the node to leave the cluster (flexhook leave); one
	// that comes before the engine runs is kept for it.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	var f runFlags
	if err := parseFlags("run", &f, runSynopsis, args, stdout); err != nil {
		return err
	}
	wgMode, err := checkRunFlags(f)
	if err != nil {
		return err
	}
	log := newLogger(stderr, f.CommonFlags)

	// A config given by file or preset (or kube-flannel's net-conf.json)
	// is checked before anything else.
	src, err := sourceOf(f.SourceFlags, f.StoreFlags)
	if err != nil {
		return err
	}
	cfg, cfgName, err := src.Load(ctx)
	if err != nil {
		return err
	}
	node, err := resolveNode(f, log)
	if err != nil {
		return err
	}

	// The hook timeout bounds how long the loop may wait on one hook.
	m := metrics.New(f.HookTimeout+time.Minute, versionString(), commitString())
	stopMetrics, err := serveMetrics(ctx, metricsAddr(f), m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	store, err := openStoreRetry(ctx, f.StoreFlags, runKubeMode(cfg), log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before the store was reachable")
			return nil
		}
		return err
	}
	defer store.Close()
	if na, ok := leases.As[leases.NodeAnnouncer](store); ok {
		if node, err = kubeNode(ctx, na, f, node, log); err != nil {
			return err
		}
	}
	src.bind(store)
	if cfg == nil {
		// Neither --config nor --preset: the store's own copy, flannel's
		// <prefix>/config in etcd or <dir>/config in the file store.
		if cfg, cfgName, err = src.Load(ctx); err != nil {
			return err
		}
	}
	if cfg.EnableIPv6 && !node.publicIPv6.IsValid() {
		return usageErrorf("run: EnableIPv6 is set but no public IPv6 address is known: give --public-ipv6")
	}
	logLint(log, cfgName, cfg)
	if !f.DryRun {
		for _, p := range hostProblems(cfg, ownStatus()) {
			log.Warn("this host cannot run the hooks as they are (flexhook check --host)", "problem", p)
		}
		if f.IPMasq {
			if _, err := exec.LookPath("nft"); err != nil {
				return fmt.Errorf("run: --ip-masq needs nft on PATH (Debian: apt-get install --no-install-recommends nftables): %w", err)
			}
		}
	}

	eng, closeEngine, err := newEngine(f, cfg, node, store, m, wgMode, log, stdout)
	if err != nil {
		return err
	}
	defer closeEngine()
	log.Info("starting", "version", versionString(), "commit", commitString(), "config", cfgName, "public_ip", node.publicIP,
		"iface", node.iface, "underlay_mtu", node.mtu, "store", storeName(f.StoreFlags), "state_dir", f.StateDir, "dry_run", f.DryRun)
	wctx, stopWatch := context.WithCancel(ctx)
	notified := make(chan struct{})
	go func() { // ends with wctx
		defer close(notified)
		notifier(wctx, m, log)
	}()
	waitWatch := src.Watch(wctx, eng, hup, m, log)
	leaveDone := make(chan struct{})
	go func() { // ends with wctx
		defer close(leaveDone)
		select {
		case <-usr1:
			log.Info("leave requested (SIGUSR1)")
			eng.Leave()
		case <-wctx.Done():
		}
	}()
	err = eng.Run(ctx)
	stopWatch()
	waitWatch()
	<-leaveDone
	<-notified
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newEngine makes the hooks' shell and the engine, both recording into m,
// the store's calls counted. The caller calls closeEngine after the
// engine's run: it closes the shell's sockets and the ownership table's
// log.
func newEngine(f runFlags, cfg *hooks.Config, node node, store leases.Store, m *metrics.Metrics,
	wgMode shell.WireguardMode, log *slog.Logger, stdout io.Writer) (_ *runner.Engine, closeEngine func(), _ error) {
	extra := []shell.Option{shell.OnCommand(m.CommandRan)}
	var owners *runner.Owners
	var exec *shell.Shell
	closeEngine = func() {
		if exec != nil {
			if err := exec.Close(); err != nil {
				log.Warn("closing the fast path's sockets", "error", err)
			}
		}
		if owners != nil {
			if err := owners.Close(); err != nil {
				log.Warn("closing the ownership table", "error", err)
			}
		}
	}
	if !f.DryRun {
		// The ownership table takes what the node has now, before any hook.
		if err := os.MkdirAll(f.StateDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("state dir: %w", err)
		}
		var err error
		if owners, err = runner.OpenOwners(f.StateDir, log); err != nil {
			return nil, nil, err
		}
		extra = append(extra, shell.Owners(owners))
	}
	exec, err := newRunShell(f, wgMode, log, stdout, extra...)
	if err != nil {
		closeEngine()
		return nil, nil, err
	}
	rOpts, err := engineOptions(f, node, cfg, log)
	if err != nil {
		closeEngine()
		return nil, nil, err
	}
	if owners != nil {
		rOpts = append(rOpts, runner.Ownership(owners))
	}
	if !f.DryRun && !f.ShutdownOnStop {
		rOpts = append(rOpts, runner.KeepOnStop(true))
	}
	if p, ok := leases.As[leases.Peeker](store); ok && f.DryRun {
		rOpts = append(rOpts, runner.Peek(p.Peek))
	}
	if na, ok := leases.As[leases.NodeAnnouncer](store); ok && !f.DryRun && f.SetNodeNetworkUnavailable {
		rOpts = append(rOpts, runner.OnStarted(func(ctx context.Context, _ leases.Lease) error {
			return na.SetNetworkAvailable(ctx)
		}))
	}
	eng, err := runner.New(cfg, m.Store(store, f.storeKind()), exec, append(rOpts, runner.Metrics(m))...)
	if err != nil {
		closeEngine()
		return nil, nil, err
	}
	return eng, closeEngine, nil
}

// checkRunFlags rejects run's flag values that cannot work (exit 2) and
// parses the wireguard mode.
func checkRunFlags(f runFlags) (shell.WireguardMode, error) {
	wgMode, err := shell.ParseWireguardMode(f.WireguardUserspace)
	switch {
	case err != nil:
		return 0, usageErrorf("--%v", err) // the error names wireguard-userspace
	case f.HookTimeout <= 0:
		return 0, usageErrorf("--hook-timeout: must be positive")
	case f.StoreTimeout <= 0:
		return 0, usageErrorf("--store-timeout: must be positive")
	case f.ResyncInterval < 0:
		return 0, usageErrorf("--resync-interval: must not be negative")
	case f.Parallel < 1 || f.Parallel > runner.MaxParallel:
		return 0, usageErrorf("--parallel: %d is not between 1 and %d", f.Parallel, runner.MaxParallel)
	case f.BackendData != "" && !f.DryRun:
		return 0, usageErrorf("run: --backend-data only simulates PreStartupCommand's output with --dry-run")
	}
	return wgMode, nil
}

// logLint logs the config's lint findings, errors at error level.
//
// The published recipes run as published, and their findings are known:
// with their hooks unchanged, one line says how many there are (check
// lists them) and the findings go to the debug level, so a node does not
// warn about its own preset on every start.
func logLint(log *slog.Logger, cfgName string, cfg *hooks.Config) {
	ws := hooks.Lint(cfg)
	quiet := false
	if p := presetOf(cfg); p != "" && slices.Contains(presets.Published(), p) && len(ws) > 0 {
		quiet = true
		log.Info("config has the published recipe's hooks, run as published", "config", cfgName, "preset", p,
			"lint_findings", len(ws), "see", "flexhook check --preset "+p)
	}
	for _, w := range ws {
		switch {
		case w.Severity == hooks.SeverityError:
			log.Error("config", "config", cfgName, "warning", w.String())
		case quiet:
			log.Debug("config", "config", cfgName, "warning", w.String())
		default:
			log.Warn("config", "config", cfgName, "warning", w.String())
		}
	}
}

// newRunShell makes the hooks' shell: in the state dir (made 0700; with
// --dry-run the current dir when there is none, since dry-run writes
// nothing), traced to the log with --trace and to stdout with --dry-run.
func newRunShell(f runFlags, wgMode shell.WireguardMode, log *slog.Logger, stdout io.Writer, extra ...shell.Option) (*shell.Shell, error) {
	stateDir := f.StateDir
	if f.DryRun {
		if st, err := os.Stat(stateDir); err != nil || !st.IsDir() {
			stateDir = "."
		}
	} else if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	opts := []shell.Option{
		shell.Dir(stateDir),
		shell.DryRun(f.DryRun),
		shell.Logger(log),
		shell.Wireguard(wgMode),
		shell.ReplaceExisting(f.ReplaceExisting),
		shell.InprocessTools(f.InprocessTools),
		shell.FastPath(f.FastPath),
		shell.Timeout(f.HookTimeout),
	}
	switch {
	case f.DryRun:
		opts = append(opts, shell.Trace(shell.NewTextTracer(stdout)))
	case f.Trace:
		opts = append(opts, shell.Trace(shell.NewSlogTracer(log)))
	}
	return shell.New(append(opts, extra...)...)
}

// engineOptions turns run's flags, the node and the config into the
// engine's options, the BackendData shape among them.
func engineOptions(f runFlags, node node, cfg *hooks.Config, log *slog.Logger) ([]runner.Option, error) {
	shape, shapeFrom, err := dataShape(f.BackendDataPattern, f.Preset, cfg)
	if err != nil {
		return nil, err
	}
	opts := []runner.Option{
		runner.PublicIP(node.publicIP),
		runner.StateDir(f.StateDir),
		runner.Logger(log),
		runner.SubnetFile(f.SubnetFile),
		runner.ReadOnly(f.DryRun),
		runner.RenewMargin(time.Duration(f.RenewMargin)),
		runner.StoreTimeout(f.StoreTimeout),
		runner.ResyncInterval(f.ResyncInterval),
		runner.Version(versionString() + " (commit " + commitString() + ")"),
	}
	if !f.DryRun { // a dry-run's trace stays in order
		opts = append(opts, runner.Parallel(f.Parallel))
	}
	if f.IPMasq {
		opts = append(opts, runner.IPMasq(nftMasq{}))
	}
	if node.publicIPv6.IsValid() && (cfg.EnableIPv6 || f.PublicIPv6 != "") {
		opts = append(opts, runner.PublicIPv6(node.publicIPv6))
	}
	if f.BackendData != "" {
		opts = append(opts, runner.BackendData(f.BackendData))
	}
	if node.mtu > 0 {
		opts = append(opts, runner.UnderlayMTU(node.mtu, node.iface))
	}
	if f.MTU != 0 {
		opts = append(opts, runner.MTU(f.MTU))
	}
	if !f.DryRun {
		opts = append(opts, runner.ProbeMTU(pathmtu.Probe))
	}
	if addrs, err := nodeAddrs(); err != nil {
		log.Warn("lease admission goes without this node's addresses", "error", err)
	} else {
		opts = append(opts, runner.NodeAddrs(addrs))
	}
	if shape != nil {
		opts = append(opts, runner.DataShape(shape))
		log.Info("remote BackendData must be "+shape.Name, "from", shapeFrom)
	}
	return opts, nil
}

func storeName(s StoreFlags) string {
	if s.KubeSubnetMgr {
		return "kube " + cmp.Or(s.KubeAPIURL, s.KubeconfigFile, "in-cluster") + " " + s.KubeAnnotationPrefix
	}
	if s.useEtcd() {
		return "etcd " + s.EtcdEndpoints + " " + s.EtcdPrefix
	}
	return s.Store
}

// node is how this node is reached and its external MTU.
type node struct {
	iface      string
	publicIP   netip.Addr
	publicIPv6 netip.Addr
	mtu        int
}

// resolveNode works out the public addresses and MTU: --public-ip wins;
// else the first IPv4 of --iface, whose default is the interface of the
// IPv4 default route. The MTU is the one of that interface (or of the
// interface holding --public-ip; failing that, of the default route's).
func resolveNode(f runFlags, log *slog.Logger) (node, error) {
	var n node
	var err error
	if f.PublicIP != "" {
		if n.publicIP, err = netip.ParseAddr(f.PublicIP); err != nil || !n.publicIP.Is4() {
			return n, usageErrorf("--public-ip %q: want an IPv4 address", f.PublicIP)
		}
	}
	if f.PublicIPv6 != "" {
		if n.publicIPv6, err = netip.ParseAddr(f.PublicIPv6); err != nil || !n.publicIPv6.Is6() || n.publicIPv6.Is4In6() {
			return n, usageErrorf("--public-ipv6 %q: want an IPv6 address", f.PublicIPv6)
		}
	}
	n.iface = f.Iface
	if n.iface == "" && n.publicIP.IsValid() {
		n.iface = ifaceWithAddr(n.publicIP)
	}
	if n.iface == "" && !n.publicIP.IsValid() {
		if n.iface, err = defaultRouteIface(); err != nil {
			return n, err
		}
	}
	if n.iface != "" {
		mtu, v4, v6, err := ifaceAddrs(n.iface)
		if err != nil {
			return n, err
		}
		n.mtu = mtu
		if !n.publicIP.IsValid() {
			if !v4.IsValid() {
				return n, fmt.Errorf("interface %s has no IPv4 address: give --public-ip", n.iface)
			}
			n.publicIP = v4
		}
		if !n.publicIPv6.IsValid() {
			n.publicIPv6 = v6
		}
		return n, nil
	}
	// --public-ip is on no local interface (NAT, or a test): take the MTU
	// of the default route's interface when there is one.
	if name, err := defaultRouteIface(); err == nil {
		if mtu, _, _, err := ifaceAddrs(name); err == nil {
			n.mtu = mtu
		}
	}
	log.Debug("public IP is on no local interface", "public_ip", n.publicIP, "mtu", n.mtu)
	return n, nil
}
