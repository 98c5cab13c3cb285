package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

// bench is one preset's convergence setup.
type bench struct {
	c       config
	preset  string
	cfgPath string
	hooks   map[string]string // the preset's hook texts by JSON key
	store   string
	n       int
}

// variant is one way of getting the leases into the kernel for a bench
// of type B; run returns the time from the store to the kernel.
type variant[B any] struct {
	name string
	run  func(b B, ctx context.Context, round int) (time.Duration, error)
}

// interleave runs every variant rounds times on b, the variants
// interleaved so that drift hits all alike, reset before each run and
// once at the end, and returns each one's median. label prefixes the
// progress lines on stderr.
func interleave[B any](ctx context.Context, rounds int, label string, b B, reset func(context.Context) error, vs []variant[B]) ([]row, error) {
	times := make([][]time.Duration, len(vs))
	for round := range rounds {
		for i, v := range vs {
			if err := reset(ctx); err != nil {
				return nil, err
			}
			d, err := v.run(b, ctx, round)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			times[i] = append(times[i], d)
			fmt.Fprintf(os.Stderr, "  %s %s round %d: %s\n", label, v.name, round+1, ms(d))
		}
	}
	if err := reset(ctx); err != nil {
		return nil, err
	}
	rows := make([]row, len(vs))
	for i, v := range vs {
		rows[i] = row{name: v.name, median: median(times[i])}
	}
	return rows, nil
}

func convergence(ctx context.Context, c config, preset string) ([]row, error) {
	b := &bench{c: c, preset: preset, n: c.n, store: filepath.Join(c.work, "store-"+preset)}
	raw, hooks, err := benchConfig(preset)
	if err != nil {
		return nil, err
	}
	b.hooks = hooks
	b.cfgPath = filepath.Join(c.work, preset+".json")
	if err := os.WriteFile(b.cfgPath, raw, 0o600); err != nil {
		return nil, err
	}
	ls := make([]leases.Lease, c.n)
	for i := range ls {
		ls[i] = lease(i, preset == "vxlan")
		if preset == "wireguard" {
			ls[i].Attrs.BackendData = wgPeerKey(i)
		}
	}
	if err := writeFileStore(b.store, ls); err != nil {
		return nil, err
	}
	vs := []variant[*bench]{{"sh -c per hook (flanneld <= 0.28.1)", (*bench).shellEach}}
	if preset != "wireguard" { // its SubnetAdd starts with read: no program to exec
		vs = append(vs, variant[*bench]{"direct exec per command (flanneld >= 0.28.2)", (*bench).directExec})
	}
	for _, fv := range flexhookVariants(c.flexhook) {
		vs = append(vs, variant[*bench]{fv.name, func(b *bench, ctx context.Context, round int) (time.Duration, error) {
			return b.flexhookRun(ctx, round, fv.args)
		}})
	}
	if preset == "wireguard" {
		vs = append(vs, variant[*bench]{"one wg set for every peer (the floor)", (*bench).wgFloor})
	} else {
		vs = append(vs, variant[*bench]{"ip -batch (the kernel's floor)", (*bench).ipBatch})
	}

	return interleave(ctx, c.rounds, preset, b, b.reset, pick(vs, c.variants))
}

// pick keeps the variants whose names contain one of subs, and the last
// (the floor); nil subs keeps all.
func pick[B any](vs []variant[B], subs []string) []variant[B] {
	if subs == nil {
		return vs
	}
	var out []variant[B]
	for i, v := range vs {
		if i == len(vs)-1 || slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(v.name, s) }) {
			out = append(out, v)
		}
	}
	return out
}

type flexhookVariant struct {
	name string
	args []string
}

// flexhookVariants are the flexhook runs the binary supports.
func flexhookVariants(bin string) []flexhookVariant {
	help, _ := exec.Command(bin, "run", "--help").CombinedOutput()
	has := func(f string) bool {
		return bytes.Contains(help, []byte("--"+f+" ")) || bytes.Contains(help, []byte("--"+f+"\n"))
	}
	var vs []flexhookVariant
	if !has("fast-path") { // a binary from before the fast path
		return append(vs,
			flexhookVariant{"flexhook serial (default)", nil},
			flexhookVariant{"flexhook --parallel 2", []string{"--parallel", "2"}})
	}
	vs = append(vs,
		flexhookVariant{"flexhook --fast-path=false --inprocess-tools=false", []string{"--fast-path=false", "--inprocess-tools=false"}},
		flexhookVariant{"flexhook --fast-path=false", []string{"--fast-path=false"}},
		flexhookVariant{"flexhook --fast-path=false --parallel 2", []string{"--fast-path=false", "--parallel", "2"}},
		flexhookVariant{"flexhook (default: fast path)", nil},
		flexhookVariant{"flexhook --parallel 2", []string{"--parallel", "2"}},
	)
	return vs
}

// reset removes what a round put in the kernel.
func (b *bench) reset(ctx context.Context) error {
	_ = exec.CommandContext(ctx, "ip", "link", "del", vxlanDev).Run() // absent for host-gw
	if b.preset == "wireguard" {
		if err := wgDelete(ctx); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "-4", "route", "flush", "root", flushRoot).CombinedOutput(); err != nil {
		return fmt.Errorf("route flush: %w: %s", err, out)
	}
	return nil
}

// verify checks that the kernel holds every lease: a route each and, for
// vxlan, a permanent neighbour and an fdb entry each.
func (b *bench) verify(ctx context.Context) error {
	count := func(contains string, args ...string) (int, error) {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
		n := 0
		for _, line := range strings.Split(string(out), "\n") {
			if line != "" && strings.Contains(line, contains) {
				n++
			}
		}
		return n, nil
	}
	type check struct {
		contains string
		argv     []string
	}
	if b.preset == "wireguard" { // one route for the Network; a peer each
		n, err := wgPeers(ctx)
		if err == nil && n != b.n {
			err = fmt.Errorf("not converged: %s has %d peers, want %d", wgDev, n, b.n)
		}
		return err
	}
	checks := []check{{"", []string{"ip", "-4", "route", "show", "root", flushRoot}}}
	if b.preset == "vxlan" {
		checks = append(checks,
			check{"", []string{"ip", "-4", "neigh", "show", "dev", vxlanDev, "nud", "permanent"}},
			check{" dst ", []string{"bridge", "fdb", "show", "dev", vxlanDev}})
	}
	for _, c := range checks {
		n, err := count(c.contains, c.argv...)
		if err != nil {
			return err
		}
		if n != b.n {
			return fmt.Errorf("not converged: %q shows %d entries, want %d", strings.Join(c.argv, " "), n, b.n)
		}
	}
	return nil
}

// remote lists the store's leases other than this node's, as a daemon
// would at start.
func (b *bench) remote(ctx context.Context) ([]leases.Lease, error) {
	s, err := file.New(b.store)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	all, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, l := range all {
		if l.Invalid == "" && l.Attrs.PublicIP.String() != ownPublicIP {
			out = append(out, l)
		}
	}
	return out, nil
}

// ownEnv is the environment of this node's start-up hooks in the
// emulations (its subnet is outside the remote leases).
var ownEnv = []string{"NETWORK=" + network, "SUBNET=10.255.255.0/24", "PUBLIC_IP=" + ownPublicIP}

// shell runs text with /bin/sh -c in dir, as flanneld did: the contract
// variables in the environment, stdin fed from memory, output captured.
func shell(ctx context.Context, dir, text string, env []string, stdin string) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", text)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sh -c %q: %w: %s", text, err, out.Bytes())
	}
	return nil
}

// startup runs the preset's PreStartup and PostStartup as sh -c would,
// outside the timing (vxlan and wireguard make their devices there), in
// the work dir (wireguard writes its privatekey).
func (b *bench) startup(ctx context.Context) error {
	for _, k := range []string{"PreStartupCommand", "PostStartupCommand"} {
		if t := b.hooks[k]; t != "" {
			if b.preset == "wireguard" && k == "PostStartupCommand" {
				t = wgUserspaceStartup(t)
			}
			if err := shell(ctx, b.c.work, t, ownEnv, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// timed is the driver's own variants' run: the preset's startup hooks,
// then, timed, listing the remote leases and apply on them; the kernel is
// checked after.
func (b *bench) timed(ctx context.Context, apply func(ls []leases.Lease) error) (time.Duration, error) {
	if err := b.startup(ctx); err != nil {
		return 0, err
	}
	start := time.Now()
	ls, err := b.remote(ctx)
	if err != nil {
		return 0, err
	}
	if err := apply(ls); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, b.verify(ctx)
}

func (b *bench) shellEach(ctx context.Context, _ int) (time.Duration, error) {
	return b.timed(ctx, func(ls []leases.Lease) error {
		add := b.hooks["SubnetAddCommand"]
		for _, l := range ls {
			if err := shell(ctx, b.c.work, add, contractEnv(l), l.Attrs.BackendData+"\n"); err != nil {
				return err
			}
		}
		return nil
	})
}

// directArgv is what a shell-less runner executes for lease l: one argv
// per command of the recipe, its variables expanded (flanneld 0.28.2+
// cannot run the vxlan recipe itself: `export` is no program).
func (b *bench) directArgv(l leases.Lease) [][]string {
	sub, pub, data := l.Subnet.String(), l.Attrs.PublicIP.String(), l.Attrs.BackendData
	if b.preset == "vxlan" {
		ip := l.Subnet.Addr().String()
		return [][]string{
			{"ip", "route", "add", sub, "nexthop", "via", ip, "dev", vxlanDev, "onlink"},
			{"arp", "-s", ip, data, "dev", vxlanDev},
			{"bridge", "fdb", "add", data, "dev", vxlanDev, "self", "dst", pub},
		}
	}
	env := map[string]string{"SUBNET": sub, "PUBLIC_IP": pub, "NETWORK": network}
	return [][]string{strings.Fields(os.Expand(b.hooks["SubnetAddCommand"], func(k string) string { return env[k] }))}
}

func (b *bench) directExec(ctx context.Context, _ int) (time.Duration, error) {
	return b.timed(ctx, func(ls []leases.Lease) error {
		for _, l := range ls {
			for _, argv := range b.directArgv(l) {
				cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
				cmd.Env = append(os.Environ(), contractEnv(l)...)
				cmd.Stdin = strings.NewReader(l.Attrs.BackendData + "\n")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out.Bytes())
				}
			}
		}
		return nil
	})
}

func (b *bench) ipBatch(ctx context.Context, _ int) (time.Duration, error) {
	return b.timed(ctx, func(ls []leases.Lease) error { return b.batch(ctx, ls) })
}

// batch puts the leases' routes (and neighbours) into the kernel with one
// ip -batch, and their fdb entries with one bridge -batch.
func (b *bench) batch(ctx context.Context, ls []leases.Lease) error {
	var ipIn, brIn strings.Builder
	for _, l := range ls {
		for _, argv := range b.directArgv(l) {
			switch argv[0] {
			case "ip":
				ipIn.WriteString(strings.Join(argv[1:], " ") + "\n")
			case "arp": // arp -s IP MAC dev D
				fmt.Fprintf(&ipIn, "neigh add %s lladdr %s dev %s nud permanent\n", argv[2], argv[3], argv[5])
			case "bridge":
				brIn.WriteString(strings.Join(argv[1:], " ") + "\n")
			}
		}
	}
	for _, batch := range []struct {
		tool string
		in   string
	}{{"ip", ipIn.String()}, {"bridge", brIn.String()}} {
		if batch.in == "" {
			continue
		}
		cmd := exec.CommandContext(ctx, batch.tool, "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.in)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s -batch: %w: %s", batch.tool, err, out)
		}
	}
	return nil
}

// flexhookRun runs the real daemon on the store and times it from the
// lease acquired (the watch starts next) to the first batch that leaves
// every lease applied, then checks the kernel and stops the daemon.
func (b *bench) flexhookRun(ctx context.Context, round int, extra []string) (time.Duration, error) {
	state := filepath.Join(b.c.work, fmt.Sprintf("state-%s-%d-%d", b.preset, round, time.Now().UnixNano()))
	args := append([]string{"run", "--config", b.cfgPath, "--store", b.store, "--state-dir", state,
		"--public-ip", ownPublicIP, "--subnet-file", filepath.Join(state, "subnet.env")}, extra...)
	d, err := startDaemon(ctx, b.c.flexhook, args)
	if err != nil {
		return 0, err
	}
	defer d.stop()
	t0, err := d.waitLine(ctx, 2*time.Minute, func(l string) bool { return strings.Contains(l, `msg="lease acquired"`) })
	if err != nil {
		return 0, err
	}
	t1, err := d.waitLine(ctx, 10*time.Minute, func(l string) bool {
		return strings.Contains(l, `msg="hooks batch done"`) && field(l, "applied") >= b.n
	})
	if err != nil {
		return 0, err
	}
	if err := b.verify(ctx); err != nil {
		return 0, err
	}
	return t1.Sub(t0), d.stop()
}
