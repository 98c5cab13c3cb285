package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flexhook/flexhook/leases"
)

const leasesSynopsis = "flexhook leases [list | remove SUBNET] [--store DIR | --etcd-endpoints URLS ...]"

// cmdLeases lists the store's leases or removes one (an operator retiring
// a dead node; the other nodes then run SubnetRemoveCommand).
func cmdLeases(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f leasesFlags
	fs, err := newFlagSet("leases", &f, leasesSynopsis, stdout)
	if err != nil {
		return err
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	action := "list"
	if len(pos) > 0 {
		action, pos = pos[0], pos[1:]
	}
	var subnet netip.Prefix
	switch action {
	case "list":
		if len(pos) > 0 {
			return usageErrorf("leases list: unexpected argument %q", pos[0])
		}
	case "remove", "rm":
		if len(pos) != 1 {
			return usageErrorf("leases remove: want exactly one SUBNET")
		}
		subnet, err = netip.ParsePrefix(pos[0])
		if err != nil || subnet != subnet.Masked() {
			return usageErrorf("leases remove: %q is not a subnet such as 10.50.1.0/24", pos[0])
		}
	default:
		return usageErrorf("leases: unknown action %q (want list or remove)", action)
	}

	log := newLogger(stderr, f.LogLevel)
	if !f.useEtcd() {
		// Listing must not create an empty store where there was none.
		if st, err := os.Stat(f.Store); err != nil || !st.IsDir() {
			return fmt.Errorf("file store %s: no such directory (give --store DIR or --etcd-endpoints URLS)", f.Store)
		}
	}
	store, err := openStore(ctx, f.StoreFlags, log)
	if err != nil {
		return err
	}
	defer store.Close()

	if action == "list" {
		ls, err := store.List(ctx)
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		return printLeases(stdout, ls, time.Now())
	}
	if err := store.Remove(ctx, subnet); err != nil {
		if errors.Is(err, leases.ErrNotFound) {
			return fmt.Errorf("remove %s: no such lease", subnet)
		}
		return fmt.Errorf("remove %s: %w", subnet, err)
	}
	fmt.Fprintf(stdout, "removed %s\n", subnet)
	return nil
}

// printLeases writes the lease table sorted by subnet. The IPv6 columns
// appear only when some lease has them.
func printLeases(w io.Writer, ls []leases.Lease, now time.Time) error {
	slices.SortFunc(ls, func(a, b leases.Lease) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	v6 := slices.ContainsFunc(ls, func(l leases.Lease) bool {
		return l.IPv6Subnet.IsValid() || l.Attrs.PublicIPv6.IsValid()
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cols := []string{"SUBNET", "PUBLIC IP"}
	if v6 {
		cols = append(cols, "IPV6 SUBNET", "PUBLIC IPV6")
	}
	cols = append(cols, "BACKEND DATA", "TTL")
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, l := range ls {
		row := []string{l.Subnet.String(), orDash(l.Attrs.PublicIP)}
		if v6 {
			row = append(row, orDash(l.IPv6Subnet), orDash(l.Attrs.PublicIPv6))
		}
		data := l.Attrs.BackendData
		if data == "" {
			data = "-"
		}
		row = append(row, sanitize(data), ttl(l.Expiration, now))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

type validStringer interface {
	IsValid() bool
	String() string
}

func orDash(v validStringer) string {
	if !v.IsValid() {
		return "-"
	}
	return v.String()
}

// sanitize keeps another node's BackendData from breaking the table or the
// terminal: control characters become '?'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// ttl formats the time left as 23h59m, rounded down to the minute.
func ttl(exp, now time.Time) string {
	if exp.IsZero() {
		return "-"
	}
	d := exp.Sub(now)
	if d <= 0 {
		return "expired"
	}
	if d < time.Minute {
		return "<1m"
	}
	m := int(d / time.Minute)
	return fmt.Sprintf("%dh%02dm", m/60, m%60)
}
