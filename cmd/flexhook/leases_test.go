package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
	"github.com/flexhook/flexhook/runner"
)

// seedStore acquires one lease per public IP in a real file store.
func seedStore(t *testing.T, dir string, nodes map[string]string) map[string]string {
	return seedStoreRange(t, dir, "10.50.0.0/16", nodes)
}

// seedStoreRange is seedStore in another /16 network, of /24 subnets.
func seedStoreRange(t *testing.T, dir, network string, nodes map[string]string) map[string]string {
	t.Helper()
	st, err := file.New(dir, file.Logger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer st.Close()
	n := netip.MustParsePrefix(network)
	first := n.Addr().As4()
	first[2] = 1
	last := first
	last[2] = 255
	r := leases.Range{
		Network:   n,
		SubnetLen: 24,
		SubnetMin: netip.AddrFrom4(first),
		SubnetMax: netip.AddrFrom4(last),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return acquireAll(t, ctx, st, r, nodes)
}

// acquireAll acquires in st one lease per public IP (mapped to its
// BackendData) and returns each IP's subnet.
func acquireAll(t *testing.T, ctx context.Context, st leases.Store, r leases.Range, nodes map[string]string) map[string]string {
	t.Helper()
	subnets := map[string]string{}
	for ip, data := range nodes {
		l, err := st.Acquire(ctx, r, leases.Attrs{
			PublicIP:    netip.MustParseAddr(ip),
			BackendType: leases.BackendType,
			BackendData: data,
		})
		require.NoError(t, err)
		subnets[ip] = l.Subnet.String()
	}
	return subnets
}

func TestLeasesListAndRemove(t *testing.T) {
	dir := t.TempDir()
	subnets := seedStore(t, dir, map[string]string{
		"192.0.2.1": "82:87:fe:a4:a9:55",
		"192.0.2.2": "b2:d1:fc:40:8d:2f",
		"192.0.2.3": "",
	})

	code, out, errOut := cli(t, "leases", "--store", dir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^SUBNET\s+PUBLIC IP\s+BACKEND DATA\s+TTL$`, lines[0])
	var listed []netip.Prefix
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		require.Len(t, f, 4, line)
		assert.Equal(t, subnets[f[1]], f[0], line)
		assert.Regexp(t, `^(23h5\dm|24h00m)$`, f[3], "TTL of a fresh lease")
		listed = append(listed, netip.MustParsePrefix(f[0]))
	}
	for i := 1; i < len(listed); i++ {
		assert.Negative(t, listed[i-1].Addr().Compare(listed[i].Addr()), "sorted by subnet")
	}
	assert.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(subnets["192.0.2.1"])+`\s+192\.0\.2\.1\s+82:87:fe:a4:a9:55\s`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(subnets["192.0.2.3"])+`\s+192\.0\.2\.3\s+-\s`), out)

	// "list" spelled out, flags after the action.
	code, out2, _ := cli(t, "leases", "list", "--store", dir)
	require.Equal(t, 0, code)
	assert.Equal(t, len(out), len(out2))

	gone := subnets["192.0.2.2"]
	code, out, errOut = cli(t, "leases", "remove", gone, "--store", dir)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "removed "+gone+"\n", out)

	_, out, _ = cli(t, "leases", "--store", dir)
	assert.NotContains(t, out, gone)
	assert.NotContains(t, out, "192.0.2.2")
	assert.Contains(t, out, subnets["192.0.2.1"])

	code, out, errOut = cli(t, "leases", "remove", gone, "--store", dir)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "flexhook: remove "+gone+": no such lease\n", errOut)
}

func TestLeasesStoreFromEnv(t *testing.T) {
	dir := t.TempDir()
	subnets := seedStore(t, dir, map[string]string{"192.0.2.9": "x"})
	t.Setenv("FLEXHOOK_STORE", dir)
	code, out, errOut := cli(t, "leases")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, subnets["192.0.2.9"])
}

func TestLeasesEtcdUnreachableHidesPassword(t *testing.T) {
	t.Setenv("FLEXHOOK_ETCD_PASSWORD", "hunter2-secret")
	code, out, errOut := cli(t, "leases", "--etcd-endpoints", "http://127.0.0.1:1",
		"--etcd-username", "root", "--log-level", "debug")
	assert.Equal(t, 1, code)
	assert.NotContains(t, out+errOut, "hunter2-secret")
}

func TestPrintLeasesSanitizesBackendData(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	require.NoError(t, printLeases(&b, []leases.Lease{{
		Subnet:     netip.MustParsePrefix("10.50.2.0/24"),
		Attrs:      leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendData: "a\nb\x1b[31m"},
		Expiration: now.Add(90 * time.Minute),
	}}, nil, now))
	assert.Equal(t, 2, strings.Count(b.String(), "\n"))
	assert.Contains(t, b.String(), "a?b?[31m")
	assert.Contains(t, b.String(), "1h30m")
}

func TestLeasesMissingStoreDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	code, _, errOut := cli(t, "leases", "--store", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no such directory")
	assert.NoDirExists(t, dir, "listing must not create a store")
}

// writeLeaseFile writes a lease file under any name, live for an hour, as
// a hostile node sharing the store could.
func writeLeaseFile(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, "subnets", name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(p, exp, exp))
}

func TestLeasesListMarksRefused(t *testing.T) {
	dir := t.TempDir()
	subnets := seedStore(t, dir, map[string]string{"192.0.2.2": "b2:d1:fc:40:8d:2f"})
	writeLeaseFile(t, dir, "0.0.0.0-0", `{"PublicIP":"192.0.2.66","PublicIPv6":null,"BackendType":"extension","BackendData":"b2:d1:fc:40:8d:66"}`)
	writeLeaseFile(t, dir, "10.50.3.0-024", `{"PublicIP":"192.0.2.66","PublicIPv6":null,"BackendType":"extension"}`)
	writeLeaseFile(t, dir, "10.50.4.0-24", `{"PublicIP":"192.0.2.66","PublicIPv6":null,"BackendType":"extension","BackendData":"x allowed-ips 0.0.0.0/0"}`)
	writeLeaseFile(t, dir, "bad\x1bkey", `x`)

	rows := func(args ...string) map[string]string {
		code, out, errOut := cli(t, append([]string{"leases", "list", "--store", dir}, args...)...)
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Regexp(t, `REFUSED$`, lines[0])
		got := map[string]string{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			got[f[0]] = f[len(f)-1]
		}
		return got
	}
	// Without a config: the rules that need none.
	assert.Equal(t, map[string]string{
		subnets["192.0.2.2"]: "-", "0.0.0.0/0": "overlaps_lease", "10.50.3.0-024": "bad_key",
		"10.50.4.0/24": "-", `"bad\x1bkey"`: "bad_key",
	}, rows())
	// With the vxlan preset: Network, SubnetLen and the MAC shape.
	assert.Equal(t, map[string]string{
		subnets["192.0.2.2"]: "-", "0.0.0.0/0": "outside_network", "10.50.3.0-024": "bad_key",
		"10.50.4.0/24": "backend_data_shape", `"bad\x1bkey"`: "bad_key",
	}, rows("--preset", "vxlan"))

	// -o json: the same verdicts, by store key, with the lease's fields.
	code, out, errOut := cli(t, "leases", "list", "--store", dir, "--preset", "vxlan", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc struct {
		APIVersion string `json:"api_version"`
		Kind       string `json:"kind"`
		Leases     []struct {
			Key, Subnet, Refused string
			PublicIP             string `json:"public_ip"`
			BackendData          string `json:"backend_data"`
		} `json:"leases"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	assert.Equal(t, "flexhook/v1", doc.APIVersion)
	assert.Equal(t, "LeaseList", doc.Kind)
	got := map[string]string{}
	for _, l := range doc.Leases {
		got[l.Key] = l.Refused
		if l.Subnet == subnets["192.0.2.2"] {
			assert.Equal(t, "192.0.2.2", l.PublicIP)
			assert.Equal(t, "b2:d1:fc:40:8d:2f", l.BackendData)
		}
	}
	assert.Equal(t, map[string]string{
		strings.ReplaceAll(subnets["192.0.2.2"], "/", "-"): "", "0.0.0.0-0": "outside_network", "10.50.3.0-024": "bad_key",
		"10.50.4.0-24": "backend_data_shape", "bad\x1bkey": "bad_key",
	}, got)
	code, _, errOut = cli(t, "leases", "list", "--store", dir, "-o", "yaml")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `leases: -o "yaml": want text or json`)
}

func TestStatusListsRefused(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	st := runner.Status{
		Subnet: netip.MustParsePrefix("10.50.1.0/24"), UpdatedAt: now,
		Refused: []runner.Refused{
			{Key: "0.0.0.0-0", Reason: "outside_network", Detail: "0.0.0.0/0 is not a /24 subnet of 10.50.0.0/16"},
			{Key: `"\x1b[2J"`, Reason: "bad_key", Detail: "missing '-'\x1b[31m"},
		},
		RefusedNow: map[string]int{"outside_network": 1, "bad_key": 1},
	}
	require.NoError(t, writeStatus(&b, st, now, true))
	assert.Contains(t, b.String(), "refused    2: bad_key=1 outside_network=1\n")
	assert.Contains(t, b.String(), "  0.0.0.0-0 outside_network: 0.0.0.0/0 is not a /24 subnet of 10.50.0.0/16\n")
	assert.NotContains(t, b.String(), "\x1b", "no control character reaches the terminal")

	b.Reset()
	require.NoError(t, writeStatus(&b, st, now, false))
	assert.Contains(t, b.String(), "refused    2: bad_key=1 outside_network=1\n", "counts by default")
	assert.NotContains(t, b.String(), "0.0.0.0-0", "the list only with -o wide")
}

func TestStatusShowsMTU(t *testing.T) {
	now := time.Now()
	for _, r := range []struct {
		st   runner.Status
		want string
	}{
		{runner.Status{MTU: 1450, MTUSource: "path: dev flannel-vxlan, address 10.50.1.0/32"},
			"mtu        1450 (path: dev flannel-vxlan, address 10.50.1.0/32)\n"},
		{runner.Status{MTU: 1300, MTUSource: "--mtu"}, "mtu        1300 (--mtu)\n"},
		{runner.Status{}, ""}, // a status.json from before: no line
		{runner.Status{MTU: 1500, MTUSource: "default", Journal: "cut a torn tail of 31 bytes off applied.log"},
			"mtu        1500 (default)\njournal    cut a torn tail of 31 bytes off applied.log\n"},
	} {
		var b strings.Builder
		r.st.UpdatedAt = now
		require.NoError(t, writeStatus(&b, r.st, now, false))
		if r.want == "" {
			assert.NotContains(t, b.String(), "mtu ")
			continue
		}
		assert.Contains(t, b.String(), "public ip  invalid IP\n"+r.want, "right after the public IP")
	}
}
