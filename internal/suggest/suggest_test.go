package suggest

import "testing"

func TestClosest(t *testing.T) {
	cands := []string{"run", "check", "dry-run", "presets", "hook-timeout", "SubnetAddCommand"}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"rnu", "run", true},
		{"chek", "check", true},
		{"hook-timout", "hook-timeout", true},
		{"subnetaddcommand", "SubnetAddCommand", true},
		{"SubnetAdCommand", "SubnetAddCommand", true},
		{"xyzzy", "", false},
		{"", "", false},
	} {
		got, ok := Closest(tc.in, cands)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := Closest("run", nil); ok {
		t.Error("no candidates, no suggestion")
	}
}
