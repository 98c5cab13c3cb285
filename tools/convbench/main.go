// Command convbench is `make bench`'s convergence benchmark: in a fresh
// network namespace it times N remote leases going from the lease store
// into the kernel, side by side in one run, for
//
//   - one `sh -c` per hook, as flanneld up to 0.28.1 ran them (emulated
//     here, with /bin/sh: the baseline of every ratio; the product never
//     starts a shell);
//   - one direct exec per command, as flanneld 0.28.2+ runs them
//     (emulated);
//   - flexhook serial, with and without its in-process text tools;
//     --parallel 2; with the fast path (the default) and without;
//   - ip -batch (and bridge -batch for vxlan's fdb): the kernel's floor;
//     for wireguard (wireguard-go when the kernel has no WireGuard), one
//     wg set naming every peer.
//
// It prints medians of -rounds rounds and their ratio to the sh -c line;
// then, with -flanneld (a flanneld built by `make flanneld`), flanneld's
// compiled host-gw and vxlan backends against flexhook and ip -batch on
// an embedded etcd, each timed from its start to every lease in the
// kernel (flanneld.go); then the event-to-hook-start latency (p50, p99)
// of the file store and of etcd on loopback, flexhook's peak RSS with
// 10 000 leases, and (scale) its time to sync and VmHWM with 5000,
// 10 000 and 20 000 host-gw leases on each store. It asserts nothing
// about time; it fails only when a run does not converge (the kernel's
// routes are counted after every run).
//
// Root only: it re-executes itself in new network and mount namespaces,
// so nothing leaves them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// innerEnv marks the re-executed driver, inside its namespaces.
const innerEnv = "CONVBENCH_INNER"

type config struct {
	flexhook string
	flanneld string // "" when there is none: the flanneld section is skipped
	n        int
	rounds   int
	samples  int
	rssN     int
	only     map[string]bool
	variants []string // the convergence tables' lines to run (substrings); nil: all
	work     string
}

func main() {
	var c config
	var only string
	flag.StringVar(&c.flexhook, "flexhook", "bin/flexhook", "the flexhook binary")
	flag.StringVar(&c.flanneld, "flanneld", "", "a flanneld binary (make flanneld) for the flanneld section; without it the section is skipped")
	flag.IntVar(&c.n, "n", 1000, "remote leases per convergence run")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds per variant (the median is reported)")
	flag.IntVar(&c.samples, "samples", 200, "lease events per latency run")
	flag.IntVar(&c.rssN, "rss-n", 10000, "leases for the peak RSS run")
	var variants string
	flag.StringVar(&variants, "variants", "", "run only the convergence lines whose names contain one of these comma-separated strings (the floor always runs; ratios are then to the first line run)")
	flag.StringVar(&only, "only", "host-gw,vxlan,wireguard,flanneld,latency,rss,scale", "sections to run")
	flag.Parse()
	c.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		c.only[strings.TrimSpace(s)] = true
	}
	if variants != "" {
		c.variants = strings.Split(variants, ",")
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "convbench: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	abs, err := filepath.Abs(c.flexhook)
	if err != nil {
		return err
	}
	c.flexhook = abs
	if _, err := os.Stat(c.flexhook); err != nil {
		return fmt.Errorf("flexhook binary: %w (make build)", err)
	}
	if c.flanneld != "" {
		if c.flanneld, err = filepath.Abs(c.flanneld); err != nil {
			return err
		}
		if _, err := os.Stat(c.flanneld); err != nil {
			return fmt.Errorf("flanneld binary: %w (make flanneld)", err)
		}
	}
	if os.Getenv(innerEnv) == "" {
		return reexec()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	if err := setupNet(ctx); err != nil {
		return fmt.Errorf("netns setup: %w", err)
	}
	c.work, err = os.MkdirTemp("", "convbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(c.work)
	fmt.Printf("convbench: %d leases, %d rounds, medians; ratios to the first line of the same table and to its last (the floor)\n", c.n, c.rounds)
	if c.only["wireguard"] {
		if err := privateWireguardRun(); err != nil {
			return fmt.Errorf("netns setup: %w", err)
		}
	}
	for _, preset := range []string{"host-gw", "vxlan", "wireguard"} {
		if !c.only[preset] {
			continue
		}
		rows, err := convergence(ctx, c, preset)
		if err != nil {
			return fmt.Errorf("%s: %w", preset, err)
		}
		base := "sh -c"
		if c.variants != nil {
			base = "first"
		}
		fmt.Print(table(fmt.Sprintf("%s, %d leases", preset, c.n), base, rows))
	}
	if c.only["flanneld"] {
		if err := flanneldSection(ctx, c); err != nil {
			return err
		}
	}
	if c.only["latency"] {
		for _, st := range []string{"file", "etcd"} {
			l, err := latency(ctx, c, st)
			if err != nil {
				return fmt.Errorf("latency %s: %w", st, err)
			}
			fmt.Printf("\nevent to hook start, %s store, %d events over %d leases: p50 %s  p99 %s  max %s\n",
				st, len(l), c.n, ms(percentile(l, 50)), ms(percentile(l, 99)), ms(percentile(l, 100)))
		}
	}
	if c.only["rss"] {
		rss, err := peakRSS(ctx, c)
		if err != nil {
			return fmt.Errorf("rss: %w", err)
		}
		fmt.Printf("\npeak RSS (VmHWM) of flexhook with %d leases (%s): %.1f MiB\n", c.rssN, rssLabel, float64(rss)/(1<<20))
	}
	if c.only["scale"] {
		if err := scale(ctx, c); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	return nil
}

// reexec runs this program again in new network and mount namespaces.
func reexec() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), innerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return err
	}
	return nil
}

// setupNet brings up lo and a veth pair carrying the underlay
// 172.16.0.0/16, on which every lease's PublicIP is.
func setupNet(ctx context.Context) error {
	// Private mounts, so nothing mounted here shows outside.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// /sys shows the namespace it was mounted in: mount this one's, as ip
	// netns exec does (the vxlan recipe reads /sys/class/net).
	if err := syscall.Unmount("/sys", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("umount /sys: %w", err)
	}
	if err := syscall.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "veth0", "type", "veth", "peer", "name", "veth1"},
		{"addr", "add", ownPublicIP + "/16", "dev", "veth0"},
		{"link", "set", "veth0", "up"},
		{"link", "set", "veth1", "up"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
