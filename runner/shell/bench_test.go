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

// The benchmarks compare the interpreter's overhead with a plain os/exec:
// BenchmarkRunOneExec and BenchmarkPlainExec run the same binary (true, by
// absolute path because `true` alone is a builtin of the interpreter).

func benchShell(b *testing.B) *shell.Shell {
	b.Helper()
	sh, err := shell.New(shell.Dir(b.TempDir()), shell.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	return sh
}

func truePath(b *testing.B) string {
	b.Helper()
	p, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true binary")
	}
	return p
}

func BenchmarkRunBuiltinOnly(b *testing.B) {
	sh := benchShell(b)
	hook := parse(b, hooks.SubnetAdd, `export IF_NAME=flannel-vxlan; read VTEP; X="$SUBNET $VTEP $IF_NAME"`)
	req := shell.Request{Hook: hook, Env: []string{"SUBNET=10.50.2.0/24"}, Stdin: "b2:d1:fc:40:8d:2f\n"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sh.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunOneExec(b *testing.B) {
	sh := benchShell(b)
	req := shell.Request{Hook: parse(b, hooks.SubnetAdd, truePath(b))}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sh.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunOneExecTraced(b *testing.B) {
	sh, err := shell.New(shell.Dir(b.TempDir()), shell.WithTracer(shell.NewTextTracer(io.Discard)))
	if err != nil {
		b.Fatal(err)
	}
	req := shell.Request{Hook: parse(b, hooks.SubnetAdd, truePath(b))}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sh.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlainExec(b *testing.B) {
	p := truePath(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(p).Run(); err != nil {
			b.Fatal(err)
		}
	}
}
