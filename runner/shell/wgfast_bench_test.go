//go:build integration

package shell_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner/shell"
)

// BenchmarkWireguardPeers runs the wireguard preset's SubnetAdd for 200
// peers, then its SubnetRemove for each, per iteration, against a
// wireguard-go device: baseline forks the real wg for every peer,
// fastpath does the same through wgctrl. It changes the host: run it as
// root in throwaway network and mount namespaces (it mounts its own
// /run), e.g.
//
//	go test -tags integration -c -o /tmp/shell.test ./runner/shell
//	FLEXHOOK_BENCH_NETNS=1 unshare --net --mount --propagation private \
//	    /tmp/shell.test -test.run '^$' -test.bench BenchmarkWireguardPeers | go run ./tools/benchreport
func BenchmarkWireguardPeers(b *testing.B) {
	if os.Getenv("FLEXHOOK_BENCH_NETNS") != "1" {
		b.Skip("run as root in throwaway namespaces with FLEXHOOK_BENCH_NETNS=1 (unshare --net --mount)")
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		b.Fatalf("tmpfs on /run: %v", err)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		b.Fatalf("lo up: %v: %s", err, out)
	}
	data, err := presets.Get("wireguard")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := hooks.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	const peers = 200
	keys := make([]string, peers)
	for i := range keys {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k.PublicKey().String() + "\n"
	}
	for _, v := range []struct {
		name string
		fast bool
	}{{"baseline", false}, {"fastpath", true}} {
		b.Run(v.name, func(b *testing.B) {
			sh, err := shell.New(shell.Dir(b.TempDir()), shell.FastPath(v.fast), shell.Wireguard(shell.WireguardAuto),
				shell.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				b.Fatal(err)
			}
			defer sh.Close()
			run := func(kind hooks.Kind, env []string, stdin string) {
				if res, err := sh.Run(b.Context(), shell.Request{Hook: cfg.Backend.Hook(kind), Env: env, Stdin: stdin}); err != nil {
					b.Fatalf("%s: %v: %s", kind, err, res.Stderr)
				}
			}
			run(hooks.PreStartup, nil, "")
			run(hooks.PostStartup, []string{"NETWORK=10.50.0.0/16", "SUBNET=10.50.255.0/24"}, "")
			defer deleteWireguardGo(b)
			env := make([][]string, peers)
			for i := range env {
				env[i] = []string{fmt.Sprintf("SUBNET=10.%d.%d.0/24", 50+i/256, i%256), fmt.Sprintf("PUBLIC_IP=192.0.%d.%d", 2+i/250, 1+i%250)}
			}
			b.ReportAllocs()
			for b.Loop() {
				for i, k := range keys {
					run(hooks.SubnetAdd, env[i], k)
				}
				for i, k := range keys {
					run(hooks.SubnetRemove, env[i], k)
				}
			}
		})
	}
}
