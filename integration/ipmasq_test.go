//go:build integration

package integration

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
)

// --ip-masq masquerades, as flanneld does, what a pod sends out of the
// Network and nothing it sends to other pods: a listener in the hub (an
// address outside the Network) sees node 1's underlay address, a
// listener in node 2's pod sees node 1's pod. The rules outlive a restart
// and go when the node leaves; a node without the flag has none.
func TestIPMasq(t *testing.T) {
	bin := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := newLab(t, ctx, bin, 2)
	hub, err := lab.AddHubAddress(ctx)
	require.NoError(t, err)
	require.NoError(t, lab.StartNode(ctx, 1, "--preset", "host-gw", "--ip-masq"))
	require.NoError(t, lab.StartNode(ctx, 2, "--preset", "host-gw"))
	requireMesh(t, ctx, lab, "host-gw", []int{1, 2})
	for i := 1; i <= 2; i++ {
		_, err := lab.AddPod(ctx, i, 1500)
		require.NoError(t, err)
	}

	table := func(i int) (string, error) {
		out, err := lab.Exec(ctx, i, "nft", "list", "table", "ip", "flannel-ipv4")
		return string(out), err
	}
	rules, err := table(1)
	require.NoError(t, err, "node 1 has no masquerade table: %s", rules)
	require.Contains(t, rules, "ip saddr 10.50.0.0/16 ip daddr != 224.0.0.0/4 masquerade")
	_, err = table(2)
	require.Error(t, err, "node 2 runs without --ip-masq")

	require.Equal(t, lab.Underlay(1), sourceSeen(t, ctx, lab, 1, func() (net.Listener, error) {
		return lab.ListenHub(ctx, "tcp4", netip.AddrPortFrom(hub, 0).String())
	}), "pod to the outside: masqueraded")
	require.Equal(t, lab.Pod(1), sourceSeen(t, ctx, lab, 1, func() (net.Listener, error) {
		return lab.ListenPod(ctx, 2, "tcp4", 0)
	}), "pod to pod: the pod's own address")

	require.NoError(t, lab.RestartNode(ctx, 1))
	after, err := table(1)
	require.NoError(t, err, "a restart removed the rules")
	require.Equal(t, strings.Count(rules, "\n"), strings.Count(after, "\n"), "a restart added rules:\n%s", after)

	require.NoError(t, lab.LeaveNode(ctx, 1))
	out, err := table(1)
	require.Error(t, err, "leaving the cluster kept the rules:\n%s", out)
	require.NoError(t, lab.LeaveNode(ctx, 2))
}

// sourceSeen connects from node from's pod to the listener listen makes
// and returns the source address the listener saw.
func sourceSeen(t *testing.T, ctx context.Context, lab *netlab.Lab, from int, listen func() (net.Listener, error)) netip.Addr {
	t.Helper()
	ln, err := listen()
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c.RemoteAddr()
		c.Close()
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := lab.DialPod(dctx, from, "tcp4", ln.Addr().String())
	require.NoError(t, err)
	c.Close()
	a := <-accepted
	require.NotNil(t, a, "accept failed")
	return a.(*net.TCPAddr).AddrPort().Addr().Unmap()
}
