//go:build integration

package shell_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// BenchmarkVxlanAddFastPath runs the published vxlan SubnetAddCommand
// with --fast-path, one new subnet per iteration. It changes the kernel:
// run it in a throwaway namespace (unshare --net), as root.
func BenchmarkVxlanAddFastPath(b *testing.B) {
	if os.Getenv("FLEXHOOK_BENCH_NETNS") != "1" {
		b.Skip("run as root in a throwaway namespace with FLEXHOOK_BENCH_NETNS=1 (unshare --net)")
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "flannel-vxlan", "type", "vxlan", "id", "1", "dstport", "8472", "nolearning"},
		{"ip", "addr", "add", "10.255.255.0/32", "dev", "flannel-vxlan"}, // as the recipe's PostStartup
		{"ip", "link", "set", "flannel-vxlan", "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	src := "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; " +
		"ip route add $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink && arp -s $SUBNET_IP $VTEP dev $IF_NAME && " +
		"bridge fdb add $VTEP dev $IF_NAME self dst $PUBLIC_IP"
	sh, err := shell.New(shell.Dir(b.TempDir()), shell.FastPath(true), shell.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	hook := parse(b, hooks.SubnetAdd, src)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		sub := fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)
		mac := fmt.Sprintf("02:00:00:00:%02x:%02x", byte(i>>8), byte(i))
		i++
		if res, err := sh.Run(b.Context(), shell.Request{Hook: hook, Subnet: sub,
			Env: []string{"SUBNET=" + sub, "PUBLIC_IP=192.0.2.2"}, Stdin: mac + "\n"}); err != nil {
			b.Fatalf("%v: %s", err, res.Stderr)
		}
	}
}
