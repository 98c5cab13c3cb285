package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner/shell"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testdata is the absolute testdata directory (tests change directory).
var testdata = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "testdata")
}()

// td returns the absolute path of a testdata file.
func td(name string) string { return filepath.Join(testdata, name) }

// cli runs the CLI in-process like the binary would.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := td(name + ".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./cmd/flexhook -update` to create it")
	assert.Equal(t, string(want), got, "output differs from %s", path)
}

func TestPresetsList(t *testing.T) {
	code, out, errOut := cli(t, "presets")
	require.Equal(t, 0, code, errOut)
	golden(t, "presets-list", out)
	for _, name := range presets.Names() {
		assert.Regexp(t, `(?m)^`+name+`\s+\S`, out, "a line with a description per preset")
	}
}

func TestPresetsShowIsExactJSON(t *testing.T) {
	for _, name := range presets.Names() {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := cli(t, "presets", name)
			require.Equal(t, 0, code, errOut)
			raw, err := presets.Get(name)
			require.NoError(t, err)
			assert.Equal(t, string(raw), out)
			if name == "vxlan" {
				golden(t, "presets-vxlan", out)
			}
			if !slices.Contains(presets.Published(), name) {
				return // flexhook's own preset: no published recipe
			}
			// The published recipe, as kept in the repo.
			recipe, err := os.ReadFile(filepath.Join("..", "..", "presets", "testdata", "published", name+".json"))
			require.NoError(t, err)
			assert.Equal(t, string(recipe), out, "presets %s must print the published recipe byte for byte", name)
		})
	}
}

func TestCheckPresets(t *testing.T) {
	for _, name := range presets.Names() {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := cli(t, "check", "--preset", name)
			require.Equal(t, 0, code, errOut)
			assert.True(t, strings.HasPrefix(out, "ok: "+name+"\n"), out)
			golden(t, "check-"+name, out)
		})
	}
}

func TestCheckConfigFileOK(t *testing.T) {
	raw, err := presets.Get("host-gw")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	code, out, errOut := cli(t, "check", "--config", path)
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, "ok: "+path+"\n"), out)
}

func TestCheckFailures(t *testing.T) {
	tests := []struct {
		file  string
		place string // what the message must name
	}{
		{"bad-quote", "SubnetAddCommand:1:"},
		{"bad-backend-key", "SubnetRemoveComand"},
		{"bad-type", "vxlan"},
		{"bad-json", ":3:"},
		{"bad-network", "Network"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			code, out, errOut := cli(t, "check", "--config", filepath.Join("testdata", tt.file+".json"))
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.True(t, strings.HasPrefix(errOut, "flexhook: "), errOut)
			assert.Contains(t, errOut, tt.place)
			golden(t, "check-"+tt.file, errOut)
		})
	}
}

func TestCheckBadTypeNamesPreset(t *testing.T) {
	_, _, errOut := cli(t, "check", "--config", "testdata/bad-type.json")
	assert.Contains(t, errOut, "--preset vxlan")
}

func TestCheckUnterminatedQuoteColumn(t *testing.T) {
	// The error points at the opening quote, a column of the command
	// (not of the JSON file).
	src := "ip route add $SUBNET via $PUBLIC_IP dev 'eth0"
	col := strings.IndexByte(src, '\'') + 1
	_, _, errOut := cli(t, "check", "--config", "testdata/bad-quote.json")
	assert.Contains(t, errOut, fmt.Sprintf("SubnetAddCommand:1:%d:", col))
}

var issue2VxlanArgs = []string{
	"dry-run", "--preset", "vxlan", "--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1",
	"--backend-data", "82:87:fe:a4:a9:55", "--peer", "10.50.2.0/24,192.0.2.2,b2:d1:fc:40:8d:2f",
}

func TestDryRunVxlan(t *testing.T) {
	t.Chdir(t.TempDir())
	code, out, errOut := cli(t, issue2VxlanArgs...)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(out, "\n")
	for _, want := range []string{
		"+ ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink",
		"+ arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan",
		"+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2",
	} {
		assert.Contains(t, lines, want)
	}
	assertDirEmpty(t, ".")
	golden(t, "dry-run-vxlan", out)
}

// peerKey is a WireGuard public key (base64 of 32 bytes).
const peerKey = "sJvuQr8rHkTGPM1ZZhtJhDcqRQTBuCAXcdmTTkz/6Ug="

func TestDryRunWireguardWritesNoFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	code, out, errOut := cli(t, "dry-run", "--preset", "wireguard", "--subnet", "10.50.1.0/24",
		"--public-ip", "192.0.2.1", "--backend-data", "cHVibGljLWtleS0x",
		"--peer", "10.50.2.0/24,192.0.2.2,"+peerKey)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "+ wg set flannel-wg peer "+peerKey+" endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24")
	assert.Contains(t, out, "+ wg set flannel-wg peer "+peerKey+" remove")
	assertDirEmpty(t, dir)
	assert.NoFileExists(t, filepath.Join(dir, "privatekey"))
}

func TestDryRunPeerDataWithCommas(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"Network":"10.50.0.0/16","Backend":{"Type":"extension",
		"SubnetAddCommand":"read DATA; ip link show \"$DATA\""}}`), 0o600))
	code, out, errOut := cli(t, "dry-run", "--config", cfg, "--subnet", "10.50.1.0/24",
		"--public-ip", "192.0.2.1", "--peer", "10.50.2.0/24,192.0.2.2,a,b,c")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "+ ip link show a,b,c")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"frobnicate"}},
		{"unknown flag", []string{"check", "--preset", "vxlan", "--bogus"}},
		{"check without source", []string{"check"}},
		{"check with both", []string{"check", "--preset", "vxlan", "--config", td("bad-type.json")}},
		{"check extra arg", []string{"check", "--preset", "vxlan", "extra"}},
		{"unknown preset", []string{"check", "--preset", "nope"}},
		{"presets unknown", []string{"presets", "nope"}},
		{"presets two names", []string{"presets", "vxlan", "host-gw"}},
		{"dry-run no subnet", []string{"dry-run", "--preset", "vxlan", "--public-ip", "192.0.2.1"}},
		{"dry-run bad subnet", []string{"dry-run", "--preset", "vxlan", "--subnet", "10.50.1.1/24", "--public-ip", "192.0.2.1"}},
		{"dry-run bad ip", []string{"dry-run", "--preset", "vxlan", "--subnet", "10.50.1.0/24", "--public-ip", "nope"}},
		{"dry-run bad peer", []string{"dry-run", "--preset", "vxlan", "--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1", "--peer", "10.50.2.0/24"}},
		{"run without source", []string{"run", "--public-ip", "192.0.2.1", "--store", "."}},
		{"run bad margin", []string{"run", "--preset", "vxlan", "--subnet-lease-renew-margin", "soon"}},
		{"run bad wireguard mode", []string{"run", "--preset", "wireguard", "--wireguard-userspace", "sometimes"}},
		{"run zero hook timeout", []string{"run", "--preset", "vxlan", "--hook-timeout", "0s"}},
		{"run backend-data without dry-run", []string{"run", "--preset", "vxlan", "--backend-data", "x"}},
		{"run bad public ip", []string{"run", "--preset", "vxlan", "--public-ip", "fd00::1"}},
		{"run config error", []string{"run", "--config", td("bad-quote.json"), "--public-ip", "192.0.2.1"}},
		{"leases bad action", []string{"leases", "frob"}},
		{"leases remove no subnet", []string{"leases", "remove"}},
		{"leases remove bad subnet", []string{"leases", "remove", "10.50.1.7/24"}},
		{"bad log level", []string{"presets", "--log-level", "loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			code, out, errOut := cli(t, tt.args...)
			assert.Equal(t, 2, code, "stdout=%q stderr=%q", out, errOut)
			assert.Contains(t, errOut, "flexhook: ")
		})
	}
}

// Usage errors are one line in flexhook's spelling, with a did-you-mean
// and where to look, and no usage dump.
func TestUsageErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rnu"}, `flexhook: unknown command "rnu" (did you mean "run"?)`},
		{[]string{"frobnicate"}, `flexhook: unknown command "frobnicate" (commands: run, check,`},
		{[]string{"help", "chek"}, `flexhook: unknown command "chek" (did you mean "check"?)`},
		{[]string{"run", "--hook-timout", "5s"}, "flexhook: run: unknown flag --hook-timout (did you mean --hook-timeout?); see flexhook run -h\n"},
		{[]string{"check", "--bogus"}, "flexhook: check: unknown flag --bogus; see flexhook check -h\n"},
		{[]string{"run", "--hook-timeout", "5x"}, `flexhook: run: invalid value "5x" for flag --hook-timeout: `},
		{[]string{"run", "--state-dir"}, "flexhook: run: flag needs an argument: --state-dir; see flexhook run -h"},
		{[]string{"run", "--preset", "vxlan", "--iface", "fhnope0"}, "flexhook: --iface fhnope0: "},
	} {
		code, out, errOut := cli(t, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
		assert.NotContains(t, out+errOut, "usage:", "%v: no usage dump", tc.args)
		assert.LessOrEqual(t, strings.Count(errOut, "\n"), 2, "%v: %s", tc.args, errOut)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		code, out, _ := cli(t, args...)
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "flexhook dry-run")
	}
	code, out, _ := cli(t, "run", "-h")
	assert.Equal(t, 0, code)
	assert.Equal(t, 1, strings.Count(out, "usage:"), "usage printed once")
	assert.Contains(t, out, "--etcd-endpoints URLS")
	assert.Contains(t, out, "--subnet-lease-renew-margin")
	assert.NotContains(t, out, "store-resync", "hidden flag")

	for _, args := range [][]string{{"help", "run"}, {"help", "lab", "verify"}} {
		code, out, _ = cli(t, args...)
		assert.Equal(t, 0, code, "%v", args)
		assert.Equal(t, 1, strings.Count(out, "usage: flexhook "+strings.Join(args[1:], " ")), "%v: the command's own usage:\n%s", args, out)
	}

	code, out, _ = cli(t, "version")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `^flexhook \S+ \(commit \S+, go1\.\S+\)\n$`, out)
}

func TestEnvEquivalents(t *testing.T) {
	t.Run("preset from env", func(t *testing.T) {
		t.Setenv("FLEXHOOK_PRESET", "host-gw")
		code, out, errOut := cli(t, "check")
		require.Equal(t, 0, code, errOut)
		assert.True(t, strings.HasPrefix(out, "ok: host-gw\n"), out)
	})
	t.Run("flag wins over env", func(t *testing.T) {
		t.Setenv("FLEXHOOK_PRESET", "nope")
		code, out, errOut := cli(t, "check", "--preset", "vxlan")
		require.Equal(t, 0, code, errOut)
		assert.True(t, strings.HasPrefix(out, "ok: vxlan\n"), out)
	})
	t.Run("dry-run entirely from env", func(t *testing.T) {
		t.Chdir(t.TempDir())
		t.Setenv("FLEXHOOK_PRESET", "vxlan")
		t.Setenv("FLEXHOOK_SUBNET", "10.50.1.0/24")
		t.Setenv("FLEXHOOK_PUBLIC_IP", "192.0.2.1")
		t.Setenv("FLEXHOOK_BACKEND_DATA", "82:87:fe:a4:a9:55")
		t.Setenv("FLEXHOOK_PEER", "10.50.2.0/24,192.0.2.2,b2:d1:fc:40:8d:2f 10.50.3.0/24,192.0.2.3,b2:d1:fc:40:8d:30")
		code, out, errOut := cli(t, "dry-run")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2\n")
		assert.Contains(t, out, "+ bridge fdb add b2:d1:fc:40:8d:30 dev flannel-vxlan self dst 192.0.2.3\n")
	})
	t.Run("explicit --peer replaces env peers", func(t *testing.T) {
		t.Chdir(t.TempDir())
		t.Setenv("FLEXHOOK_PEER", "10.50.3.0/24,192.0.2.3,b2:d1:fc:40:8d:30")
		code, out, errOut := cli(t, issue2VxlanArgs...)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "dst 192.0.2.2\n")
		assert.NotContains(t, out, "192.0.2.3")
	})
	t.Run("bad env value is a usage error", func(t *testing.T) {
		t.Setenv("FLEXHOOK_SUBNET_LEASE_RENEW_MARGIN", "soon")
		code, _, errOut := cli(t, "run", "--preset", "vxlan")
		assert.Equal(t, 2, code)
		assert.Contains(t, errOut, `environment FLEXHOOK_SUBNET_LEASE_RENEW_MARGIN="soon": "soon": want minutes or a duration such as 90m`)
		assert.NotContains(t, errOut, "<nil>")
	})
	t.Run("bad env values name the variable, the value and what is expected", func(t *testing.T) {
		for _, tc := range []struct{ env, value, want string }{
			{"FLEXHOOK_HOOK_TIMEOUT", "5x", `environment FLEXHOOK_HOOK_TIMEOUT="5x": want a duration such as 30s or 2m`},
			{"FLEXHOOK_TRACE", "yes please", `environment FLEXHOOK_TRACE="yes please": want true or false`},
			{"FLEXHOOK_MTU", "1450a", `environment FLEXHOOK_MTU="1450a": want an integer`},
		} {
			t.Setenv(tc.env, tc.value)
			code, _, errOut := cli(t, "run", "--preset", "vxlan")
			assert.Equal(t, 2, code, tc.env)
			assert.Contains(t, errOut, tc.want)
			require.NoError(t, os.Unsetenv(tc.env))
		}
	})
	t.Run("secret never printed", func(t *testing.T) {
		t.Setenv("FLEXHOOK_ETCD_PASSWORD", "hunter2-secret")
		code, out, errOut := cli(t, "leases", "-h")
		assert.Equal(t, 0, code)
		assert.NotContains(t, out+errOut, "hunter2-secret")
	})
}

// Every flag's environment variable is FLEXHOOK_ + the flag name in upper
// snake case; the one exception is the --store (file|etcd) of lab and
// lab verify, whose variable is FLEXHOOK_LAB_STORE because FLEXHOOK_STORE
// is run's store directory.
func TestEnvKeysMatchFlagNames(t *testing.T) {
	exceptions := map[string]string{"labFlags --store": "LAB_STORE", "verifyFlags --store": "LAB_STORE"}
	for _, spec := range []any{runFlags{}, checkFlags{}, dryRunFlags{}, leasesFlags{}, presetsFlags{}, statusFlags{}, leaveFlags{}, labFlags{}, verifyFlags{}} {
		flagFields(reflect.TypeOf(spec), func(rt reflect.Type, f reflect.StructField) {
			name := f.Tag.Get("flag")
			require.NotEmpty(t, name, "%s.%s has no flag tag", rt.Name(), f.Name)
			want := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			if e, ok := exceptions[reflect.TypeOf(spec).Name()+" --"+name]; ok {
				want = e
			}
			assert.Equal(t, want, f.Tag.Get("envconfig"), "--%s", name)
			if f.Tag.Get("hidden") != "true" {
				assert.NotEmpty(t, f.Tag.Get("usage"), "--%s", name)
			}
		})
	}
}

func TestMinutesDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"60", time.Hour, true},
		{"5", 5 * time.Minute, true},
		{"90m", 90 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"0", 0, false},
		{"-5", 0, false},
		{"-5m", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		var m minutesDuration
		err := m.Set(tt.in)
		if !tt.ok {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, time.Duration(m), tt.in)
	}
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in, subnet, ip, data string
		ok                   bool
	}{
		{"10.50.2.0/24,192.0.2.2", "10.50.2.0/24", "192.0.2.2", "", true},
		{"10.50.2.0/24,192.0.2.2,aa:bb", "10.50.2.0/24", "192.0.2.2", "aa:bb", true},
		{"10.50.2.0/24,192.0.2.2,a,b=", "10.50.2.0/24", "192.0.2.2", "a,b=", true},
		{"10.50.2.0/24", "", "", "", false},
		{"10.50.2.1/24,192.0.2.2", "", "", "", false},
		{"10.50.2.0/24,fd00::1", "", "", "", false},
		{"fd00::/64,192.0.2.2", "", "", "", false},
	}
	for _, tt := range tests {
		l, err := parsePeer(tt.in)
		if !tt.ok {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.subnet, l.Subnet.String())
		assert.Equal(t, tt.ip, l.Attrs.PublicIP.String())
		assert.Equal(t, tt.data, l.Attrs.BackendData)
		assert.Equal(t, "extension", l.Attrs.BackendType)
	}
}

func TestParseDefaultRoute(t *testing.T) {
	const hdr = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name, table, want string
	}{
		{"one default", hdr +
			"eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
			"eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth0"},
		{"lowest metric wins", hdr +
			"wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth1"},
		{"down route skipped", hdr +
			"eth0\t00000000\t0100A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth2\t00000000\t0100A8C0\t0003\t0\t0\t900\t00000000\t0\t0\t0\n", "eth2"},
		{"none", hdr + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", ""},
	}
	for _, tt := range tests {
		got, err := parseDefaultRoute(strings.NewReader(tt.table))
		if tt.want == "" {
			assert.Error(t, err, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}
}

func TestTTL(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		left time.Duration
		want string
	}{
		{24 * time.Hour, "24h00m"},
		{24*time.Hour - 30*time.Second, "23h59m"},
		{90 * time.Minute, "1h30m"},
		{30 * time.Second, "<1m"},
		{-time.Second, "expired"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ttl(now.Add(tt.left), now), tt.left)
	}
	assert.Equal(t, "-", ttl(time.Time{}, now))
}

func assertDirEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Empty(t, names, "dry-run must not write files")
}

// The defaults are the documented ones and agree with the packages'.
func TestRunDefaults(t *testing.T) {
	var f runFlags
	_, err := newFlagSet("run", &f, runSynopsis, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/flexhook/leases", f.Store)
	assert.Equal(t, "/var/lib/flexhook/state", f.StateDir)
	assert.Equal(t, "/run/flannel/subnet.env", f.SubnetFile)
	assert.Equal(t, leases.DefaultPrefix, f.EtcdPrefix)
	assert.Equal(t, leases.DefaultRenewMargin, time.Duration(f.RenewMargin))
	assert.Equal(t, shell.DefaultTimeout, f.HookTimeout)
	assert.Equal(t, "auto", f.WireguardUserspace)
	assert.Equal(t, slog.LevelInfo, slog.Level(f.LogLevel))
	assert.Empty(t, f.EtcdEndpoints, "the file store is the default")
}

// dry-run's peers go through lease admission as the daemon's do.
func TestDryRunRefusesPeersAsTheDaemonWould(t *testing.T) {
	t.Chdir(t.TempDir())
	code, out, errOut := cli(t, "dry-run", "--preset", "wireguard", "--subnet", "10.50.1.0/24",
		"--public-ip", "192.0.2.1", "--backend-data", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"--peer", "10.50.2.0/24,192.0.2.2,"+peerKey+" allowed-ips 0.0.0.0/0",
		"--peer", "0.0.0.0/0,192.0.2.3,"+peerKey,
		"--peer", "10.50.4.0/24,127.0.0.1,"+peerKey,
		"--peer", "10.50.5.0/24,192.0.2.5,"+peerKey)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "--peer 10.50.2.0-24 refused (backend_data_shape)")
	assert.Contains(t, errOut, "--peer 0.0.0.0-0 refused (outside_network)")
	assert.Contains(t, errOut, "--peer 10.50.4.0-24 refused (bad_public_ip)")
	assert.Contains(t, out, "+ wg set flannel-wg peer "+peerKey+" endpoint 192.0.2.5:51820 allowed-ips 10.50.5.0/24")
	assert.NotContains(t, out, "0.0.0.0/0")
	assert.NotContains(t, out, "127.0.0.1")
}

// A PreStartupCommand that reads system state the simulation lacks does
// not stop dry-run when --backend-data stands in for its output.
func TestDryRunPreStartupReadsAbsentState(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := filepath.Join(t.TempDir(), "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"Network":"10.50.0.0/16","Backend":{"Type":"extension",
		"PreStartupCommand":"ip link add fh-dry0 type vxlan id 1 dstport 8472; read mac < /sys/class/net/fh-dry0/address && echo $mac",
		"SubnetAddCommand":"read VTEP; bridge fdb add \"$VTEP\" dev fh-dry0 dst \"$PUBLIC_IP\"",
		"SubnetRemoveCommand":"read VTEP; bridge fdb del \"$VTEP\" dev fh-dry0"}}`), 0o600))
	code, out, errOut := cli(t, "dry-run", "--config", cfg, "--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1",
		"--backend-data", "82:87:fe:a4:a9:55", "--peer", "10.50.2.0/24,192.0.2.2,b2:d1:fc:40:8d:2f")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, errOut, "PreStartupCommand failed in the simulation")
	assert.Contains(t, out, "+ bridge fdb add b2:d1:fc:40:8d:2f dev fh-dry0 dst 192.0.2.2")

	code, _, errOut = cli(t, "dry-run", "--config", cfg, "--subnet", "10.50.1.0/24", "--public-ip", "192.0.2.1")
	assert.Equal(t, 1, code, "without --backend-data the failure counts: %s", errOut)
}

// Lint errors fail check (exit 2) after naming each place.
func TestCheckLintErrors(t *testing.T) {
	code, out, errOut := cli(t, "check", "--config", filepath.Join("testdata", "bad-builtin.json"))
	assert.Equal(t, 2, code)
	assert.NotContains(t, out, "ok:")
	assert.Contains(t, out, "lint: PostStartupCommand:1:1: error: umask is a builtin")
	assert.Contains(t, out, "lint: SubnetAddCommand:1:12: error: eval of $DATA runs data as code")
	assert.Contains(t, errOut, "2 lint error(s)")
	golden(t, "check-bad-builtin", out)
}
