// Package masq keeps the node's masquerade rules for `run --ip-masq`, as
// flanneld's --ip-masq does with nftables: pod traffic that leaves the
// Network leaves with the node's address, traffic inside the Network keeps
// the pod's, and traffic from outside the Network to other nodes' pods is
// masqueraded so that their replies come back through this node.
//
// The rules live in flanneld's own tables (flannel-ipv4, flannel-ipv6)
// and chain (postrtg), so a node moved from flanneld has one set of rules,
// not two, and `nft list tables` reads as flannel users expect. They are
// written with the nft binary in one transaction per call: the chain is
// made if missing and flushed before the rules go in, so Ensure is
// idempotent and a rule set from another Network or subnet is replaced,
// never added to.
package masq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Tables and chain, flanneld's (pkg/trafficmngr/nftables).
const (
	TableIPv4 = "flannel-ipv4"
	TableIPv6 = "flannel-ipv6"
	Chain     = "postrtg"
)

// kubeProxyMark is the mark kube-proxy sets on traffic it masquerades
// itself; flanneld leaves it alone to avoid a double NAT.
const kubeProxyMark = "0x4000"

// Family is one address family's Network and this node's subnet in it.
// A zero Family is left out.
type Family struct {
	Network netip.Prefix
	Subnet  netip.Prefix
}

func (f Family) valid() bool { return f.Network.IsValid() && f.Subnet.IsValid() }

// Script renders the nft transaction that makes v4's and v6's rules (a
// family that is not valid is skipped). fullyRandom picks
// `masquerade fully-random`, as flanneld does where the kernel has it.
//
// The rules are flanneld's iptables rules (FLANNEL-POSTRTG) in nft
// syntax, in their order:
//
//	meta mark 0x4000 return                 kube-proxy's own masquerading
//	saddr SUBNET daddr NETWORK return       pod to pod: keep the source
//	saddr NETWORK daddr SUBNET return       other nodes' pods to ours
//	saddr != NETWORK daddr SUBNET return    outside to our pods: keep it
//	saddr NETWORK daddr != MULTICAST masq   pods to the outside
//	saddr != NETWORK daddr NETWORK masq     outside to other nodes' pods
//
// flanneld's nftables manager writes the fourth rule as `saddr != SUBNET`,
// which makes the sixth unreachable; the iptables manager's `! -s
// NETWORK`, used here, is the one its docs describe.
func Script(v4, v6 Family, fullyRandom bool) string {
	var b strings.Builder
	masq := "masquerade"
	if fullyRandom {
		masq = "masquerade fully-random"
	}
	for _, f := range []struct {
		fam, table, addr, multicast string
		Family
	}{
		{"ip", TableIPv4, "ip", "224.0.0.0/4", v4},
		{"ip6", TableIPv6, "ip6", "ff00::/8", v6},
	} {
		if !f.valid() {
			continue
		}
		n, s := f.Network.Masked().String(), f.Subnet.Masked().String()
		pre := fmt.Sprintf("add rule %s %s %s ", f.fam, f.table, Chain)
		fmt.Fprintf(&b, "add table %s %s\n", f.fam, f.table)
		fmt.Fprintf(&b, "add chain %s %s %s { type nat hook postrouting priority srcnat; }\n", f.fam, f.table, Chain)
		fmt.Fprintf(&b, "flush chain %s %s %s\n", f.fam, f.table, Chain)
		fmt.Fprintf(&b, "%smeta mark %s return\n", pre, kubeProxyMark)
		fmt.Fprintf(&b, "%s%s saddr %s %s daddr %s return\n", pre, f.addr, s, f.addr, n)
		fmt.Fprintf(&b, "%s%s saddr %s %s daddr %s return\n", pre, f.addr, n, f.addr, s)
		fmt.Fprintf(&b, "%s%s saddr != %s %s daddr %s return\n", pre, f.addr, n, f.addr, s)
		fmt.Fprintf(&b, "%s%s saddr %s %s daddr != %s %s\n", pre, f.addr, n, f.addr, f.multicast, masq)
		fmt.Fprintf(&b, "%s%s saddr != %s %s daddr %s %s\n", pre, f.addr, n, f.addr, n, masq)
	}
	return b.String()
}

// removeScript deletes both tables; the add before each delete makes a
// missing table no error (nft 1.0.6 has no `destroy`).
const removeScript = "add table ip " + TableIPv4 + "\ndelete table ip " + TableIPv4 + "\n" +
	"add table ip6 " + TableIPv6 + "\ndelete table ip6 " + TableIPv6 + "\n"

// Ensure writes the rules for v4 and v6 (see Script), with fully-random
// masquerading where the kernel takes it and plain masquerading where it
// does not. Nothing is written when neither family is valid.
func Ensure(ctx context.Context, v4, v6 Family) error {
	if !v4.valid() && !v6.valid() {
		return nil
	}
	err := nft(ctx, Script(v4, v6, true))
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	// An old kernel refuses fully-random: the transaction did nothing, so
	// the plain form goes in whole.
	if perr := nft(ctx, Script(v4, v6, false)); perr != nil {
		return errors.Join(err, perr)
	}
	return nil
}

// Remove deletes both tables with everything in them (a table that is not
// there is no error): the node leaves the cluster.
func Remove(ctx context.Context) error {
	return nft(ctx, removeScript)
}

// nft runs `nft -f -` with script on its standard input.
func nft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("ip masquerade: nft: %w: %s", err, msg)
		}
		return fmt.Errorf("ip masquerade: nft: %w", err)
	}
	return nil
}
