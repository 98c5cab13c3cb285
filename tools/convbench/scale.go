package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flexhook/flexhook/leases"
)

// The scale section's flags (here rather than in main.go, which other
// sections share).
var (
	scaleNs    = flag.String("scale-n", "5000,10000,20000", "lease counts of the scale section, comma-separated")
	gomemlimit = flag.String("gomemlimit", "", "GOMEMLIMIT in flexhook's environment in the scale and rss sections (e.g. 24MiB; empty: inherited)")
)

// daemonEnv is what the scale and rss sections add to flexhook's
// environment.
func daemonEnv() []string {
	if *gomemlimit == "" {
		return nil
	}
	return []string{"GOMEMLIMIT=" + *gomemlimit}
}

func gomemlimitLabel() string {
	if *gomemlimit == "" {
		return ""
	}
	return ", GOMEMLIMIT=" + *gomemlimit
}

// scale runs flexhook (default flags: the fast path, which runs the
// host-gw preset's hooks without forking) on N host-gw leases of the
// 10.0.0.0/8 Network, for each N of -scale-n and each store (the file
// store, etcd on loopback), and prints one line per run: the time from
// the process's start to the first batch that leaves all N applied, and
// its VmHWM then; the same with hooks of shell builtins only (flexhook's
// own cost per lease); and the time ip -batch takes to put the same
// routes in. A host-gw run whose kernel does not hold N routes fails.
func scale(ctx context.Context, c config) error {
	ns, err := parseCounts(*scaleNs)
	if err != nil {
		return fmt.Errorf("-scale-n: %w", err)
	}
	raw, hooks, err := benchConfig("host-gw")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.work, "scale.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return err
	}
	// The same leases with hooks of shell builtins only: flexhook's own
	// cost, without the kernel's (whose route insert is not linear).
	builtinPath := filepath.Join(c.work, "scale-builtin.json")
	if err := os.WriteFile(builtinPath, []byte(builtinConfig), 0o600); err != nil {
		return err
	}
	fmt.Printf("\nscale: host-gw, default flags (fast path)%s; sync is from flexhook's start to all leases applied\n", gomemlimitLabel())
	for _, n := range ns {
		ls := make([]leases.Lease, n)
		for i := range ls {
			ls[i] = lease(i, false)
		}
		for _, store := range []string{"file", "etcd"} {
			sync, hwm, err := scaleRun(ctx, c, cfgPath, store, ls, true)
			if err != nil {
				return fmt.Errorf("%s store, %d leases: %w", store, n, err)
			}
			fmt.Printf("scale: store=%s leases=%d sync=%.2fs vmhwm=%.1fMiB\n", store, n, sync.Seconds(), float64(hwm)/(1<<20))
			sync, hwm, err = scaleRun(ctx, c, builtinPath, store, ls, false)
			if err != nil {
				return fmt.Errorf("%s store, %d leases, builtin hooks: %w", store, n, err)
			}
			fmt.Printf("scale: hooks=builtin store=%s leases=%d sync=%.2fs per_lease=%.0fus vmhwm=%.1fMiB\n",
				store, n, sync.Seconds(), float64(sync.Microseconds())/float64(n), float64(hwm)/(1<<20))
		}
		floor, err := scaleFloor(ctx, c, hooks, ls)
		if err != nil {
			return fmt.Errorf("floor, %d leases: %w", n, err)
		}
		fmt.Printf("scale: floor=ip-batch leases=%d sync=%.2fs\n", n, floor.Seconds())
	}
	return nil
}

// scaleFloor times the same routes put in by one ip -batch (the kernel's
// floor: with a gateway of its own per route, the kernel's insert is not
// constant-time, so neither is any daemon's).
func scaleFloor(ctx context.Context, c config, hooks map[string]string, ls []leases.Lease) (time.Duration, error) {
	b := &bench{c: c, preset: "host-gw", n: len(ls), hooks: hooks, store: filepath.Join(c.work, fmt.Sprintf("scale-floor-%d", len(ls)))}
	defer os.RemoveAll(b.store)
	if err := writeFileStore(b.store, ls); err != nil {
		return 0, err
	}
	if err := b.reset(ctx); err != nil {
		return 0, err
	}
	defer b.reset(ctx)
	return b.ipBatch(ctx, 0)
}

// builtinConfig is the scale section's net-conf.json whose hooks are
// shell builtins only: no fork, no kernel work.
const builtinConfig = `{"Network":"` + network + `","SubnetLen":24,"Backend":{"Type":"extension",` +
	`"SubnetAddCommand":": \"$SUBNET\" \"$PUBLIC_IP\"","SubnetRemoveCommand":": \"$SUBNET\""}}`

// scaleRun fills a fresh store with ls, runs flexhook on it until every
// lease is applied, checks the kernel's routes (with kernel) and returns
// the sync time and VmHWM.
func scaleRun(ctx context.Context, c config, cfgPath, store string, ls []leases.Lease, kernel bool) (time.Duration, int64, error) {
	dir := filepath.Join(c.work, fmt.Sprintf("scale-%s-%d", store, len(ls)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	b := &bench{c: c, preset: "host-gw", n: len(ls), cfgPath: cfgPath}
	if err := b.reset(ctx); err != nil {
		return 0, 0, err
	}
	defer b.reset(ctx)
	var storeArgs []string
	if store == "file" {
		sd := filepath.Join(dir, "store")
		if err := writeFileStore(sd, ls); err != nil {
			return 0, 0, err
		}
		storeArgs = []string{"--store", sd}
	} else {
		s, err := openEtcdStore(ctx, filepath.Join(dir, "etcd"))
		if err != nil {
			return 0, 0, err
		}
		defer s.close()
		if err := s.putAll(ctx, ls); err != nil {
			return 0, 0, err
		}
		storeArgs = []string{"--etcd-endpoints", s.endpoint}
	}
	state := filepath.Join(dir, "state")
	args := append([]string{"run", "--config", cfgPath, "--state-dir", state,
		"--public-ip", ownPublicIP, "--subnet-file", filepath.Join(state, "subnet.env")}, storeArgs...)
	d, err := startDaemonEnv(ctx, c.flexhook, args, daemonEnv())
	if err != nil {
		return 0, 0, err
	}
	defer d.stop()
	sync, hwm, err := d.untilApplied(ctx, 10*time.Minute, len(ls))
	if err != nil {
		return 0, 0, err
	}
	if kernel {
		if err := b.verify(ctx); err != nil {
			return 0, 0, err
		}
	}
	return sync, hwm, d.stop()
}

// parseCounts parses "5000,10000,20000": positive lease counts that
// lease(i) can address.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n <= 0 || n > maxLeases {
			return nil, fmt.Errorf("%d leases: want 1..%d", n, maxLeases)
		}
		out = append(out, n)
	}
	return out, nil
}
