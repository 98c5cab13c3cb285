//go:build integration

package kubeit

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// vxlanRemove is the inverse of the vxlan preset's SubnetAddCommand: the
// published recipe has none, and the lab shows that a deleted Node makes
// the others run it.
const vxlanRemove = "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; " +
	"ip route del $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink; arp -d $SUBNET_IP dev $IF_NAME; bridge fdb del $VTEP dev $IF_NAME self dst $PUBLIC_IP"

// labConfig writes the vxlan preset with vxlanRemove added.
func labConfig(t *testing.T) string {
	t.Helper()
	return presetConfig(t, "vxlan", func(cfg map[string]any) {
		cfg["Backend"].(map[string]any)["SubnetRemoveCommand"] = vxlanRemove
	})
}

// presetConfig writes preset name, changed by edit, as a net-conf.json in
// a temporary directory and returns its path.
func presetConfig(t *testing.T, name string, edit func(cfg map[string]any)) string {
	t.Helper()
	raw, err := presets.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually retries fn until it succeeds or bound passes.
func eventually(t *testing.T, ctx context.Context, bound time.Duration, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, bound, err)
		case <-tick.C:
		}
	}
}

// dualStackConfig is the file store's dual-stack lab's recipe
// (integration/TestDualStack): host-gw style routes for both families.
const dualStackConfig = "../testdata/dual-stack.json"

// labSpec is one kube lab: its config, its Nodes' names and whether it
// is dual stack (IPv6 podCIDRs and underlay).
type labSpec struct {
	config string
	prefix string
	ipv6   bool
}

// testLab runs `flexhook run --kube-subnet-mgr` with the vxlan preset on
// three netns nodes, as the manifest's service account, against the API
// server (reached on the underlay through a proxy in the hub): every pod
// address reaches every other, each Node's NetworkUnavailable is False,
// and deleting a Node makes the others run SubnetRemoveCommand.
func testLab(t *testing.T, ctx context.Context, s *kubeSuite) {
	runLab(t, ctx, s, labSpec{config: labConfig(t), prefix: "lab-node"})
}

// testDualStackLab is testLab with a dual-stack recipe: the Nodes have an
// IPv4 and an IPv6 podCIDR, the hooks get IPV6SUBNET and PUBLIC_IPV6,
// and pings go both ways in both families.
func testDualStackLab(t *testing.T, ctx context.Context, s *kubeSuite) {
	path, err := filepath.Abs(dualStackConfig)
	if err != nil {
		t.Fatal(err)
	}
	runLab(t, ctx, s, labSpec{config: path, prefix: "dual-node", ipv6: true})
}

func runLab(t *testing.T, ctx context.Context, s *kubeSuite, spec labSpec) {
	bin := os.Getenv("FLEXHOOK_BIN")
	switch {
	case os.Geteuid() != 0:
		testutil.SkipOrFail(t, "the netns lab needs root")
	case bin == "":
		testutil.SkipOrFail(t, "FLEXHOOK_BIN is not set (make integration-kube sets it)")
	}
	for _, tool := range []string{"ip", "ping", "bridge", "arp"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s: %v", tool, err)
		}
	}
	// The other tests' Nodes go: the lab's cluster is its three nodes.
	if err := s.a.cs.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	var lab *netlab.Lab
	t.Cleanup(func() { // registered before New registers Close: runs after it
		if lab == nil {
			return
		}
		if left := lab.Leftovers(); len(left) > 0 {
			t.Errorf("lab left things behind: %v", left)
		}
	})
	opts := []netlab.Option{netlab.Nodes(3), netlab.Flexhook(bin)}
	if spec.ipv6 {
		opts = append(opts, netlab.IPv6())
	}
	lab, err := netlab.New(ctx, t, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := lab.AddHubAddress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(hub.String(), "6443")
	ln, err := lab.ListenHub(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.a.proxy(t, ln)
	kc := s.a.kubeconfig(t, "underlay.kubeconfig", "https://"+addr, s.token)
	cfg := spec.config

	name := func(i int) string { return fmt.Sprintf("%s-%d", spec.prefix, i) }
	var created time.Time
	for i := 1; i <= 3; i++ {
		cidrs := []string{fmt.Sprintf("10.50.%d.0/24", 100+i)}
		if spec.ipv6 {
			cidrs = append(cidrs, fmt.Sprintf("fd50:0:0:%x::/64", 0x10+i))
		}
		created = s.a.newNode(t, ctx, name(i), cidrs, kubelet(nil)).CreationTimestamp.Time
	}
	// Hostile Nodes that claim the lab nodes' podCIDRs (manual
	// assignment, an IPAM bug, anyone who may create Nodes): one before
	// the agents start, one after. creationTimestamp has a resolution of
	// a second: the scenario needs them younger than the lab's Nodes.
	hostile := func(nodeName, cidr, ip string) {
		s.a.newNode(t, ctx, nodeName, []string{cidr}, kubelet(map[string]string{
			"flannel.alpha.coreos.com/kube-subnet-manager": "true",
			"flannel.alpha.coreos.com/backend-type":        "extension",
			"flannel.alpha.coreos.com/backend-data":        `"02:00:00:00:00:77"`,
			"flannel.alpha.coreos.com/public-ip":           ip,
		}))
	}
	if !spec.ipv6 {
		time.Sleep(time.Until(created.Add(1100 * time.Millisecond))) // the scenario: a younger Node
		hostile("dup-early", "10.50.102.0/24", "192.0.2.77")
	}
	for i := 1; i <= 3; i++ {
		err := lab.StartNode(ctx, i, "--kube-subnet-mgr", "--kubeconfig-file", kc, "--node-name", name(i),
			"--config", cfg, "--trace", "--log-level", "debug")
		if err != nil {
			t.Fatalf("node %d: %v\n%s", i, err, lab.Logs(i))
		}
		if got, want := lab.Subnet(i), netip.MustParsePrefix(fmt.Sprintf("10.50.%d.0/24", 100+i)); got != want {
			t.Fatalf("node %d has subnet %s, want its podCIDR %s", i, got, want)
		}
		if spec.ipv6 {
			if got, want := lab.PodAddr6(i), netip.MustParseAddr(fmt.Sprintf("fd50:0:0:%x::1", 0x10+i)); got != want {
				t.Fatalf("node %d has IPv6 pod address %s, want the first of its podCIDR, %s", i, got, want)
			}
		}
	}
	for i := 1; i <= 3; i++ {
		for j := 1; j <= 3; j++ {
			if i == j {
				continue
			}
			to := []netip.Addr{lab.PodAddr(j)}
			if spec.ipv6 {
				to = append(to, lab.PodAddr6(j))
			}
			for _, addr := range to {
				eventually(t, ctx, time.Minute, fmt.Sprintf("node %d reaches node %d's pod address %s", i, j, addr), func() error {
					return lab.Ping(ctx, i, addr)
				})
			}
		}
		eventually(t, ctx, 30*time.Second, name(i)+" NetworkUnavailable=False", func() error {
			c := condition(s.getNode(t, ctx, name(i)), corev1.NodeNetworkUnavailable)
			if c == nil || c.Status != corev1.ConditionFalse || c.Reason != "FlannelIsUp" {
				return fmt.Errorf("condition %+v", c)
			}
			return nil
		})
	}

	if !spec.ipv6 {
		hostile("dup-late", "10.50.101.0/24", "192.0.2.78")
		for i := 1; i <= 3; i++ {
			eventually(t, ctx, 30*time.Second, fmt.Sprintf("node %d refuses both hostile Nodes", i), func() error {
				st, err := runner.ReadStatus(lab.StateDir(i))
				if err != nil {
					return err
				}
				got := map[string]string{}
				for _, r := range st.Refused {
					got[r.Key] = r.Reason
				}
				if got["node/dup-early"] != "duplicate_claim" || got["node/dup-late"] != "duplicate_claim" {
					return fmt.Errorf("refused %v", got)
				}
				return nil
			})
			for j := 1; j <= 3; j++ {
				if i != j {
					if err := lab.Ping(ctx, i, lab.PodAddr(j)); err != nil {
						t.Errorf("with hostile Nodes: %v", err)
					}
				}
			}
		}
		for _, n := range []string{"dup-early", "dup-late"} {
			if err := s.a.cs.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// An operator's view: flexhook leases list in kube mode, no node name.
	out, err := exec.CommandContext(ctx, bin, "leases", "list", "--kube-subnet-mgr", "--kubeconfig-file", s.kubeconfig, "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("flexhook leases list --kube-subnet-mgr: %v\n%s", err, out)
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(out), lab.Subnet(i).String()) || !strings.Contains(string(out), lab.Underlay(i).String()) {
			t.Errorf("leases list does not show node %d's lease %s:\n%s", i, lab.Subnet(i), out)
		}
	}

	gone := lab.Subnet(3).String()
	if err := s.a.cs.CoreV1().Nodes().Delete(ctx, name(3), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		eventually(t, ctx, time.Minute, fmt.Sprintf("node %d removed the route to %s", i, gone), func() error {
			rs, err := lab.Routes(ctx, i)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Dst == gone {
					return fmt.Errorf("route %+v still there", r)
				}
			}
			if !strings.Contains(lab.Logs(i), "SubnetRemove") {
				return fmt.Errorf("no SubnetRemove in node %d's log", i)
			}
			return nil
		})
		if err := lab.Ping(ctx, i, lab.PodAddr(3-i)); err != nil { // 1 <-> 2 still
			t.Errorf("after node 3 left: %v", err)
		}
	}
	// Node 3 lost its lease with its Node: it runs ShutdownCommand and stops.
	eventually(t, ctx, time.Minute, "node 3 stops once its Node is gone", func() error {
		if lab.Running(3) {
			return fmt.Errorf("still running")
		}
		return nil
	})
	if code, err := lab.ExitCode(ctx, 3); err != nil || code != 1 {
		t.Errorf("node 3 exit status %d, %v; want 1 (a runtime failure: its lease is gone)", code, err)
	}
	if !strings.Contains(lab.Logs(3), "deleted") {
		t.Errorf("node 3's log does not say its lease was deleted:\n%s", lab.Logs(3))
	}
}
