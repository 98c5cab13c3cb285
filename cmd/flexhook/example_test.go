package main

import (
	"context"
	"os"
)

// Checking a preset before running it.
func Example_check() {
	run(context.Background(), []string{"check", "--preset", "host-gw"}, os.Stdout, os.Stderr)
	// Output: ok: host-gw
}

// Simulating the host-gw recipe for one peer: every command is printed,
// none is run.
func Example_dryRun() {
	run(context.Background(), []string{"dry-run", "--preset", "host-gw",
		"--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1",
		"--peer", "10.50.2.0/24,192.0.2.2"}, os.Stdout, os.Stderr)
	// Output:
	// # SubnetAddCommand SUBNET=10.50.2.0/24
	// + ip route add 10.50.2.0/24 via 192.0.2.2
	// # SubnetRemoveCommand SUBNET=10.50.2.0/24
	// + ip route del 10.50.2.0/24 via 192.0.2.2
}
