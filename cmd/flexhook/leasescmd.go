package main

import (
	"cmp"
	"context"
	"encoding/json"
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

const leasesSynopsis = "flexhook leases [list | remove SUBNET] [--store DIR | --etcd-endpoints URLS | --kube-subnet-mgr ...]"

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
	if f.Output != "text" && f.Output != "json" {
		return usageErrorf("leases: -o %q: want text or json", f.Output)
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

	log := newLogger(stderr, f.CommonFlags)
	if !f.useEtcd() && !f.KubeSubnetMgr {
		// Listing must not create an empty store where there was none.
		if st, err := os.Stat(f.Store); err != nil || !st.IsDir() {
			return fmt.Errorf("file store %s: no such directory (give --store DIR or --etcd-endpoints URLS)", f.Store)
		}
	}
	store, err := openStore(ctx, f.StoreFlags, kubeMode{dualStack: true}, log)
	if err != nil {
		return err
	}
	defer store.Close()

	if action == "list" {
		ls, err := store.List(ctx)
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		p, err := listPolicy(ctx, f, store)
		if err != nil {
			return err
		}
		refused := p.Admit(ls, nil).Refused
		if f.Output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(leaseListDocument(ls, refused))
		}
		return printLeases(stdout, ls, refused, time.Now())
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

// listPolicy is the admission policy `leases list` marks leases with: the
// network config of --config/--preset or else the store's own, when there
// is one (Network, SubnetLen, the preset's BackendData shape); without a
// config only the rules that need none. There is no own lease.
func listPolicy(ctx context.Context, f leasesFlags, store leases.Store) (leases.Policy, error) {
	src, err := sourceOf(f.SourceFlags, f.StoreFlags)
	if err != nil {
		return leases.Policy{}, err
	}
	src.bind(store)
	cfg, _, err := src.Load(ctx)
	switch {
	case err != nil && src.given():
		return leases.Policy{}, err
	case err != nil:
		cfg = nil // no readable net-conf.json or store config: check without one
	}
	var p leases.Policy
	if cfg != nil {
		p.Range = cfg.Range
	}
	if p.Shape, _, err = dataShape(f.BackendDataPattern, f.Preset, cfg); err != nil {
		return leases.Policy{}, err
	}
	return p, nil
}

// printLeases writes the lease table sorted by subnet. The IPv6 columns
// appear only when some lease has them, and a REFUSED column, naming
// why lease admission refuses a lease, only when some lease is refused;
// a lease whose key is not a subnet shows its key, quoted if need be.
func printLeases(w io.Writer, ls []leases.Lease, refused []leases.Refusal, now time.Time) error {
	sortLeases(ls)
	v6 := slices.ContainsFunc(ls, func(l leases.Lease) bool {
		return l.IPv6Subnet.IsValid() || l.Attrs.PublicIPv6.IsValid()
	})
	why := map[string]leases.Reason{}
	for _, r := range refused {
		why[refusalKey(r.Lease)] = r.Reason
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cols := []string{"SUBNET", "PUBLIC IP"}
	if v6 {
		cols = append(cols, "IPV6 SUBNET", "PUBLIC IPV6")
	}
	cols = append(cols, "BACKEND DATA", "TTL")
	if len(why) > 0 {
		cols = append(cols, "REFUSED")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, l := range ls {
		subnet := l.Subnet.String()
		if !l.Subnet.IsValid() || l.Invalid == leases.ReasonBadKey {
			subnet = leases.Printable(leases.DisplayKey(l))
		}
		row := []string{subnet, orDash(l.Attrs.PublicIP)}
		if v6 {
			row = append(row, orDash(l.IPv6Subnet), orDash(l.Attrs.PublicIPv6))
		}
		data := l.Attrs.BackendData
		if data == "" {
			data = "-"
		}
		row = append(row, leases.Printable(leases.DisplayData(data)), ttl(l.Expiration, now))
		if len(why) > 0 {
			row = append(row, cmp.Or(string(why[refusalKey(l)]), "-"))
		}
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

// sortLeases orders leases as the table and the JSON list show them: by
// subnet, then by store key.
func sortLeases(ls []leases.Lease) {
	slices.SortFunc(ls, func(a, b leases.Lease) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Key, b.Key))
	})
}

// refusalKey is how a lease's refusal is found again: by key and subnet.
func refusalKey(l leases.Lease) string { return l.Key + "\x00" + l.Subnet.String() }

// leaseDoc is one lease of `flexhook leases list -o json`.
type leaseDoc struct {
	Key         string     `json:"key"`
	Subnet      string     `json:"subnet,omitempty"`
	IPv6Subnet  string     `json:"ipv6_subnet,omitempty"`
	PublicIP    string     `json:"public_ip,omitempty"`
	PublicIPv6  string     `json:"public_ipv6,omitempty"`
	BackendType string     `json:"backend_type"`
	BackendData string     `json:"backend_data"`
	Expires     *time.Time `json:"expires,omitempty"`
	Refused     string     `json:"refused,omitempty"`
	Detail      string     `json:"detail,omitempty"`
}

// leaseListDocument is `flexhook leases list -o json`: every lease the
// store holds, sorted as the table, each refused one with its reason.
func leaseListDocument(ls []leases.Lease, refused []leases.Refusal) map[string]any {
	sortLeases(ls)
	why := map[string]leases.Refusal{}
	for _, r := range refused {
		why[refusalKey(r.Lease)] = r
	}
	docs := make([]leaseDoc, 0, len(ls))
	for _, l := range ls {
		d := leaseDoc{Key: l.Key, BackendType: l.Attrs.BackendType, BackendData: l.Attrs.BackendData}
		if l.Subnet.IsValid() {
			d.Subnet = l.Subnet.String()
		}
		if l.IPv6Subnet.IsValid() {
			d.IPv6Subnet = l.IPv6Subnet.String()
		}
		if l.Attrs.PublicIP.IsValid() {
			d.PublicIP = l.Attrs.PublicIP.String()
		}
		if l.Attrs.PublicIPv6.IsValid() {
			d.PublicIPv6 = l.Attrs.PublicIPv6.String()
		}
		if !l.Expiration.IsZero() {
			d.Expires = &l.Expiration
		}
		if r, ok := why[refusalKey(l)]; ok {
			d.Refused, d.Detail = string(r.Reason), r.Detail
		}
		docs = append(docs, d)
	}
	return map[string]any{"api_version": statusAPIVersion, "kind": "LeaseList", "leases": docs}
}
