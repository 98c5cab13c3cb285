package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
	"github.com/flexhook/flexhook/presets"
)

const subnetsPrefix = leases.DefaultPrefix + "/subnets/"

// etcdCtx is a context for a test's own etcd calls.
func etcdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// putFlanneldLease writes a lease the way flanneld does: its JSON value
// under <prefix>/subnets/<key>, attached to a fresh 24h etcd lease.
func putFlanneldLease(t *testing.T, c *clientv3.Client, key, value string) {
	t.Helper()
	ctx := etcdCtx(t)
	g, err := c.Grant(ctx, 86400)
	require.NoError(t, err)
	_, err = c.Put(ctx, subnetsPrefix+key, value, clientv3.WithLease(g.ID))
	require.NoError(t, err)
}

// seedEtcd acquires one lease per public IP through the real etcd store.
func seedEtcd(t *testing.T, endpoints []string, nodes map[string]string) map[string]string {
	t.Helper()
	ctx := etcdCtx(t)
	st, err := etcd.New(ctx, etcd.Config{Endpoints: endpoints}, etcd.Logger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer st.Close()
	r := leases.Range{
		Network:   netip.MustParsePrefix("10.50.0.0/16"),
		SubnetLen: 24,
		SubnetMin: netip.MustParseAddr("10.50.1.0"),
		SubnetMax: netip.MustParseAddr("10.50.60.0"),
	}
	return acquireAll(t, ctx, st, r, nodes)
}

// etcdRevision is the store's current revision: it moves on every write.
func etcdRevision(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(etcdCtx(t), "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	require.NoError(t, err)
	return resp.Header.Revision
}

var leaseRow = func(subnet, ip, data string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(subnet) + `\s+` + regexp.QuoteMeta(ip) + `\s+` +
		regexp.QuoteMeta(data) + `\s+(23h5\dm|24h00m)$`)
}

// `leases` against a real etcd lists leases written by flexhook's etcd
// store and by flanneld (a raw Put), with their remaining TTL, and
// `leases remove` deletes one.
func TestLeasesEtcdListAndRemove(t *testing.T) {
	srv := etcdtest.Start(t)
	ep := srv.Endpoints[0]
	subnets := seedEtcd(t, srv.Endpoints, map[string]string{
		"192.0.2.1": "82:87:fe:a4:a9:55",
		"192.0.2.3": "",
	})
	c := srv.Client(t)
	putFlanneldLease(t, c, "10.50.77.0-24",
		`{"PublicIP":"192.0.2.20","PublicIPv6":null,"BackendType":"extension","BackendData":"b2:d1:fc:40:8d:2f"}`)

	code, out, errOut := cli(t, "leases", "list", "--etcd-endpoints", ep)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^SUBNET\s+PUBLIC IP\s+BACKEND DATA\s+TTL$`, lines[0])
	assert.Regexp(t, leaseRow(subnets["192.0.2.1"], "192.0.2.1", "82:87:fe:a4:a9:55"), out)
	assert.Regexp(t, leaseRow(subnets["192.0.2.3"], "192.0.2.3", "-"), out)
	assert.Regexp(t, leaseRow("10.50.77.0/24", "192.0.2.20", "b2:d1:fc:40:8d:2f"), out, "the flanneld-written lease")

	// The endpoints from the environment, another prefix: nothing there.
	t.Setenv("FLEXHOOK_ETCD_ENDPOINTS", ep)
	code, out2, errOut := cli(t, "leases", "--etcd-prefix", "/other/network")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^SUBNET\s+PUBLIC IP\s+BACKEND DATA\s+TTL\n$`, out2)

	code, out, errOut = cli(t, "leases", "remove", "10.50.77.0/24")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "removed 10.50.77.0/24\n", out)
	resp, err := c.Get(etcdCtx(t), subnetsPrefix+"10.50.77.0-24")
	require.NoError(t, err)
	assert.Zero(t, resp.Count, "the key is still in etcd")
	resp, err = c.Get(etcdCtx(t), subnetsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	assert.EqualValues(t, 2, resp.Count, "the other leases stay")

	code, out, errOut = cli(t, "leases", "remove", "10.50.77.0/24")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "flexhook: remove 10.50.77.0/24: no such lease\n", errOut)
}

// `leases` is run by hand: an unreachable etcd fails at once (exit 1,
// the endpoint and the cause named) instead of being retried, and flags
// that can never work are usage errors before anything is dialled.
func TestLeasesEtcdFailsFast(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	code, out, errOut := cli(t, "leases", "--etcd-endpoints", srv.Endpoints[0])
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "flexhook: etcd: connect to "+srv.Endpoints[0])
	assert.Contains(t, errOut, "connection refused")
	assert.NotContains(t, errOut, "retrying")

	cert := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, os.WriteFile(cert, []byte("x"), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"user without password", []string{"--etcd-username", "u"}, "--etcd-username and --etcd-password"},
		{"cert without key", []string{"--etcd-certfile", cert}, "--etcd-certfile and --etcd-keyfile"},
		{"missing CA", []string{"--etcd-cafile", cert + ".absent"}, "--etcd-cafile: open "},
		{"TLS over http", []string{"--etcd-cafile", cert}, `"http://127.0.0.1:1" is plain http`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"leases", "--etcd-endpoints", "http://127.0.0.1:1"}, tc.args...)
			code, _, errOut := cli(t, args...)
			assert.Equal(t, 2, code, errOut)
			assert.Contains(t, errOut, tc.want)
		})
	}
}

// `run --dry-run` without --config or --preset reads the config from
// <prefix>/config in etcd, prints the hooks it would run for the leases
// it finds there, and writes nothing: etcd's revision does not move.
func TestRunDryRunEtcdConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	conf, err := presets.Get("vxlan")
	require.NoError(t, err)
	_, err = c.Put(etcdCtx(t), leases.DefaultPrefix+"/config", string(conf))
	require.NoError(t, err)
	putFlanneldLease(t, c, "10.50.9.0-24",
		`{"PublicIP":"192.0.2.20","PublicIPv6":null,"BackendType":"extension","BackendData":"b2:d1:fc:40:8d:2f"}`)
	rev := etcdRevision(t, c)
	cwd := t.TempDir()
	t.Chdir(cwd)
	stateDir := filepath.Join(t.TempDir(), "state")

	out, errOut := runDryRunUntil(t, "+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.20\n",
		"--etcd-endpoints", srv.Endpoints[0],
		"--state-dir", stateDir, "--subnet-file", filepath.Join(stateDir, "subnet.env"),
		"--public-ip", "192.0.2.1", "--backend-data", "82:87:fe:a4:a9:55")
	assert.Contains(t, out, "+ ip route add 10.50.9.0/24 nexthop via 10.50.9.0 dev flannel-vxlan onlink\n")
	assert.Contains(t, errOut, "config="+leases.DefaultPrefix+"/config", "the config came from etcd")
	assert.Equal(t, rev, etcdRevision(t, c), "dry-run wrote to etcd")
	assert.NoDirExists(t, stateDir)
	assertDirEmpty(t, cwd)
}

// Without --config, --preset or <prefix>/config, run is a usage error
// that names the key it looked for.
func TestRunEtcdWithoutConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	code, _, errOut := cli(t, "run", "--etcd-endpoints", srv.Endpoints[0], "--etcd-prefix", "/my/net/",
		"--state-dir", stateDir, "--subnet-file", filepath.Join(stateDir, "subnet.env"), "--public-ip", "192.0.2.1")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "the store has no config (/my/net/config)")
}

// runSecret is the etcd password of the daemon test: it must never show.
const runSecret = "s3cret-etcd-pw"

// authEtcd enables etcd authentication with a root user and a user
// "flexhook" (password runSecret) that may use the flannel prefix, and
// returns a client logged in as root.
func authEtcd(t *testing.T, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	c := srv.Client(t)
	ctx := etcdCtx(t)
	for _, step := range []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "flannel"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "flannel", leases.DefaultPrefix,
				clientv3.GetPrefixRangeEnd(leases.DefaultPrefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, "flexhook", runSecret); return err },
		func() error { _, err := c.UserGrantRole(ctx, "flexhook", "flannel"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		require.NoError(t, step())
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: srv.DirectEndpoints, DialTimeout: 5 * time.Second,
		Username: "root", Password: "rootpw", Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = root.Close() })
	return root
}

// A real `flexhook run` process whose etcd is down when it starts (a node
// booting before etcd) keeps retrying, logging why, and once etcd is back
// reads the config from <prefix>/config, writes its lease with flanneld's
// exact value bytes on a 24h etcd lease, runs hooks for leases flanneld
// writes and deletes, and exits 0 on SIGTERM. The etcd password, given in
// the environment, never appears in its output.
func TestRunDaemonEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	srv := etcdtest.Start(t)
	root := authEtcd(t, srv)
	_, err := root.Put(etcdCtx(t), leases.DefaultPrefix+"/config", recorderConfig)
	require.NoError(t, err)
	srv.Stop()

	stateDir := filepath.Join(t.TempDir(), "state")
	var stdout, stderr testutil.SyncBuffer
	cmd := exec.Command(bin, "run", "--etcd-endpoints", srv.Endpoints[0], "--etcd-username", "flexhook",
		"--state-dir", stateDir, "--subnet-file", filepath.Join(stateDir, "subnet.env"),
		"--public-ip", "192.0.2.7", "--log-level", "debug", "--trace")
	cmd.Env = append(os.Environ(), "FLEXHOOK_ETCD_PASSWORD="+runSecret)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("flexhook run stderr:\n%s", &stderr)
		}
	})
	events := func() string {
		b, _ := os.ReadFile(filepath.Join(stateDir, "events"))
		return string(b)
	}

	// etcd is down: the daemon says so, with the cause, and waits.
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`etcd not reachable; retrying.*connection refused.*attempt=1`).MatchString(stderr.String())
	}, 30*time.Second, 50*time.Millisecond, "no retry logged")
	select {
	case <-done:
		t.Fatalf("run exited while etcd was down: %v", waitErr)
	default:
	}
	srv.Restart()

	var subnet string
	require.Eventually(t, func() bool {
		m := postRe.FindStringSubmatch(events())
		if m != nil {
			subnet = m[1]
		}
		return m != nil
	}, 60*time.Second, 50*time.Millisecond, "PostStartupCommand never ran")
	assert.Contains(t, stderr.String(), "etcd reachable")
	assert.Contains(t, stderr.String(), "config="+leases.DefaultPrefix+"/config")
	sub := netip.MustParsePrefix(subnet)
	assert.True(t, netip.MustParsePrefix("10.60.0.0/16").Overlaps(sub), subnet)

	// The lease is flanneld's, byte for byte, on a 24h etcd lease.
	ctx := etcdCtx(t)
	resp, err := root.Get(ctx, subnetsPrefix+leases.SubnetKey(sub, netip.Prefix{}))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Equal(t, `{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"extension","BackendData":"data-192.0.2.7"}`,
		string(resp.Kvs[0].Value))
	ttl, err := root.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)
	assert.EqualValues(t, 86400, ttl.GrantedTTL)
	assert.Greater(t, ttl.TTL, int64(86400-300))

	// flanneld's nodes come and go.
	peer := "10.60.99.0/24"
	putFlanneldLease(t, root, "10.60.99.0-24",
		`{"PublicIP":"192.0.2.8","PublicIPv6":null,"BackendType":"extension","BackendData":"peer-data"}`)
	require.Eventually(t, func() bool { return strings.Contains(events(), "add "+peer+" 192.0.2.8 peer-data\n") },
		30*time.Second, 50*time.Millisecond, "no SubnetAdd for the flanneld lease")
	_, err = root.Delete(ctx, subnetsPrefix+"10.60.99.0-24")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(events(), "remove "+peer+" 192.0.2.8 peer-data\n") },
		30*time.Second, 50*time.Millisecond, "no SubnetRemove for the deleted flanneld lease")

	// The operator's view, with the password from the environment too.
	var lout, lerr strings.Builder
	t.Setenv("FLEXHOOK_ETCD_PASSWORD", runSecret)
	code := run(ctx, []string{"leases", "--etcd-endpoints", srv.Endpoints[0], "--etcd-username", "flexhook",
		"--log-level", "debug"}, &lout, &lerr)
	require.Equal(t, 0, code, lerr.String())
	assert.Regexp(t, leaseRow(subnet, "192.0.2.7", "data-192.0.2.7"), lout.String())
	assert.NotContains(t, lout.String()+lerr.String(), runSecret)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not exit after SIGTERM")
	}
	require.NoError(t, waitErr, "exit status")
	assert.NotContains(t, events(), "shutdown ", "a stop is a restart: the backend stays")
	assert.NotContains(t, stdout.String()+stderr.String(), runSecret, "the etcd password leaked")
}

// A daemon stopped while etcd is still unreachable exits 0 at once.
func TestRunEtcdStoppedBeforeReachable(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	stateDir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.SyncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"run", "--preset", "vxlan", "--etcd-endpoints", srv.Endpoints[0],
			"--state-dir", stateDir, "--subnet-file", filepath.Join(stateDir, "subnet.env"),
			"--public-ip", "192.0.2.1"}, &out, &errb)
	}()
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "etcd not reachable; retrying") },
		30*time.Second, 20*time.Millisecond, "no retry logged")
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop while retrying")
	}
	assert.Contains(t, errb.String(), "stopped before the store was reachable")
	assert.NoFileExists(t, filepath.Join(stateDir, "subnet.env"))
}
