package shell_test

import (
	"context"
	"fmt"
	"os"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/runner/shell"
)

// A dry run of the host-gw recipe's SubnetAddCommand: ip is traced, not run.
func ExampleShell_Run() {
	hook, err := hooks.ParseHook(hooks.SubnetAdd, "ip route add $SUBNET via $PUBLIC_IP")
	if err != nil {
		fmt.Println(err)
		return
	}
	sh, err := shell.New(shell.DryRun(true), shell.Trace(shell.NewTextTracer(os.Stdout)))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = sh.Run(context.Background(), shell.Request{
		Hook:   hook,
		Env:    []string{"SUBNET=10.50.2.0/24", "PUBLIC_IP=192.0.2.2"},
		Subnet: "10.50.2.0/24",
	})
	fmt.Println("error:", err)
	// Output:
	// # SubnetAddCommand SUBNET=10.50.2.0/24
	// + ip route add 10.50.2.0/24 via 192.0.2.2
	// error: <nil>
}

// A hook's stdout is returned raw; its stderr is logged, not mixed in.
func ExampleShell_Run_output() {
	dir, err := os.MkdirTemp("", "flexhook-state")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	hook, _ := hooks.ParseHook(hooks.PreStartup, `echo "key-for $PUBLIC_IP"; echo warning >&2`)
	sh, err := shell.New(shell.Dir(dir))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := sh.Run(context.Background(), shell.Request{Hook: hook, Env: []string{"PUBLIC_IP=192.0.2.1"}})
	fmt.Printf("%q %q %v\n", res.Stdout, res.Stderr, err)
	// Output:
	// "key-for 192.0.2.1\n" "warning\n" <nil>
}
