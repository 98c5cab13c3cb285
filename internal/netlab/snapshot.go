package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// Snapshot is what a backend can leave in a node, by kind (snapshotKinds:
// "link", "addr", "route", "rule", "nexthop", "neigh", "fdb", "nft",
// "sysctl", "qdisc", "xfrm", "vlan", "wg", "process", "file"), one sorted
// line per object, without what the kernel picks at
// random or learns by itself (MAC addresses of links, dynamic neighbours
// and fdb entries, a policy rule's automatic priority, nftables handles
// and counters), so that two snapshots differ only where hooks changed
// something. Lines are a multiset: a rule added twice is there twice.
type Snapshot map[string][]string

// flexhookFiles are the state-dir files flexhook itself keeps.
var flexhookFiles = []string{"applied.json", "applied.log", "status.json", "owners.json", "owners.log"}

// Snapshot takes node i's snapshot.
func (l *Lab) Snapshot(ctx context.Context, i int) (Snapshot, error) {
	n, err := l.node(i)
	if err != nil {
		return nil, err
	}
	s := Snapshot{}
	for _, part := range []func(context.Context, int, *node, Snapshot) error{
		l.snapLinks, l.snapRoutes, l.snapRules, l.snapNeigh, l.snapFDB, l.snapNft,
		l.snapSysctl, l.snapNexthop, l.snapQdisc, l.snapXfrm, l.snapVlan, l.snapRest,
	} {
		if err := part(ctx, i, n, s); err != nil {
			return nil, err
		}
	}
	for k := range s {
		slices.Sort(s[k])
	}
	return s, nil
}

// snapLinks adds the links and addresses.
func (l *Lab) snapLinks(ctx context.Context, i int, _ *node, s Snapshot) error {
	var links []struct {
		Name     string   `json:"ifname"`
		Mtu      int      `json:"mtu"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := l.ipJSON(ctx, i, &links, "-d", "link", "show"); err != nil {
		return err
	}
	for _, x := range links {
		up := "down"
		if slices.Contains(x.Flags, "UP") {
			up = "up"
		}
		s.add("link", fmt.Sprintf("%s kind=%s mtu=%d %s", x.Name, x.LinkInfo.Kind, x.Mtu, up))
	}
	var addrs []struct {
		Name  string `json:"ifname"`
		Addrs []struct {
			Local  string `json:"local"`
			Prefix int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := l.ipJSON(ctx, i, &addrs, "addr", "show"); err != nil {
		return err
	}
	for _, x := range addrs {
		for _, a := range x.Addrs {
			if !strings.HasPrefix(a.Local, "fe80:") { // derived from a random MAC
				s.add("addr", fmt.Sprintf("%s/%d dev %s", a.Local, a.Prefix, x.Name))
			}
		}
	}
	return nil
}

// snapRoutes adds the routes of every table, both families.
func (l *Lab) snapRoutes(ctx context.Context, i int, _ *node, s Snapshot) error {
	for _, fam := range []string{"-4", "-6"} {
		var routes []struct {
			Type, Dst, Gateway, Dev, Table, Protocol, Scope string
		}
		if err := l.ipJSON(ctx, i, &routes, fam, "route", "show", "table", "all"); err != nil {
			return err
		}
		for _, r := range routes {
			if strings.HasPrefix(r.Dst, "fe80:") || r.Type == "multicast" {
				continue
			}
			line := r.Dst
			if r.Type != "" && r.Type != "unicast" {
				line = r.Type + " " + line
			}
			if r.Gateway != "" {
				line += " via " + r.Gateway
			}
			line += " dev " + r.Dev
			if r.Table != "" && r.Table != "main" {
				line += " table " + r.Table
			}
			if r.Protocol != "" && r.Protocol != "boot" {
				line += " proto " + r.Protocol
			}
			s.add("route", line)
		}
	}
	return nil
}

// snapRules adds the policy rules of both families but the kernel's
// defaults, without their priority: `ip rule add` without one picks the
// next free priority, so a rule added again is the same line twice.
func (l *Lab) snapRules(ctx context.Context, i int, _ *node, s Snapshot) error {
	for _, fam := range []string{"-4", "-6"} {
		var rules []map[string]any
		if err := l.ipJSON(ctx, i, &rules, fam, "rule", "show"); err != nil {
			return err
		}
		for _, r := range rules {
			delete(r, "priority")
			for _, end := range []string{"src", "dst"} {
				if n, ok := r[end+"len"]; ok {
					r[end] = fmt.Sprintf("%v/%v", r[end], n)
					delete(r, end+"len")
				}
			}
			line := fam
			for _, k := range slices.Sorted(maps.Keys(r)) {
				line += fmt.Sprintf(" %s %v", k, r[k])
			}
			if !defaultRule(line) {
				s.add("rule", line)
			}
		}
	}
	return nil
}

// defaultRule reports whether a snapRules line is one of the rules every
// namespace starts with (lookup local, main and default from all).
func defaultRule(line string) bool {
	for _, t := range []string{"local", "main", "default"} {
		if strings.HasSuffix(line, " src all table "+t) {
			return !strings.Contains(strings.TrimSuffix(line, " src all table "+t), " ")
		}
	}
	return false
}

// snapNft adds the whole nftables ruleset, all families, one line per
// table, chain property, rule, set element line, each with the blocks it
// is in ("table inet fxb chain fw: ip saddr 10.50.2.0/24 accept"), read
// without handles and stateless (no counter values). Without nft on the
// machine there is nothing to add.
func (l *Lab) snapNft(ctx context.Context, _ int, n *node, s Snapshot) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	out, err := runTool(ctx, "ip", "netns", "exec", n.ns, "nft", "--stateless", "list", "ruleset")
	if err != nil {
		return err
	}
	for _, line := range nftLines(string(out)) {
		s.add("nft", line)
	}
	return nil
}

// nftLines flattens `nft list ruleset` text: a block ("table inet x {")
// is a line of its own and the prefix of the lines inside it.
func nftLines(text string) []string {
	var out, blocks []string
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case line == "}":
			if len(blocks) > 0 {
				blocks = blocks[:len(blocks)-1]
			}
		case strings.HasSuffix(line, "{"):
			blocks = append(blocks, strings.TrimSpace(strings.TrimSuffix(line, "{")))
			out = append(out, strings.Join(blocks, " "))
		default:
			out = append(out, strings.Join(blocks, " ")+": "+line)
		}
	}
	return out
}

// snapNeigh adds the permanent and noarp neighbours.
func (l *Lab) snapNeigh(ctx context.Context, i int, _ *node, s Snapshot) error {
	for _, nud := range []string{"permanent", "noarp"} {
		var ns []struct {
			Dst, Dev, Lladdr string
		}
		if err := l.ipJSON(ctx, i, &ns, "neigh", "show", "nud", nud); err != nil {
			return err
		}
		for _, x := range ns {
			if strings.HasPrefix(x.Lladdr, "33:33:") || strings.HasPrefix(x.Lladdr, "01:00:5e:") || len(x.Lladdr) != 17 {
				continue // the kernel's own: multicast groups, next hops on a device without ARP (a tun)
			}
			s.add("neigh", fmt.Sprintf("%s lladdr %s dev %s %s", x.Dst, x.Lladdr, x.Dev, nud))
		}
	}
	return nil
}

// snapFDB adds the bridge fdb entries that were not learnt.
func (l *Lab) snapFDB(ctx context.Context, i int, n *node, s Snapshot) error {
	out, err := runTool(ctx, "bridge", "-n", n.ns, "-j", "fdb", "show")
	if err != nil {
		return err
	}
	var fdb []struct {
		Mac, Ifname, Dst, State string
	}
	if err := json.Unmarshal(out, &fdb); err != nil {
		return fmt.Errorf("netlab: parse bridge fdb of node %d: %w", i, err)
	}
	for _, f := range fdb {
		if f.State != "" && f.State != "permanent" && f.State != "static" {
			continue // learnt
		}
		if strings.HasPrefix(f.Mac, "33:33:") || strings.HasPrefix(f.Mac, "01:00:5e:") {
			continue // a device's own multicast addresses
		}
		line := f.Mac + " dev " + f.Ifname
		if f.Dst != "" {
			line += " dst " + f.Dst
		}
		s.add("fdb", strings.TrimSpace(line+" "+f.State))
	}
	return nil
}

// snapRest adds wireguard peers, processes and the state dir's files.
func (l *Lab) snapRest(ctx context.Context, i int, n *node, s Snapshot) error {
	if wg, err := l.Exec(ctx, i, "wg", "show", "all", "peers"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(wg)), "\n") {
			if line != "" {
				s.add("wg", strings.Join(strings.Fields(line), " "))
			}
		}
	}
	ps, err := netnsProcesses(ctx, n.ns)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Comm != "flexhook" {
			s.add("process", p.Comm)
		}
	}
	ents, err := os.ReadDir(n.stateDir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range ents {
		if !slices.Contains(flexhookFiles, e.Name()) && !flexhookTemp(e.Name()) {
			s.add("file", e.Name()) // dot-files too: a hidden leftover is a leftover
		}
	}
	return nil
}

func (s Snapshot) add(kind, line string) { s[kind] = append(s[kind], line) }

// flexhookTemp reports whether name is one of flexhook's own atomic-write
// temporaries (".status.json.tmp123"), which come and go with its files.
func flexhookTemp(name string) bool {
	for _, f := range flexhookFiles {
		if strings.HasPrefix(name, "."+f+".tmp") {
			return true
		}
	}
	return false
}

// WithoutLab drops what the lab itself adds to a node at start (the pod
// bridge cni0 with its address and routes), so that a node's snapshot
// can be compared with its fresh namespace.
func (s Snapshot) WithoutLab() Snapshot {
	out := Snapshot{}
	for k, lines := range s {
		for _, l := range lines {
			if !strings.Contains(l, "cni0") {
				out[k] = append(out[k], l)
			}
		}
	}
	return out
}

// Without drops the given kinds (e.g. "process", when hooks of a running
// node may be running a command right now).
func (s Snapshot) Without(kinds ...string) Snapshot {
	out := Snapshot{}
	for k, lines := range s {
		if !slices.Contains(kinds, k) {
			out[k] = lines
		}
	}
	return out
}

// Diff lists what after has that before had not ("+ kind: line") and what
// before had that after has not ("- kind: line"), kinds in order. Lines
// count as a multiset: a line after has twice and before once is one
// "+".
func Diff(before, after Snapshot) []string {
	var out []string
	for _, kind := range snapshotKinds {
		count := map[string]int{}
		for _, l := range before[kind] {
			count[l]++
		}
		for _, l := range after[kind] {
			if count[l] > 0 {
				count[l]--
				continue
			}
			out = append(out, "+ "+kind+": "+l)
		}
		for _, l := range before[kind] {
			if count[l] > 0 {
				count[l]--
				out = append(out, "- "+kind+": "+l)
			}
		}
	}
	return out
}

// snapshotKinds are a Snapshot's kinds, in Diff's order.
var snapshotKinds = []string{"link", "addr", "route", "rule", "nexthop", "neigh", "fdb", "nft", "sysctl", "qdisc",
	"xfrm", "vlan", "wg", "process", "file"}

// Pointing lists the lines of s that name one of the words (a node's
// subnet, its underlay address, its BackendData): what another node still
// holds of it.
func (s Snapshot) Pointing(words ...string) []string {
	var out []string
	for _, kind := range []string{"route", "rule", "nexthop", "neigh", "fdb", "nft", "xfrm", "wg"} {
		for _, l := range s[kind] {
			for _, w := range words {
				if w != "" && strings.Contains(l, w) {
					out = append(out, kind+": "+l)
					break
				}
			}
		}
	}
	return out
}

func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	if name == "ip" {
		return runIP(ctx, args...)
	}
	out, err := execOutput(ctx, name, args...)
	if err != nil {
		return out, fmt.Errorf("netlab: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

func execOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).Output()
}
