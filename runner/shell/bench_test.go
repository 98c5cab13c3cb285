package shell_test

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// Each family has a "baseline" sub-benchmark, a plain os/exec of the true
// binary, so `make bench` (internal/benchreport) prints the interpreter's
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
			shell.WithTracer(shell.NewTextTracer(io.Discard)))
	})
}
