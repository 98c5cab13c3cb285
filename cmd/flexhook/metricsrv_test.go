package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMetricsAddr(t *testing.T) {
	for _, r := range []struct {
		addr, ip string
		port     int
		want     string
	}{
		{"", "0.0.0.0", 0, ""},                             // off
		{"127.0.0.1:9180", "0.0.0.0", 0, "127.0.0.1:9180"}, // flexhook's flag
		{"", "0.0.0.0", 8471, "0.0.0.0:8471"},              // flanneld's --healthz-port
		{"", "192.0.2.1", 8471, "192.0.2.1:8471"},          // and --healthz-ip
		{"[::1]:9180", "192.0.2.1", 8471, "[::1]:9180"},    // --metrics-addr wins
		{"", "fd00::1", 8471, "[fd00::1]:8471"},
	} {
		f := runFlags{MetricsFlags: MetricsFlags{MetricsAddr: r.addr, HealthzIP: r.ip, HealthzPort: r.port}}
		assert.Equal(t, r.want, metricsAddr(f), "%+v", r)
	}
}
