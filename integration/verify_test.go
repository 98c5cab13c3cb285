//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// verifyCard is `flexhook lab verify --json`'s output.
type verifyCard struct {
	OK     bool `json:"ok"`
	Checks []struct {
		N      int      `json:"check"`
		Name   string   `json:"name"`
		OK     bool     `json:"ok"`
		Detail []string `json:"detail"`
		NotRun string   `json:"not_run"`
	} `json:"checks"`
}

// TestLabVerify runs `flexhook lab verify` on the presets, on a vxlan
// backend written in another style, and on deliberately broken backends:
// each passes, or fails exactly the checks it must, naming the leftover.
// The published vxlan recipe has no SubnetRemoveCommand and the
// wireguard one keeps its private key in the state dir after it leaves;
// both rebuild their device (and identity) at every start, so a restart
// loses traffic (check 10): the verifier says so. The -prod presets pass
// all, vxlan-prod also with DirectRouting on. With the etcd store (the
// lab's own etcd in the hub) the cards are the same. Backends that leak
// policy rules, nftables rules, a sysctl, a qdisc or nexthops fail the checks they must,
// naming what leaked, and one whose PostStartupCommand fails shows every
// check after the start as not run.
func TestLabVerify(t *testing.T) {
	bin := requireLab(t, "etcd", "nft")
	testdata, err := filepath.Abs("../cmd/flexhook/testdata/verify")
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		source []string
		fail   map[int]string // the checks that must fail, and what each one's detail must name
		notRun string         // when set: every other check is not run, saying this
	}{
		{"host-gw", []string{"--preset", "host-gw"}, nil, ""},
		{"vxlan-prod", []string{"--preset", "vxlan-prod"}, nil, ""},
		{"vxlan-prod-direct-routing", []string{"--config", directRoutingConfig(t)}, nil, ""},
		{"vxlan-prod-etcd", []string{"--preset", "vxlan-prod", "--store", "etcd"}, nil, ""},
		{"host-gw-etcd", []string{"--preset", "host-gw", "--store", "etcd"}, nil, ""},
		{"remove-does-nothing-etcd", []string{"--config", filepath.Join(testdata, "remove-does-nothing.json"), "--store", "etcd"}, map[int]string{5: "still holds route: "}, ""},
		{"wireguard-prod", []string{"--preset", "wireguard-prod"}, nil, ""},
		{"host-gw-prod", []string{"--preset", "host-gw-prod"}, nil, ""},
		{"vxlan-own-style", []string{"--config", filepath.Join(testdata, "vxlan-own-style.json")}, nil, ""},
		{"vxlan", []string{"--preset", "vxlan"}, map[int]string{5: "still holds route: ", 10: " pings from node "}, ""},
		{"wireguard", []string{"--preset", "wireguard"}, map[int]string{4: "+ file: privatekey", 10: " pings from node "}, ""},
		{"remove-does-nothing", []string{"--config", filepath.Join(testdata, "remove-does-nothing.json")}, map[int]string{5: "still holds route: "}, ""},
		{"shutdown-forgets-device", []string{"--config", filepath.Join(testdata, "shutdown-forgets-device.json")}, map[int]string{4: "+ link: fx-vxlan kind=vxlan"}, ""},
		{"add-not-idempotent", []string{"--config", filepath.Join(testdata, "add-not-idempotent.json")}, map[int]string{3: "File exists"}, ""},
		{"dryrun-differs", []string{"--config", filepath.Join(testdata, "dryrun-differs.json")}, map[int]string{8: "dev fx-missing"}, ""},
		{"mtu-too-big", []string{"--config", filepath.Join(testdata, "mtu-too-big.json")}, map[int]string{9: "FLANNEL_MTU 1500: netlab: pod tcp"}, ""},
		{"rule-leak", []string{"--config", filepath.Join(testdata, "rule-leak.json")},
			map[int]string{3: "changed: + rule: -4 dst 10.50.", 4: "left behind on node 3: + rule: -4 dst 10.50.", 5: "still holds rule: -4 dst 10.50."}, ""},
		{"nft-leak", []string{"--config", filepath.Join(testdata, "nft-leak.json")},
			map[int]string{3: "changed: + nft: table inet fxb chain fw: ip saddr 10.50.", 4: "left behind on node 3: + nft: table inet fxb", 5: "still holds nft: table inet fxb chain fw: ip saddr 10.50."}, ""},
		{"sysctl-leak", []string{"--config", filepath.Join(testdata, "sysctl-leak.json")},
			map[int]string{4: "left behind on node 3: + sysctl: net.ipv4.conf.eth0.proxy_arp = 1"}, ""},
		{"qdisc-leak", []string{"--config", filepath.Join(testdata, "qdisc-leak.json")},
			map[int]string{4: "left behind on node 3: + qdisc: pfifo dev eth0 root"}, ""},
		{"nexthop-leak", []string{"--config", filepath.Join(testdata, "nexthop-leak.json")},
			map[int]string{4: "left behind on node 3: + nexthop: ", 5: `still holds nexthop: {"dev":"eth0","flags":[],"gateway":"192.0.2.13"`}, ""},
		{"poststartup-fails", []string{"--config", filepath.Join(testdata, "poststartup-fails.json")},
			map[int]string{1: `node 1: PostStartupCommand stderr: Cannot find device "fx-missing"`}, "needs every node up (check 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, append(append([]string{"lab", "verify"}, tc.source...), "--json")...).Output()
			var card verifyCard
			require.NoError(t, json.Unmarshal(out, &card), "%s", out)
			require.Len(t, card.Checks, 10, "%s", out)
			assert.Equal(t, len(tc.fail) == 0, card.OK)
			assert.Equal(t, len(tc.fail) == 0, err == nil, "exit status 0 only when every check passes: %v", err)
			for _, c := range card.Checks {
				if tc.notRun != "" && tc.fail[c.N] == "" {
					assert.False(t, c.OK, "check %d must not pass", c.N)
					assert.Equal(t, tc.notRun, c.NotRun, "check %d is not run", c.N)
					continue
				}
				assert.Empty(t, c.NotRun, "check %d ran", c.N)
				if detail, ok := tc.fail[c.N]; ok {
					assert.False(t, c.OK, "check %d must fail: %s", c.N, c.Name)
					assert.Contains(t, strings.Join(c.Detail, "\n"), detail, "check %d names the leftover", c.N)
					continue
				}
				assert.True(t, c.OK, "check %d %s: %s", c.N, c.Name, strings.Join(c.Detail, "\n"))
			}
		})
	}
}
