package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, r := range []struct {
		p    float64
		want time.Duration
	}{{50, 3}, {99, 5}, {100, 5}, {1, 1}, {0, 1}} {
		assert.Equal(t, r.want, percentile(ds, r.p), "p%v", r.p)
	}
	assert.Equal(t, time.Duration(0), percentile(nil, 50))
	assert.Equal(t, []time.Duration{5, 1, 4, 2, 3}, ds, "the input is not sorted in place")
}

func TestField(t *testing.T) {
	l := `time=x level=INFO msg="hooks batch done" subnets=12 hooks=13 failed=1 applied=999 failing=1`
	assert.Equal(t, 999, field(l, "applied"))
	assert.Equal(t, 12, field(l, "subnets"))
	assert.Equal(t, -1, field(l, "missing"))
}

func TestTable(t *testing.T) {
	out := table("t", "sh", []row{{"sh", 100 * time.Millisecond}, {"fh", 50 * time.Millisecond}, {"floor", 10 * time.Millisecond}})
	assert.Contains(t, out, "0.50x")
	assert.Contains(t, out, "5.0x")
	assert.Contains(t, out, "vs sh ", "the header names the first row")
	assert.Equal(t, 6, strings.Count(out, "\n"), "a blank line, the title, the header and three rows")
}

func TestLeaseLayout(t *testing.T) {
	seen := map[string]bool{}
	flush := netip.MustParsePrefix(flushRoot)
	underlay := netip.PrefixFrom(netip.MustParseAddr(ownPublicIP), 16)
	for i := range maxLeases { // the scale section's 20 000 and beyond
		l := lease(i, true)
		assert.False(t, seen[l.Subnet.String()], "subnet %s twice", l.Subnet)
		seen[l.Subnet.String()] = true
		assert.False(t, seen[l.Attrs.PublicIP.String()], "public IP %s twice", l.Attrs.PublicIP)
		seen[l.Attrs.PublicIP.String()] = true
		assert.True(t, underlay.Contains(l.Attrs.PublicIP), "public IP %s on the underlay", l.Attrs.PublicIP)
		ip := l.Attrs.PublicIP.As4()
		assert.NotContains(t, []byte{0, 255}, ip[3], "public IP %s", l.Attrs.PublicIP)
		assert.NotEqual(t, ownPublicIP, l.Attrs.PublicIP.String())
		assert.True(t, flush.Contains(l.Subnet.Addr()), "%s is flushed between rounds", l.Subnet)
	}
}
