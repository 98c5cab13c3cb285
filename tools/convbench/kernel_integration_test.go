//go:build integration

package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

const kernelInner = "CONVBENCH_KERNEL_INNER"

// TestWaitKernel runs waitKernel in a fresh network namespace against
// what ip and bridge put in the kernel: it sees only the remote leases'
// routes (a /24 in countRoot, main table), the vxlan device's permanent
// neighbours and its fdb entries with a dst, and it fails on too few and
// on too many.
func TestWaitKernel(t *testing.T) {
	if os.Getenv(kernelInner) == "" {
		testutil.RunInner(t, "TestWaitKernel", kernelInner, []string{"--net"}, "ip", "bridge")
		return
	}
	ctx := t.Context()
	run := func(tool string, lines ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, tool, "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s -batch: %s", tool, out)
	}
	run("ip", "link set lo up", "link add veth0 type veth peer name veth1", "addr add 172.16.0.1/16 dev veth0",
		"link set veth0 up", "link set veth1 up")

	// Nothing yet: a timeout, then a device that is not there counts as
	// empty.
	_, err := waitKernel(ctx, "", 3, 30*time.Millisecond, nil)
	require.ErrorContains(t, err, "0 routes")
	_, err = waitKernel(ctx, vxlanDev, 3, 30*time.Millisecond, nil)
	require.ErrorContains(t, err, "not converged after")

	// host-gw: three remote routes, plus routes that are not a remote
	// lease's (outside countRoot, not a /24, another table).
	var routes []string
	for i := range 3 {
		l := lease(i, false)
		routes = append(routes, fmt.Sprintf("route add %s via %s", l.Subnet, l.Attrs.PublicIP))
	}
	run("ip", append(routes, "route add 10.200.0.0/24 via 172.16.9.9", "route add 10.1.9.0/25 via 172.16.9.9",
		"route add 10.1.10.0/24 via 172.16.9.9 table 100")...)
	at, err := waitKernel(ctx, "", 3, time.Second, nil)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, time.Second)
	_, err = waitKernel(ctx, "", 4, 30*time.Millisecond, nil)
	require.ErrorContains(t, err, "3 routes")
	_, err = waitKernel(ctx, "", 2, time.Second, nil)
	require.ErrorContains(t, err, "more than the 2 leases")

	// An exited daemon ends the wait.
	exited := make(chan struct{})
	close(exited)
	_, err = waitKernel(ctx, "", 4, time.Minute, exited)
	require.ErrorContains(t, err, "exited while")

	// vxlan: the routes are there; the neighbours and fdb entries count
	// only when on the device, permanent and with a dst.
	run("ip", "link add "+vxlanDev+" type vxlan id 1 dstport 8472 nolearning", "link set "+vxlanDev+" up")
	var neighs, fdb []string
	for i := range 3 {
		l := lease(i, true)
		neighs = append(neighs, fmt.Sprintf("neigh add %s lladdr %s dev %s nud permanent", l.Subnet.Addr(), l.Attrs.BackendData, vxlanDev))
		fdb = append(fdb, fmt.Sprintf("fdb add %s dev %s self dst %s", l.Attrs.BackendData, vxlanDev, l.Attrs.PublicIP))
	}
	run("ip", append(slices.Clone(neighs[:2]), "neigh add 10.9.9.9 lladdr 02:00:00:09:09:09 dev "+vxlanDev+" nud reachable",
		"neigh add 172.16.9.9 lladdr 02:00:00:09:09:09 dev veth0 nud permanent")...)
	run("bridge", append(slices.Clone(fdb[:2]), "fdb add 02:00:00:09:09:09 dev veth0 self")...)
	_, err = waitKernel(ctx, vxlanDev, 3, 30*time.Millisecond, nil)
	require.ErrorContains(t, err, "3 routes, 2 permanent neighbours, 2 fdb entries")
	run("ip", neighs[2])
	run("bridge", fdb[2])
	_, err = waitKernel(ctx, vxlanDev, 3, time.Second, nil)
	require.NoError(t, err)
}
