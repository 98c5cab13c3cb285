package netlab

// The rest of what a backend can change in a node's kernel, beyond links,
// addresses, routes, rules, neighbours, fdb entries and nftables: sysctls,
// nexthop objects, qdiscs, xfrm states and policies, bridge VLANs. (VRFs
// and ip tunnels are links; their routes are in "route", table all.)

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// snapSysctl adds net.ipv4.ip_forward and the conf of both families:
// "all" and "default" whole, and of each device what differs from
// "default" (what a hook set on it, and the few values the kernel sets
// per device, such as an IPv6 device's mtu).
func (l *Lab) snapSysctl(_ context.Context, i int, n *node, s Snapshot) error {
	var lines []string
	err := inNetns(n.ns, func() error {
		if v, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
			lines = append(lines, "net.ipv4.ip_forward = "+sysctlValue(v))
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			dir := filepath.Join("/proc/sys/net", fam, "conf")
			devs, err := os.ReadDir(dir)
			if err != nil {
				if fam == "ipv6" && os.IsNotExist(err) {
					continue // IPv6 off in this kernel
				}
				return err
			}
			def := readConf(filepath.Join(dir, "default"))
			for _, d := range devs {
				conf := readConf(filepath.Join(dir, d.Name()))
				for _, key := range slices.Sorted(maps.Keys(conf)) {
					if d.Name() == "all" || d.Name() == "default" || conf[key] != def[key] {
						lines = append(lines, fmt.Sprintf("net.%s.conf.%s.%s = %s", fam, d.Name(), key, conf[key]))
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netlab: sysctls of node %d: %w", i, err)
	}
	for _, line := range lines {
		s.add("sysctl", line)
	}
	return nil
}

// readConf reads one conf directory's readable values.
func readConf(dir string) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if v, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil { // stable_secret is unreadable until set
			out[e.Name()] = sysctlValue(v)
		}
	}
	return out
}

func sysctlValue(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// snapNexthop adds the nexthop objects, as data.
func (l *Lab) snapNexthop(ctx context.Context, i int, _ *node, s Snapshot) error {
	var nhs []map[string]any
	if err := l.ipJSON(ctx, i, &nhs, "nexthop", "show"); err != nil {
		return err
	}
	for _, nh := range nhs {
		b, err := json.Marshal(nh) // keys sorted
		if err != nil {
			return err
		}
		s.add("nexthop", string(b))
	}
	return nil
}

// snapQdisc adds the qdiscs a command made: not the kernel's default
// root qdisc of each device (handle 0:). Auto-numbered handles are left
// out; classes and filters are not read.
func (l *Lab) snapQdisc(ctx context.Context, i int, n *node, s Snapshot) error {
	out, err := runTool(ctx, "tc", "-n", n.ns, "-j", "qdisc", "show")
	if err != nil {
		return err
	}
	var qs []struct {
		Kind, Handle, Dev, Parent string
		Root                      bool
	}
	if err := json.Unmarshal(out, &qs); err != nil {
		return fmt.Errorf("netlab: parse qdiscs of node %d: %w", i, err)
	}
	for _, q := range qs {
		if q.Handle == "0:" {
			continue
		}
		where := "parent " + q.Parent
		if q.Root {
			where = "root"
		}
		s.add("qdisc", fmt.Sprintf("%s dev %s %s", q.Kind, q.Dev, where))
	}
	return nil
}

// snapXfrm adds the xfrm states and policies: each one's first two lines
// (addresses; protocol, SPI and mode, or direction), never the keys.
func (l *Lab) snapXfrm(ctx context.Context, _ int, n *node, s Snapshot) error {
	for _, what := range []string{"state", "policy"} {
		out, err := runIP(ctx, "-n", n.ns, "xfrm", what, "list")
		if err != nil {
			return err
		}
		for _, e := range xfrmEntries(string(out)) {
			s.add("xfrm", what+" "+e)
		}
	}
	return nil
}

// xfrmEntries joins each entry's header with its first indented line.
func xfrmEntries(text string) []string {
	var out []string
	next := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case line == "":
		case !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " "):
			out = append(out, strings.TrimSpace(line))
			next = true
		case next:
			out[len(out)-1] += " " + strings.Join(strings.Fields(line), " ")
			next = false
		}
	}
	return out
}

// snapVlan adds the bridge VLANs of every bridge port and bridge.
func (l *Lab) snapVlan(ctx context.Context, i int, n *node, s Snapshot) error {
	out, err := runTool(ctx, "bridge", "-n", n.ns, "-j", "vlan", "show")
	if err != nil {
		return err
	}
	var ports []struct {
		Ifname string `json:"ifname"`
		Vlans  []struct {
			Vlan    int      `json:"vlan"`
			VlanEnd int      `json:"vlanEnd"`
			Flags   []string `json:"flags"`
		} `json:"vlans"`
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &ports); err != nil {
			return fmt.Errorf("netlab: parse bridge vlans of node %d: %w", i, err)
		}
	}
	for _, p := range ports {
		for _, v := range p.Vlans {
			line := fmt.Sprintf("%s vlan %d", p.Ifname, v.Vlan)
			if v.VlanEnd != 0 {
				line += fmt.Sprintf("-%d", v.VlanEnd)
			}
			if len(v.Flags) > 0 {
				line += " " + strings.Join(v.Flags, " ")
			}
			s.add("vlan", line)
		}
	}
	return nil
}
