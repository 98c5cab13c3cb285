package shell_test

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// Each family has a "baseline" sub-benchmark, a plain os/exec of the true
// binary, so `make bench` (tools/benchreport) prints the interpreter's
// cost as a ratio from the same run. `true` is named by absolute path in
// hooks because a bare `true` is an interpreter builtin.

func truePath(b *testing.B) string {
	b.Helper()
	p, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true binary")
	}
	return p
}

func benchPlainExec(b *testing.B) {
	p := truePath(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(p).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRun(b *testing.B, req shell.Request, opts ...shell.Option) {
	base := []shell.Option{shell.Dir(b.TempDir()), shell.Logger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
	sh, err := shell.New(append(base, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sh.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunBuiltinOnly: a hook made of builtins only (the vxlan
// SubnetAdd prologue) against one plain fork/exec.
func BenchmarkRunBuiltinOnly(b *testing.B) {
	req := shell.Request{
		Hook:  parse(b, hooks.SubnetAdd, `export IF_NAME=flannel-vxlan; read VTEP; X="$SUBNET $VTEP $IF_NAME"`),
		Env:   []string{"SUBNET=10.50.2.0/24"},
		Stdin: "b2:d1:fc:40:8d:2f\n",
	}
	b.Run("baseline", benchPlainExec)
	b.Run("shell", func(b *testing.B) { benchRun(b, req) })
}

// BenchmarkRunOneExec: a hook running one binary against os/exec of it.
func BenchmarkRunOneExec(b *testing.B) {
	b.Run("baseline", benchPlainExec)
	b.Run("shell", func(b *testing.B) {
		benchRun(b, shell.Request{Hook: parse(b, hooks.SubnetAdd, truePath(b))})
	})
	b.Run("shell-traced", func(b *testing.B) {
		benchRun(b, shell.Request{Hook: parse(b, hooks.SubnetAdd, truePath(b))},
			shell.Trace(shell.NewTextTracer(io.Discard)))
	})
}

// BenchmarkVxlanAddVsSh runs the published vxlan SubnetAdd text, with its
// system-changing commands swapped for /bin/true so it can run anywhere,
// through the embedded interpreter against `sh -c` as old flannel releases
// ran it (the baseline; /bin/sh appears only here, never in the product).
func BenchmarkVxlanAddVsSh(b *testing.B) {
	tp := truePath(b)
	src := "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; " +
		tp + " route add $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink && " +
		tp + " -s $SUBNET_IP $VTEP dev $IF_NAME && " +
		tp + " fdb add $VTEP dev $IF_NAME self dst $PUBLIC_IP"
	env := []string{"SUBNET=10.50.2.0/24", "PUBLIC_IP=192.0.2.2"}
	stdin := "b2:d1:fc:40:8d:2f\n"
	b.Run("baseline", func(b *testing.B) {
		sh, err := exec.LookPath("sh")
		if err != nil {
			b.Skip("no sh for the baseline")
		}
		b.ReportAllocs()
		for b.Loop() {
			cmd := exec.Command(sh, "-c", src)
			cmd.Env = env
			cmd.Stdin = strings.NewReader(stdin)
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("flexhook", func(b *testing.B) {
		benchRun(b, shell.Request{Hook: parse(b, hooks.SubnetAdd, src), Env: env, Stdin: stdin})
	})
	b.Run("flexhook-traced", func(b *testing.B) {
		benchRun(b, shell.Request{Hook: parse(b, hooks.SubnetAdd, src), Env: env, Stdin: stdin},
			shell.Trace(shell.NewTextTracer(io.Discard)))
	})
}
