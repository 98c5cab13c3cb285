package file_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

// Environment of a helper process started by TestProcessesRace.
const (
	envHelper = "FLEXHOOK_FILE_STORE_HELPER"
	envDir    = "FLEXHOOK_FILE_STORE_DIR"
	envIP     = "FLEXHOOK_FILE_STORE_IP"
	envStart  = "FLEXHOOK_FILE_STORE_START"
)

// TestHelperAcquire is not a test: it is the body of a child process.
// It waits for the start file, acquires a lease and prints its subnet.
func TestHelperAcquire(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestProcessesRace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(os.Getenv(envStart)); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("start file never appeared")
		case <-time.After(time.Millisecond):
		}
	}
	s, err := file.New(os.Getenv(envDir))
	require.NoError(t, err)
	defer s.Close()
	l, err := s.Acquire(ctx, rangeOf(8), attrs(os.Getenv(envIP), "child"))
	require.NoError(t, err)
	fmt.Printf("LEASE %s\n", l.Subnet)
}

// TestProcessesRace starts 8 processes that acquire at the same moment
// from one directory whose range holds exactly 8 subnets: a lost update
// would give two of them one subnet, and then one would run out.
func TestProcessesRace(t *testing.T) {
	const n = 8
	dir := t.TempDir()
	start := filepath.Join(t.TempDir(), "start")
	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
		ip  string
	}
	children := make([]*child, n)
	for i := range children {
		c := &child{ip: fmt.Sprintf("192.0.2.%d", i+1)}
		c.cmd = exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperAcquire$", "-test.count=1")
		c.cmd.Env = append(os.Environ(), envHelper+"=1", envDir+"="+dir, envIP+"="+c.ip, envStart+"="+start)
		c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
		require.NoError(t, c.cmd.Start())
		children[i] = c
	}
	require.NoError(t, os.WriteFile(start, nil, 0o600))

	byIP := map[string]netip.Prefix{}
	seen := map[netip.Prefix]string{}
	for _, c := range children {
		require.NoError(t, c.cmd.Wait(), "child %s:\n%s", c.ip, &c.out)
		var subnet string
		for line := range strings.Lines(c.out.String()) {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "LEASE "); ok {
				subnet = s
			}
		}
		require.NotEmpty(t, subnet, "child %s printed no lease:\n%s", c.ip, &c.out)
		p := netip.MustParsePrefix(subnet)
		assert.True(t, rangeOf(n).Fits(p, netip.Prefix{}), p)
		assert.Empty(t, seen[p], "%s given to %s and %s", p, seen[p], c.ip)
		seen[p] = c.ip
		byIP[c.ip] = p
	}
	assert.Len(t, seen, n, "8 distinct subnets")

	s, _ := open(t, dir)
	ls, err := s.List(t.Context())
	require.NoError(t, err)
	require.Len(t, ls, n)
	for _, l := range ls {
		assert.Equal(t, byIP[l.Attrs.PublicIP.String()], l.Subnet, "the store agrees with what %s was told", l.Attrs.PublicIP)
		assert.Equal(t, "child", l.Attrs.BackendData)
	}
	_, err = s.Acquire(t.Context(), rangeOf(n), attrs("192.0.2.99", ""))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet)
}
