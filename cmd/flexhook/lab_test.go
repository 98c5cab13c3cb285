package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTraceLines(t *testing.T) {
	log := `=== netlab: start node 1
time=2026-11-27T07:39:24.443Z level=INFO msg="+ wg genkey" hook=PreStartupCommand subnet="" status=0 duration=1.38ms
time=2026-11-27T07:39:24.449Z level=INFO msg="lease acquired" subnet=10.50.239.0/24
time=2026-11-27T07:39:24.474Z level=INFO msg="+ ip link del flannel-wg" hook=PostStartupCommand subnet=10.50.239.0/24 status=1 duration=19ms
time=2026-11-27T07:39:24.482Z level=INFO msg="kernel lacks the wireguard link type, creating it with wireguard-go" hook=PostStartupCommand
time=2026-11-27T07:39:24.143Z level=INFO msg="+ wg set flannel-wg peer 'Ay7r+/Q=' endpoint 192.0.2.12:51820" hook=SubnetAddCommand subnet=10.50.151.0/24 status=0 duration=2ms
`
	require.Equal(t, []string{
		"PreStartupCommand: + wg genkey",
		"PostStartupCommand 10.50.239.0/24: + ip link del flannel-wg  [exit 1]",
		"(kernel lacks the wireguard link type, creating it with wireguard-go)",
		"SubnetAddCommand 10.50.151.0/24: + wg set flannel-wg peer 'Ay7r+/Q=' endpoint 192.0.2.12:51820",
	}, traceLines(log))
}

func TestAllReached(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   [][]bool
		want bool
	}{
		{"diagonal ignored", [][]bool{{false, false, false}, {false, false, true}, {false, true, false}}, true},
		{"one pair missing", [][]bool{{false, false, false}, {false, false, true}, {false, false, false}}, false},
	} {
		require.Equal(t, tc.want, allReached(tc.ok), tc.name)
	}
}

// Bad lab flags and configs stop before any namespace is made.
func TestLabUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"lab", "--preset", "vxlan", "--nodes", "0"}, exitUsage},
		{[]string{"lab", "--preset", "vxlan", "--trace-node", "4"}, exitUsage},
		{[]string{"lab"}, exitUsage},
		{[]string{"lab", "--preset", "nope"}, exitUsage},
		{[]string{"lab", "--config", "testdata/bad-quote.json"}, exitUsage},
		{[]string{"lab", "-h"}, exitOK},
	} {
		var out, errb bytes.Buffer
		require.Equal(t, tc.code, run(context.Background(), tc.args, &out, &errb), "%v: %s", tc.args, errb.String())
	}
}
