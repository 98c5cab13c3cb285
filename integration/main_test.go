//go:build integration

// Package integration proves the vxlan, host-gw and wireguard presets carry
// packets between real network namespaces, with the real flexhook binary
// (from $FLEXHOOK_BIN, or built into a temp dir), as nodes come, go and
// restart. Root only; with CI=true a skip is a failure.
package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
)

// flexhookBin is the binary under test; empty when it could not be had
// (setupErr says why).
var (
	flexhookBin string
	setupErr    error
)

func TestMain(m *testing.M) {
	netlab.HandleReexec()
	runEtcdChild() // returns unless started as a lab's etcd
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		var cleanup func()
		flexhookBin, cleanup, setupErr = findFlexhook()
		defer cleanup()
	}
	code := m.Run()
	// Every lab must be gone, whatever the tests did.
	if left := ownNamespaces(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: namespaces left behind: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func findFlexhook() (string, func(), error) {
	if p := os.Getenv("FLEXHOOK_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", func() {}, err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", func() {}, fmt.Errorf("FLEXHOOK_BIN: %w", err)
		}
		return abs, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "flexhook-it-bin-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	bin := filepath.Join(dir, "flexhook")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/flexhook/flexhook/cmd/flexhook").CombinedOutput()
	if err != nil {
		return "", cleanup, fmt.Errorf("go build ./cmd/flexhook: %w: %s", err, out)
	}
	return bin, cleanup, nil
}

func ownNamespaces() []string {
	ents, _ := os.ReadDir("/run/netns")
	var left []string
	own := fmt.Sprintf("%s%d-", netlab.Prefix, os.Getpid())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), own) {
			left = append(left, e.Name())
		}
	}
	return left
}

// requireLab checks root, the binary and the tools, and returns the binary.
func requireLab(t *testing.T, tools ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root: network namespaces (run `sudo make integration`)")
	}
	if setupErr != nil {
		t.Fatalf("no flexhook binary: %v", setupErr)
	}
	for _, tool := range append([]string{"ip", "ping"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "needs %s (Debian: apt-get install --no-install-recommends iproute2 iputils-ping net-tools wireguard-tools wireguard-go)", tool)
		}
	}
	return flexhookBin
}

// writeLease puts a lease into the lab's file store as another node (or an
// attacker with write access to the store) would.
func writeLease(t *testing.T, lab *netlab.Lab, subnet, ip, data string) {
	t.Helper()
	l := leases.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: leases.Attrs{
		PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType, BackendData: data}}
	b, err := leases.MarshalAttrs(l.Attrs)
	require.NoError(t, err)
	dir := filepath.Join(lab.StoreDir(), "subnets")
	tmp := filepath.Join(dir, ".tmp-lease")
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(tmp, exp, exp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, leases.SubnetKey(l.Subnet, netip.Prefix{}))))
}
