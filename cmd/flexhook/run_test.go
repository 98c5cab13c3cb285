package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// recorderConfig is a net-conf.json whose hooks record what they are given
// in the file "events" of the node's state dir (the hooks' working
// directory). PreStartup's output becomes the node's BackendData; Add and
// Remove append their stdin (the peer's BackendData) with cat, a real
// command.
const recorderConfig = `{
  "Network": "10.60.0.0/16",
  "Backend": {
    "Type": "extension",
    "PreStartupCommand": "echo data-$PUBLIC_IP",
    "PostStartupCommand": "echo \"post $SUBNET $PUBLIC_IP\" >> events",
    "SubnetAddCommand": "printf 'add %s %s ' \"$SUBNET\" \"$PUBLIC_IP\" >> events; cat >> events",
    "SubnetRemoveCommand": "printf 'remove %s %s ' \"$SUBNET\" \"$PUBLIC_IP\" >> events; cat >> events",
    "ShutdownCommand": "echo \"shutdown $SUBNET\" >> events"
  }
}`

// buildBinary builds flexhook into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flexhook")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type daemon struct {
	cmd      *exec.Cmd
	stateDir string
	stderr   *testutil.SyncBuffer
	done     chan struct{}
	err      error
}

func (d *daemon) events() string {
	b, _ := os.ReadFile(filepath.Join(d.stateDir, "events"))
	return string(b)
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// startDaemon starts `flexhook run` with its own state dir. The process
// is killed at cleanup if the test did not stop it.
func startDaemon(t *testing.T, bin, cfg, store, publicIP string) *daemon {
	t.Helper()
	d := &daemon{stateDir: filepath.Join(t.TempDir(), "state"), stderr: new(testutil.SyncBuffer), done: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "--config", cfg, "--store", store,
		"--state-dir", d.stateDir, "--subnet-file", filepath.Join(d.stateDir, "subnet.env"),
		"--public-ip", publicIP, "--store-resync", "200ms", "--log-level", "debug", "--trace")
	d.cmd.Stderr = d.stderr
	require.NoError(t, d.cmd.Start())
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		if !d.exited() {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("flexhook run --public-ip %s stderr:\n%s", publicIP, d.stderr.String())
		}
	})
	return d
}

var postRe = regexp.MustCompile(`(?m)^post (\S+) (\S+)$`)

// ownSubnet waits for PostStartup and returns the subnet it was given.
func ownSubnet(t *testing.T, d *daemon) string {
	t.Helper()
	var subnet string
	require.Eventually(t, func() bool {
		m := postRe.FindStringSubmatch(d.events())
		if m == nil {
			return false
		}
		subnet = m[1]
		return true
	}, 30*time.Second, 50*time.Millisecond, "PostStartupCommand never ran")
	return subnet
}

// Two real `flexhook run` processes sharing one file store: distinct
// subnets, each runs SubnetAdd for the other, a stopped one runs
// ShutdownCommand, and removing its lease makes the other run
// SubnetRemove with the old BackendData.
func TestTwoDaemonsShareFileStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(recorderConfig), 0o600))
	store := filepath.Join(dir, "leases")

	a := startDaemon(t, bin, cfg, store, "192.0.2.1")
	b := startDaemon(t, bin, cfg, store, "192.0.2.20")
	subA, subB := ownSubnet(t, a), ownSubnet(t, b)
	assert.NotEqual(t, subA, subB, "two nodes got the same subnet")
	assert.Contains(t, a.events(), "post "+subA+" 192.0.2.1\n")
	assert.Contains(t, b.events(), "post "+subB+" 192.0.2.20\n")

	// Each sees the other's Add, with its BackendData on stdin.
	addOfB := "add " + subB + " 192.0.2.20 data-192.0.2.20\n"
	addOfA := "add " + subA + " 192.0.2.1 data-192.0.2.1\n"
	require.Eventually(t, func() bool { return strings.Contains(a.events(), addOfB) },
		30*time.Second, 50*time.Millisecond, "node A never ran SubnetAdd for B")
	require.Eventually(t, func() bool { return strings.Contains(b.events(), addOfA) },
		30*time.Second, 50*time.Millisecond, "node B never ran SubnetAdd for A")

	// flannel's subnet.env for the CNI plugin.
	env, err := os.ReadFile(filepath.Join(a.stateDir, "subnet.env"))
	require.NoError(t, err)
	assert.Contains(t, string(env), "FLANNEL_NETWORK=10.60.0.0/16\n")
	assert.Contains(t, string(env), "FLANNEL_SUBNET="+strings.TrimSuffix(subA, ".0/24")+".1/24\n")

	// SIGTERM A: a stop is a restart, so it exits 0 and leaves its
	// backend and routes as they are (no ShutdownCommand, no Remove).
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("node A did not exit after SIGTERM")
	}
	require.NoError(t, a.err, "node A exit status")
	assert.NotContains(t, a.events(), "shutdown ")

	// A's lease outlives it (a restart takes it back) until an operator
	// removes it; then B runs SubnetRemove with A's old BackendData.
	out, err := exec.Command(bin, "leases", "--store", store).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(subA)+`\s+192\.0\.2\.1\s+data-192\.0\.2\.1\s+2[34]h\d\dm$`, string(out))

	out, err = exec.Command(bin, "leases", "remove", subA, "--store", store).CombinedOutput()
	require.NoError(t, err, "%s", out)
	removeOfA := "remove " + subA + " 192.0.2.1 data-192.0.2.1\n"
	require.Eventually(t, func() bool { return strings.Contains(b.events(), removeOfA) },
		30*time.Second, 50*time.Millisecond, "node B never ran SubnetRemove for A")
	assert.NotContains(t, b.events(), "remove "+subB, "B never removes its own lease")

	// B leaves the cluster: flexhook leave signals it; it runs
	// ShutdownCommand, deletes its lease from the store and exits 0.
	out, err = exec.Command(bin, "leave", "--state-dir", b.stateDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "left: pid ")
	<-b.done
	require.NoError(t, b.err)
	assert.Contains(t, b.events(), "shutdown "+subB+"\n")
	out, err = exec.Command(bin, "leases", "--store", store).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), subB, "B's lease left the store with it")
	assert.False(t, strings.Contains(a.events(), "remove "), "A saw no removal while it ran")
}

// `run --dry-run` against a live store prints the hooks it would run for
// the leases it finds, and writes nothing: no lease, no state, no file.
func TestRunDryRunWritesNothing(t *testing.T) {
	store := t.TempDir()
	subnets := seedStore(t, store, map[string]string{"192.0.2.20": "b2:d1:fc:40:8d:2f"})
	before := snapshotDir(t, store)
	cwd := t.TempDir()
	t.Chdir(cwd)
	stateDir := filepath.Join(t.TempDir(), "state")

	out, _ := runDryRunUntil(t, "+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.20\n",
		"--preset", "vxlan", "--store", store,
		"--state-dir", stateDir, "--subnet-file", filepath.Join(stateDir, "subnet.env"),
		"--public-ip", "192.0.2.1", "--backend-data", "82:87:fe:a4:a9:55")
	assert.Contains(t, out, "+ ip route add "+subnets["192.0.2.20"]+" nexthop via ")
	assert.Contains(t, out, "# ShutdownCommand")
	assert.Equal(t, before, snapshotDir(t, store), "the store changed")
	assert.NoDirExists(t, stateDir)
	assertDirEmpty(t, cwd)
}

// runDryRunUntil runs `flexhook run --dry-run ARGS` in-process until its
// stdout holds want, then cancels it (as SIGTERM would) and checks it
// exits 0. It returns stdout and stderr.
func runDryRunUntil(t *testing.T, want string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.SyncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, append([]string{"run", "--dry-run"}, args...), &out, &errb) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), want) },
		30*time.Second, 20*time.Millisecond, "stdout:\n%s\nstderr:\n%s", &out, &errb)
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run --dry-run did not stop when its context was cancelled")
	}
	return out.String(), errb.String()
}

// snapshotDir maps every file under dir to its content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	}))
	return m
}

// A running daemon takes an edited --config for its next hooks, refuses
// an invalid file and a change of Network (keeping the running config),
// and reloads on SIGHUP too.
func TestRunReloadsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "net-conf.json")
	require.NoError(t, os.WriteFile(cfg, []byte(recorderConfig), 0o600))
	store := filepath.Join(dir, "leases")
	d := startDaemon(t, bin, cfg, store, "192.0.2.1")
	ownSubnet(t, d)
	// Peers come as leases other nodes write.
	peer := func(ip string) string {
		return seedStoreRange(t, store, "10.60.0.0/16", map[string]string{ip: "d-" + ip})[ip]
	}
	waitEvents := func(want string) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Contains(d.events(), want) },
			30*time.Second, 50*time.Millisecond, "no %q in events:\n%s", want, d.events())
	}
	s2 := peer("192.0.2.20")
	waitEvents("add " + s2 + " 192.0.2.20 d-192.0.2.20\n")

	// Adds a peer at a time until one is added with the given verb; the
	// ones before may still see the old config (fsnotify and the loop
	// take a moment).
	next := 10
	addUntil := func(verb string) {
		t.Helper()
		for range 50 {
			next++
			ip := "192.0.2." + strconv.Itoa(next)
			s := peer(ip)
			var ev string
			require.Eventually(t, func() bool {
				ev = d.events()
				return strings.Contains(ev, " "+s+" "+ip+" ")
			}, 30*time.Second, 20*time.Millisecond, "no hook ran for %s", s)
			if strings.Contains(ev, verb+" "+s+" "+ip+" ") {
				return
			}
		}
		t.Fatalf("no Add with %q ran:\n%s", verb, d.events())
	}

	// An edit: the later Adds run the new command (written by a rename,
	// as editors do).
	edited := strings.Replace(recorderConfig, `printf 'add %s %s '`, `printf 'ADD2 %s %s '`, 1)
	tmp := cfg + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(edited), 0o600))
	require.NoError(t, os.Rename(tmp, cfg))
	addUntil("ADD2")

	// An invalid file and a new Network are refused, each on its own (the
	// second write waits for the first refusal, so the two cannot merge
	// into one reload); the edit stays in force.
	refusals := func() int { return strings.Count(d.stderr.String(), `msg="config reload refused`) }
	r0 := refusals()
	require.NoError(t, os.WriteFile(cfg, []byte(`{"Network": `), 0o600))
	require.Eventually(t, func() bool { return refusals() == r0+1 }, 30*time.Second, 20*time.Millisecond, "the invalid file is refused")
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(edited, "10.60.0.0/16", "10.61.0.0/16", 1)), 0o600))
	require.Eventually(t, func() bool { return refusals() == r0+2 }, 30*time.Second, 20*time.Millisecond, "the new Network is refused")
	s3 := peer("192.0.2.3")
	waitEvents("ADD2 " + s3 + " 192.0.2.3 d-192.0.2.3\n")

	// SIGHUP reloads too: back to the first version, written through a
	// hard link in another directory, which the watch (on the config's
	// directory) does not see, so only the signal can load it.
	alias := filepath.Join(t.TempDir(), "alias.json")
	require.NoError(t, os.Link(cfg, alias))
	require.NoError(t, os.WriteFile(alias, []byte(recorderConfig), 0o600))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	addUntil("add")

	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	<-d.done
	require.NoError(t, d.err)
	logs := d.stderr.String()
	assert.Contains(t, logs, `msg="config reload accepted" why="config file changed" changed_hooks=SubnetAddCommand`)
	assert.Contains(t, logs, `msg="config reload refused; the running config is kept"`)
	assert.Contains(t, logs, "a restart is needed")
	assert.Contains(t, logs, `msg="config reload accepted" why=SIGHUP changed_hooks=SubnetAddCommand`)
	assert.Equal(t, 2, strings.Count(logs, `msg="config reload refused`), "two refusals, no more:\n%s", logs)
	assert.Equal(t, 1, strings.Count(logs, `msg="config reload accepted" why="config file changed"`),
		"the watch saw the edit, not the write through the link:\n%s", logs)
}

// SIGHUP while the store is still unreachable neither kills the daemon
// (SIGHUP's default action; it exited 129, logging nothing) nor is lost:
// it waits for the engine. SIGTERM in that phase exits cleanly.
func TestSignalsBeforeTheStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	var stderr testutil.SyncBuffer
	cmd := exec.Command(bin, "run", "--preset", "host-gw", "--etcd-endpoints", "http://127.0.0.1:1",
		"--state-dir", t.TempDir(), "--public-ip", "192.0.2.1", "--subnet-file", filepath.Join(t.TempDir(), "subnet.env"))
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	retries := func() int { return strings.Count(stderr.String(), "etcd not reachable; retrying") }
	require.Eventually(t, func() bool { return retries() >= 1 }, 30*time.Second, 10*time.Millisecond, stderr.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	n := retries()
	// The daemon is alive after the signal: it goes on retrying.
	require.Eventually(t, func() bool { return retries() > n }, 30*time.Second, 10*time.Millisecond, stderr.String())
	select {
	case err := <-done:
		t.Fatalf("SIGHUP ended the daemon: %v\n%s", err, stderr.String())
	default:
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, "SIGTERM before the store answers exits 0:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("SIGTERM did not stop the daemon")
	}
	assert.Contains(t, stderr.String(), "stopped before the store was reachable")
}
