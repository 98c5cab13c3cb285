package netlab

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Diff compares multisets: a line added again (a rule appended twice, which
// the kernel accepts) is a difference, and one of two copies going is too.
func TestDiffMultiset(t *testing.T) {
	rule := "-4 dst 10.50.2.0/24 table 100"
	for _, tc := range []struct {
		name          string
		before, after []string
		want          []string
	}{
		{"same", []string{rule}, []string{rule}, nil},
		{"added again", []string{rule}, []string{rule, rule}, []string{"+ rule: " + rule}},
		{"one copy gone", []string{rule, rule}, []string{rule}, []string{"- rule: " + rule}},
		{"new", nil, []string{rule}, []string{"+ rule: " + rule}},
		{"gone", []string{rule}, nil, []string{"- rule: " + rule}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Diff(Snapshot{"rule": tc.before}, Snapshot{"rule": tc.after}))
		})
	}
}

func TestNftLines(t *testing.T) {
	text := `table inet fxb {
	chain fw {
		type filter hook forward priority filter; policy accept;
		ip saddr 10.50.2.0/24 accept
		ip saddr 10.50.2.0/24 accept
	}
}
table ip empty {
}
`
	assert.Equal(t, []string{
		"table inet fxb",
		"table inet fxb chain fw",
		"table inet fxb chain fw: type filter hook forward priority filter; policy accept;",
		"table inet fxb chain fw: ip saddr 10.50.2.0/24 accept",
		"table inet fxb chain fw: ip saddr 10.50.2.0/24 accept",
		"table ip empty",
	}, nftLines(text))
}

func TestDefaultRule(t *testing.T) {
	for line, want := range map[string]bool{
		"-4 src all table local":            true,
		"-6 src all table main":             true,
		"-4 src all table default":          true,
		"-4 dst 10.50.2.0/24 table 100":     false,
		"-4 fwmark 0x1 src all table main":  false,
		"-4 src 10.50.2.0/24 table default": false,
	} {
		assert.Equal(t, want, defaultRule(line), line)
	}
}

// An xfrm state is its addresses, protocol, SPI and mode: never its keys.
func TestXfrmEntries(t *testing.T) {
	text := "src 192.0.2.11 dst 192.0.2.99\n\tproto esp spi 0x00000010 reqid 0 mode tunnel\n\treplay-window 0 \n" +
		"\tenc cbc(aes) 0x00112233445566778899aabbccddeeff\n\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n" +
		"src 10.50.1.0/24 dst 10.50.2.0/24 \n\tdir out priority 0 ptype main \n"
	assert.Equal(t, []string{
		"src 192.0.2.11 dst 192.0.2.99 proto esp spi 0x00000010 reqid 0 mode tunnel",
		"src 10.50.1.0/24 dst 10.50.2.0/24 dir out priority 0 ptype main",
	}, xfrmEntries(text))
}
