package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/leases"
)

// eventGap is the pause between two lease events of a latency run, so
// each is an event of its own rather than part of a burst.
const eventGap = 20 * time.Millisecond

// latency measures, for each of c.samples new leases written one at a
// time into a store already holding c.n applied ones, the time from the
// write (just before the rename or the Put) to the moment its
// SubnetAddCommand, a builtin-only hook, has started and written the
// subnet into a FIFO the driver reads.
func latency(ctx context.Context, c config, store string) ([]time.Duration, error) {
	dir := filepath.Join(c.work, "latency-"+store)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fifo, started, closeFIFO, err := startedFIFO(dir)
	if err != nil {
		return nil, err
	}
	defer closeFIFO()
	cfg, err := json.Marshal(map[string]any{"Network": network, "SubnetLen": 24, "Backend": map[string]string{
		"Type":                "extension",
		"SubnetAddCommand":    `read D; printf '%s\n' "$SUBNET" >> ` + fifo,
		"SubnetRemoveCommand": ":",
	}})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "net-conf.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	base := make([]leases.Lease, c.n)
	for i := range base {
		base[i] = lease(i, false)
	}
	put, storeArgs, closeStore, err := latencyStore(ctx, dir, store, base)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	args := append([]string{"run", "--config", cfgPath, "--state-dir", filepath.Join(dir, "state"),
		"--public-ip", ownPublicIP, "--subnet-file", filepath.Join(dir, "subnet.env")}, storeArgs...)
	d, err := startDaemon(ctx, c.flexhook, args)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	wait := func(sub string) (time.Time, error) {
		t := time.NewTimer(2 * time.Minute)
		defer t.Stop()
		for {
			select {
			case l := <-started:
				if l.text == sub {
					return l.at, nil
				}
			case <-t.C:
				return time.Time{}, fmt.Errorf("no SubnetAdd for %s; last lines:\n%s", sub, d.lastLines())
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			}
		}
	}
	if _, err := wait(base[len(base)-1].Subnet.String()); err != nil { // the last in address order
		return nil, err
	}
	var out []time.Duration
	for j := range c.samples {
		select {
		case <-time.After(eventGap):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l := lease(c.n+j, false)
		var written time.Time
		if err := put(ctx, l, func() { written = time.Now() }); err != nil {
			return nil, err
		}
		at, err := wait(l.Subnet.String())
		if err != nil {
			return nil, err
		}
		out = append(out, at.Sub(written))
	}
	return out, d.stop()
}

// startedFIFO makes the FIFO the latency hook writes each subnet into and
// returns the lines read from it, stamped as they are read.
func startedFIFO(dir string) (string, <-chan logLine, func(), error) {
	fifo := filepath.Join(dir, "started")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return "", nil, nil, err
	}
	// O_RDWR: neither our open nor the hooks' opens block, and the reader
	// never sees EOF between two hooks.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return "", nil, nil, err
	}
	started := make(chan logLine, 1<<16)
	go func() { // ends when f is closed
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			started <- logLine{time.Now(), sc.Text()}
		}
	}()
	return fifo, started, func() { f.Close() }, nil
}

// putFunc writes one lease into the store, calling before just before
// the write that makes it visible.
type putFunc func(ctx context.Context, l leases.Lease, before func()) error

// latencyStore fills a store with base and returns how to add leases,
// flexhook's flags for it and how to close it.
func latencyStore(ctx context.Context, dir, store string, base []leases.Lease) (putFunc, []string, func(), error) {
	if store == "file" {
		sd := filepath.Join(dir, "store")
		if err := writeFileStore(sd, base); err != nil {
			return nil, nil, nil, err
		}
		exp := time.Now().Add(24 * time.Hour)
		put := func(_ context.Context, l leases.Lease, before func()) error {
			return writeLeaseFile(filepath.Join(sd, "subnets"), l, exp, before)
		}
		return put, []string{"--store", sd}, func() {}, nil
	}
	s, err := openEtcdStore(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.putAll(ctx, base); err != nil {
		s.close()
		return nil, nil, nil, err
	}
	return s.put, []string{"--etcd-endpoints", s.endpoint}, s.close, nil
}

// startEtcd starts a single-member etcd on loopback.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	cfg := embed.NewConfig()
	cfg.Name = "convbench"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir + ".log")}
	cfg.TickMs, cfg.ElectionMs = 10, 100
	curl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
	purl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		e.Close()
		return nil, "", fmt.Errorf("etcd did not start")
	}
	return e, curl.String(), nil
}

// rssLabel says how the peak RSS run ran flexhook.
var rssLabel string

// peakRSS runs flexhook on c.rssN host-gw leases (default flags: the fast
// path) and returns its peak resident set (VmHWM) once they
// are all applied.
func peakRSS(ctx context.Context, c config) (int64, error) {
	b := &bench{c: c, preset: "host-gw", n: c.rssN, store: filepath.Join(c.work, "store-rss")}
	raw, _, err := benchConfig("host-gw")
	if err != nil {
		return 0, err
	}
	b.cfgPath = filepath.Join(c.work, "rss.json")
	if err := os.WriteFile(b.cfgPath, raw, 0o600); err != nil {
		return 0, err
	}
	ls := make([]leases.Lease, c.rssN)
	for i := range ls {
		ls[i] = lease(i, false)
	}
	if err := writeFileStore(b.store, ls); err != nil {
		return 0, err
	}
	defer b.reset(ctx)
	rssLabel = "host-gw, default flags (fast path)" + gomemlimitLabel()
	state := filepath.Join(c.work, "state-rss")
	args := []string{"run", "--config", b.cfgPath, "--store", b.store, "--state-dir", state,
		"--public-ip", ownPublicIP, "--subnet-file", filepath.Join(state, "subnet.env")}
	d, err := startDaemonEnv(ctx, c.flexhook, args, daemonEnv())
	if err != nil {
		return 0, err
	}
	defer d.stop()
	_, hwm, err := d.untilApplied(ctx, 30*time.Minute, c.rssN)
	return hwm, err
}
