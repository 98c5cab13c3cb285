//go:build integration

package masq

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/internal/testutil"
)

const innerEnv = "FLEXHOOK_MASQ_INNER"

// TestKernel runs Ensure and Remove against the kernel, in a network
// namespace of its own: the rules go in, a second Ensure with another
// subnet replaces them instead of adding, and Remove takes both tables
// (twice: a missing table is no error).
func TestKernel(t *testing.T) {
	if os.Getenv(innerEnv) == "" {
		testutil.RunInner(t, "TestKernel", innerEnv, []string{"--net"}, "nft")
		return
	}
	ctx := t.Context()
	ruleset := func() string {
		out, err := exec.CommandContext(ctx, "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset: %v: %s", err, out)
		}
		return string(out)
	}
	v4 := Family{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.0/24")}
	v6 := Family{netip.MustParsePrefix("fd00:10:244::/56"), netip.MustParsePrefix("fd00:10:244:3::/64")}
	if err := Ensure(ctx, v4, v6); err != nil {
		t.Fatal(err)
	}
	rs := ruleset()
	for _, want := range []string{
		"table ip flannel-ipv4", "table ip6 flannel-ipv6",
		"ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade",
		"ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade",
	} {
		if !strings.Contains(rs, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rs)
		}
	}
	// The node got another subnet: the rules are replaced, not added to.
	v4.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	if err := Ensure(ctx, v4, Family{}); err != nil {
		t.Fatal(err)
	}
	rs = ruleset()
	if strings.Contains(rs, "10.244.3.0/24") || strings.Count(rs, "ip daddr != 224.0.0.0/4") != 1 {
		t.Errorf("second Ensure did not replace the rules:\n%s", rs)
	}
	for range 2 {
		if err := Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if rs := ruleset(); strings.Contains(rs, "flannel-ipv") {
		t.Errorf("Remove left:\n%s", rs)
	}
}
