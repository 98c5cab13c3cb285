package masq

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.nft from the code")

// TestScript keeps the rendered rules in a golden file per case: the
// order and the negations are the whole point, and an nft reader sees
// them there as they go to the kernel.
func TestScript(t *testing.T) {
	v4 := Family{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.0/24")}
	v6 := Family{netip.MustParsePrefix("fd00:10:244::/56"), netip.MustParsePrefix("fd00:10:244:3::/64")}
	for _, tc := range []struct {
		name        string
		v4, v6      Family
		fullyRandom bool
	}{
		{"ipv4", v4, Family{}, true},
		{"dualstack", v4, v6, true},
		{"ipv6-plain", Family{}, v6, false},
		{"none", Family{}, Family{}, true},
		// A half-set family (a Network and no subnet yet) writes nothing.
		{"ipv4-without-subnet", Family{Network: v4.Network}, Family{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Script(tc.v4, tc.v6, tc.fullyRandom)
			path := filepath.Join("testdata", tc.name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/masq -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("Script:\n%s\nwant (%s):\n%s", got, path, want)
			}
		})
	}
}

// TestScriptMasksPrefixes: a subnet given with host bits (10.244.3.1/24,
// as subnet.env writes it) is the subnet's prefix in the rules.
func TestScriptMasksPrefixes(t *testing.T) {
	a := Script(Family{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.1/24")}, Family{}, false)
	b := Script(Family{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.0/24")}, Family{}, false)
	if a != b {
		t.Errorf("host bits leak into the rules:\n%s\nvs\n%s", a, b)
	}
}
