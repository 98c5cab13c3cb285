package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
	"github.com/flexhook/flexhook/runner/shell"
)

const dryRunSynopsis = "flexhook dry-run (--config FILE | --preset NAME) --subnet CIDR --public-ip IP [--peer SUBNET,PUBLIC_IP[,DATA]]... [--backend-data DATA]"

// cmdDryRun simulates the whole lifecycle (PreStartup, PostStartup, Add and
// Remove per peer, Shutdown) and prints the trace. Nothing changes and no
// file is written: the shell is in dry-run mode, and its directory is the
// current one only because the interpreter needs one.
func cmdDryRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f dryRunFlags
	if err := parseFlags("dry-run", &f, dryRunSynopsis, args, stdout); err != nil {
		return err
	}
	cfg, _, err := requireSource(ctx, f.SourceFlags)
	if err != nil {
		return err
	}
	if f.Subnet == "" || f.PublicIP == "" {
		return usageErrorf("dry-run: --subnet and --public-ip are required")
	}
	own, err := parseLease(f.Subnet, f.PublicIP, f.BackendData)
	if err != nil {
		return usageErrorf("dry-run: %v", err)
	}
	peers := make([]leases.Lease, 0, len(f.Peer.values))
	for _, p := range f.Peer.values {
		l, err := parsePeer(p)
		if err != nil {
			return usageErrorf("dry-run: --peer %q: %v", p, err)
		}
		peers = append(peers, l)
	}
	log := newLogger(stderr, f.CommonFlags)
	// The peers go through lease admission as the daemon's would: a
	// refused one is named and left out.
	shape, _, err := dataShape(f.BackendDataPattern, f.Preset, cfg)
	if err != nil {
		return err
	}
	pol := leases.Policy{Range: cfg.Range, Own: own, PublicIP: own.Attrs.PublicIP, Shape: shape}
	adm := pol.Admit(peers, nil)
	for _, r := range adm.Refused {
		fmt.Fprintf(stderr, "dry-run: --peer %s refused (%s): %s\n", r.Key(), r.Reason, r.Detail)
	}
	peers = slices.DeleteFunc(peers, func(p leases.Lease) bool {
		return !slices.ContainsFunc(adm.Admitted, func(a leases.Lease) bool { return a.Subnet == p.Subnet })
	})
	exec, err := shell.New(
		shell.Dir("."),
		shell.DryRun(true),
		shell.Trace(shell.NewTextTracer(stdout)),
		shell.Logger(log),
	)
	if err != nil {
		return err
	}
	return runner.Simulate(ctx, cfg, exec, own, peers, log)
}

// parsePeer parses SUBNET,PUBLIC_IP[,DATA]; DATA is everything after the
// second comma, so it may contain commas itself.
func parsePeer(s string) (leases.Lease, error) {
	parts := strings.SplitN(s, ",", 3)
	if len(parts) < 2 {
		return leases.Lease{}, fmt.Errorf("want SUBNET,PUBLIC_IP[,DATA]")
	}
	data := ""
	if len(parts) == 3 {
		data = parts[2]
	}
	return parseLease(parts[0], parts[1], data)
}

func parseLease(subnet, publicIP, data string) (leases.Lease, error) {
	sn, err := netip.ParsePrefix(strings.TrimSpace(subnet))
	if err != nil || !sn.Addr().Is4() {
		return leases.Lease{}, fmt.Errorf("subnet %q: want an IPv4 CIDR such as 10.50.1.0/24", subnet)
	}
	if sn != sn.Masked() {
		return leases.Lease{}, fmt.Errorf("subnet %q: host bits set (did you mean %s?)", subnet, sn.Masked())
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(publicIP))
	if err != nil || !ip.Is4() {
		return leases.Lease{}, fmt.Errorf("public IP %q: want an IPv4 address", publicIP)
	}
	return leases.Lease{
		Subnet: sn,
		Attrs: leases.Attrs{
			PublicIP:    ip,
			BackendType: leases.BackendType,
			BackendData: data,
		},
	}, nil
}
