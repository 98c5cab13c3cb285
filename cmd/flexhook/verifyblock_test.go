package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A command's "# exit status N" line is part of its hook's block, not the
// start of another (a hook that tests something with grep goes on).
func TestDryRunBlock(t *testing.T) {
	out := `# PostStartupCommand SUBNET=10.50.1.0/24
+ ip link set x up
# SubnetAddCommand SUBNET=10.50.2.0/24
+ ip route get 192.0.2.2
+ grep -q ' via '
# exit status 1
+ ip route add 10.50.2.0/24 via 192.0.2.2
+ arp -s 10.50.2.0 02:00:00:00:00:01 dev x  # skipped
# SubnetRemoveCommand SUBNET=10.50.2.0/24
+ ip route del 10.50.2.0/24 via 192.0.2.2
`
	assert.Equal(t, []string{"+ ip route get 192.0.2.2", "+ grep -q ' via '", "+ ip route add 10.50.2.0/24 via 192.0.2.2",
		"+ arp -s 10.50.2.0 02:00:00:00:00:01 dev x"}, dryRunBlock(out, "# SubnetAddCommand SUBNET=10.50.2.0/24"))
}

// The run traced for the lease of the dry-run is the one whose commands
// carry its BackendData; a hook that never names the data (a direct
// route) is compared by its last run.
func TestAddBlock(t *testing.T) {
	line := func(msg string) string {
		return `time=x level=INFO msg="` + msg + `" hook=SubnetAddCommand subnet=10.50.2.0/24`
	}
	log := line("+ arp -s 10.50.2.0 aa:aa dev x") + "\n" + line("hook applied") + "\n" +
		line("+ arp -s 10.50.2.0 bb:bb dev x") + "\n" + line("hook applied") + "\n"
	for _, tc := range []struct {
		log, data string
		want      []string
	}{
		{log, "bb:bb", []string{"+ arp -s 10.50.2.0 bb:bb dev x"}},
		{log, "aa:aa", []string{"+ arp -s 10.50.2.0 aa:aa dev x"}},
		{log, "cc:cc", []string{"+ arp -s 10.50.2.0 bb:bb dev x"}},
		{log, "", []string{"+ arp -s 10.50.2.0 aa:aa dev x"}},
		{"", "aa:aa", nil},
	} {
		assert.Equal(t, tc.want, addBlock(tc.log, "10.50.2.0/24", tc.data), "data %q", tc.data)
	}
}
