//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
)

// bootPath is the PATH commands run with inside the booted system.
const bootPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// TestSystemdBoot proves the .deb on a Debian machine whose PID 1 is
// systemd (this host's is not: a Debian trixie root filesystem made by
// mmdebstrap, booted by systemd-nspawn in a network namespace and a
// cgroup v2 of its own): dpkg installs the package, and `systemctl enable
// --now flexhook` returns once flexhook said READY=1, with the node
// configured either way the README says: a preset in /etc/flexhook/env or
// /etc/flexhook/net-conf.json. Running under the unit's hardening, the
// daemon holds only CAP_NET_ADMIN and CAP_NET_RAW, sees the file system
// read-only but for its state and runtime dirs, and its hooks still change
// the routes (a remote lease written before the start is routed when the
// start returns); `systemctl stop` leaves it inactive, the route in place
// and `flexhook status` exiting 3. A broken config fails the start once,
// with no restart loop (RestartPreventExitStatus=2).
//
// Cost: the root filesystem is cached by `make systemd-rootfs` (about 2
// minutes and 90 MB cold); then the boot and the checks take about 15 s.
func TestSystemdBoot(t *testing.T) {
	bin := requireBoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	rootfs := systemdRootfs(ctx, t)
	deb := buildDeb(ctx, t, bin)
	sys := bootSystemd(ctx, t, rootfs, deb)

	out, code := sys.run(ctx, t, "dpkg", "-i", "/root/flexhook.deb")
	require.Equal(t, 0, code, "dpkg -i: %s", out)
	out, code = sys.run(ctx, t, "dpkg-query", "-W", "-f=${Status}", "flexhook")
	require.Equal(t, 0, code, "%s", out)
	require.Equal(t, "install ok installed", out)
	shippedEnv, err := os.ReadFile(sys.path("/etc/flexhook/env"))
	require.NoError(t, err)

	// The machine's network: a default route on eth0, whose address is
	// the node's public IP; the remote nodes' addresses are on its link.
	for _, args := range [][]string{
		{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		{"ip", "addr", "add", "192.0.2.10/24", "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "eth1", "up"},
		{"ip", "route", "add", "default", "via", "192.0.2.1"},
	} {
		out, code := sys.run(ctx, t, args...)
		require.Equal(t, 0, code, "%v: %s", args, out)
	}
	store := sys.path("/var/lib/flexhook/leases/subnets")
	require.NoError(t, os.MkdirAll(store, 0o700))

	t.Run("preset in /etc/flexhook/env", func(t *testing.T) {
		sys.reset(ctx, t)
		// The README: "FLEXHOOK_PRESET=vxlan-prod in /etc/flexhook/env".
		require.NoError(t, os.WriteFile(sys.path("/etc/flexhook/env"), []byte("FLEXHOOK_PRESET=host-gw\n"), 0o600))
		bootLease(t, store, "10.50.9.0/24", "192.0.2.20")
		out, code := sys.run(ctx, t, "systemctl", "enable", "--now", "flexhook")
		require.Equal(t, 0, code, "systemctl enable --now flexhook: %s", out)
		out, _ = sys.run(ctx, t, "systemctl", "is-enabled", "flexhook")
		assert.Equal(t, "enabled", out)
		sys.checkServing(ctx, t, "10.50.9.0/24 via 192.0.2.20")
		sys.checkStops(ctx, t, "10.50.9.0/24 via 192.0.2.20")
	})

	t.Run("config in /etc/flexhook/net-conf.json", func(t *testing.T) {
		sys.reset(ctx, t)
		require.NoError(t, os.WriteFile(sys.path("/etc/flexhook/env"), shippedEnv, 0o600))
		conf, code := sys.run(ctx, t, "flexhook", "presets", "host-gw")
		require.Equal(t, 0, code, "%s", conf)
		require.NoError(t, os.WriteFile(sys.path("/etc/flexhook/net-conf.json"), []byte(conf+"\n"), 0o644))
		bootLease(t, store, "10.50.10.0/24", "192.0.2.21")
		out, code := sys.run(ctx, t, "systemctl", "start", "flexhook")
		require.Equal(t, 0, code, "systemctl start flexhook: %s", out)
		sys.checkServing(ctx, t, "10.50.10.0/24 via 192.0.2.21")
		sys.checkStops(ctx, t, "10.50.10.0/24 via 192.0.2.21")
	})

	t.Run("a broken config fails once", func(t *testing.T) {
		sys.reset(ctx, t)
		require.NoError(t, os.WriteFile(sys.path("/etc/flexhook/env"), shippedEnv, 0o600))
		require.NoError(t, os.WriteFile(sys.path("/etc/flexhook/net-conf.json"),
			[]byte(`{"Network": "10.50.0.0/16", "Backend": {"Type": "vxlan"}}`+"\n"), 0o644))
		out, code := sys.run(ctx, t, "systemctl", "start", "flexhook")
		require.NotEqual(t, 0, code, "systemctl start with a broken config: %s", out)
		// Exit 2 is a bad config: failed at once, no restart scheduled.
		got := sys.show(ctx, t, "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
		assert.Equal(t, map[string]string{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
			"ExecMainStatus": "2", "NRestarts": "0"}, got)
		assert.Contains(t, sys.journal(ctx, t), `Backend.Type: "vxlan" is not supported`)
	})
}

// requireBoot checks root, the flexhook binary and the tools the test
// runs on the host, and returns the binary.
func requireBoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root: mmdebstrap, systemd-nspawn, cgroups (run `sudo make integration`)")
	}
	if setupErr != nil {
		t.Fatalf("no flexhook binary: %v", setupErr)
	}
	for _, tool := range []string{"make", "mmdebstrap", "systemd-nspawn", "nsenter", "tar", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "needs %s (make deps installs it: Debian mmdebstrap, systemd-container, util-linux, tar)", tool)
		}
	}
	return flexhookBin
}

// systemdRootfs makes (or takes from the cache) the root filesystem tar
// with `make systemd-rootfs`, and returns its path.
func systemdRootfs(ctx context.Context, t *testing.T) string {
	t.Helper()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "make", "-C", "..", "--no-print-directory", "systemd-rootfs").CombinedOutput()
	t.Logf("make systemd-rootfs (%s):\n%s", time.Since(start).Round(time.Second), testutil.Tail(string(out), 5))
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	path, ok := strings.CutPrefix(lines[len(lines)-1], "systemd rootfs: ")
	require.True(t, ok, "make systemd-rootfs names the tar on its last line")
	return path
}

// buildDeb builds the .deb as `make dist` does (tools/mkdeb, the unit in
// contrib/) around the binary under test.
func buildDeb(ctx context.Context, t *testing.T, bin string) string {
	t.Helper()
	deb := filepath.Join(t.TempDir(), "flexhook.deb")
	out, err := exec.CommandContext(ctx, "go", "run", "../tools/mkdeb", "-arch", runtime.GOARCH, "-version", "v0.0.0-boottest",
		"-bin", bin, "-unit", "../contrib/flexhook.service", "-out", deb).CombinedOutput()
	require.NoError(t, err, "mkdeb: %s", out)
	return deb
}

// bootedSystem is a Debian system booted by systemd-nspawn, systemd its
// PID 1.
type bootedSystem struct {
	root   string // its root directory, as this host sees it
	leader int    // its PID 1, as this host sees it
	cursor string // the journal's cursor at the last reset
}

// path is the host's path of the booted system's file name.
func (s *bootedSystem) path(name string) string { return filepath.Join(s.root, name) }

// bootSystemd unpacks the root filesystem, puts the .deb in /root, boots
// it with systemd-nspawn in a cgroup and a network namespace of its own,
// and waits until systemd says the boot is done. Cleanups power it off
// (SIGTERM to systemd-nspawn: systemd halts), kill what is left in its
// cgroup, remove the cgroup and check that nothing stays mounted.
func bootSystemd(ctx context.Context, t *testing.T, rootfs, deb string) *bootedSystem {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	t.Cleanup(func() { assert.Empty(t, mountsUnder(t, root), "mounts left in the booted root") })
	require.NoError(t, os.Mkdir(root, 0o755))
	out, err := exec.CommandContext(ctx, "tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-C", root, "-f", rootfs).CombinedOutput()
	require.NoError(t, err, "tar: %s", out)
	raw, err := os.ReadFile(deb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "root/flexhook.deb"), raw, 0o644))

	name := fmt.Sprintf("flexhook-boot-%d", os.Getpid())
	cg := bootCgroup(t, name)
	var console testutil.SyncBuffer
	cmd := exec.Command("systemd-nspawn", "--boot", "--directory="+root, "--machine="+name,
		// No systemd on this host to register with or make a scope in:
		// the container stays in the cgroup it is started in.
		"--register=no", "--keep-unit", "--private-network", "--link-journal=no", "--settings=no",
		"--console=read-only")
	// A fresh Debian machine has the unified hierarchy only; this host
	// may be hybrid.
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	cmd.Stdout, cmd.Stderr = &console, &console
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("console:\n%s", testutil.Tail(console.String(), 60))
			}
		}()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("stop systemd-nspawn: %v", err)
		}
		select {
		case err := <-exited:
			assert.NoError(t, err, "systemd-nspawn halts the system and exits 0")
		case <-time.After(2 * time.Minute):
			t.Errorf("systemd-nspawn still runs 2 minutes after SIGTERM; killing its cgroup")
			_ = os.WriteFile(filepath.Join(cg.Name(), "cgroup.kill"), []byte("1"), 0)
			<-exited
		}
	})

	sys := &bootedSystem{root: root}
	deadline := time.Now().Add(2 * time.Minute)
	for sys.leader == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn started no systemd:\n%s", console.String())
		}
		sys.leader = nspawnLeader(cmd.Process.Pid)
		time.Sleep(100 * time.Millisecond)
	}
	for {
		out, _ := sys.run(ctx, t, "systemctl", "is-system-running", "--wait")
		if out == "running" || out == "degraded" {
			if out == "degraded" {
				failed, _ := sys.run(ctx, t, "systemctl", "--failed", "--no-legend")
				t.Logf("the booted system is degraded (not flexhook's doing):\n%s", failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not finish booting (is-system-running: %s):\n%s", out, console.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return sys
}

// nspawnLeader is the container's PID 1 (systemd, exec'ed by a child of
// systemd-nspawn), or 0 while there is none.
func nspawnLeader(nspawn int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
			return pid
		}
	}
	return 0
}

// run runs a command inside the booted system (every namespace of its
// PID 1, so its root, its systemd and its network), and returns its
// output, trimmed, and its exit code.
func (s *bootedSystem) run(ctx context.Context, t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(s.leader), "--all", "--"}, args...)...)
	cmd.Env = []string{bootPath, "LC_ALL=C", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat", "TERM=dumb"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return strings.TrimSpace(string(out)), exit.ExitCode()
	}
	require.NoError(t, err, "%v: %s", args, out)
	return strings.TrimSpace(string(out)), 0
}

// show is systemctl show's properties of flexhook.service.
func (s *bootedSystem) show(ctx context.Context, t *testing.T, props ...string) map[string]string {
	t.Helper()
	out, code := s.run(ctx, t, "systemctl", "show", "flexhook", "--property="+strings.Join(props, ","))
	require.Equal(t, 0, code, "%s", out)
	got := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			got[k] = v
		}
	}
	return got
}

// journal is flexhook.service's journal since the last reset.
func (s *bootedSystem) journal(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, _ := s.run(ctx, t, "journalctl", "--unit=flexhook", "--after-cursor="+s.cursor, "--no-pager", "--output=cat")
	return out
}

// reset stops flexhook and forgets an earlier failure, so each subtest
// starts from an inactive unit.
func (s *bootedSystem) reset(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, args := range [][]string{{"systemctl", "stop", "flexhook"}, {"systemctl", "reset-failed", "flexhook"}} {
		s.run(ctx, t, args...)
	}
	out, code := s.run(ctx, t, "journalctl", "--lines=1", "--show-cursor", "--quiet", "--output=cat")
	require.Equal(t, 0, code, "%s", out)
	_, s.cursor, _ = strings.Cut(out, "-- cursor: ")
	require.NotEmpty(t, s.cursor, "the journal's cursor: %s", out)
	if err := os.Remove(s.path("/etc/flexhook/net-conf.json")); !errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of flexhook.service:\n%s", s.journal(ctx, t))
		}
	})
}

// checkServing checks a started flexhook.service: active and running
// because flexhook said READY=1 (Type=notify), status exit 0, the
// hardening in force, and the route of the remote lease in place (READY
// means the store's leases are applied).
func (s *bootedSystem) checkServing(ctx context.Context, t *testing.T, route string) {
	t.Helper()
	got := s.show(ctx, t, "ActiveState", "SubState", "StatusText", "NRestarts", "MainPID")
	pid := got["MainPID"]
	delete(got, "MainPID")
	assert.Equal(t, map[string]string{"ActiveState": "active", "SubState": "running", "StatusText": "ready", "NRestarts": "0"}, got)
	require.NotEqual(t, "0", pid, "a main process")

	out, code := s.run(ctx, t, "flexhook", "status")
	assert.Equal(t, 0, code, "flexhook status: %s", out)
	assert.Contains(t, out, "running, pid "+pid)
	out, code = s.run(ctx, t, "cat", "/run/flannel/subnet.env")
	assert.Equal(t, 0, code, "%s", out)
	assert.Contains(t, out, "FLANNEL_SUBNET=10.50.")

	// The daemon's privileges: CAP_NET_ADMIN (12) and CAP_NET_RAW (13)
	// only, and no way to gain more.
	out, code = s.run(ctx, t, "cat", "/proc/"+pid+"/status")
	require.Equal(t, 0, code, "%s", out)
	assert.Contains(t, out, "\nCapBnd:\t0000000000003000\n")
	assert.Contains(t, out, "\nNoNewPrivs:\t1\n")
	// Its file system: read-only (ProtectSystem=strict) but for the
	// state dir and the runtime dirs.
	out, code = s.run(ctx, t, "cat", "/proc/"+pid+"/mountinfo")
	require.Equal(t, 0, code, "%s", out)
	for path, want := range map[string]string{"/usr/bin": "ro", "/etc/flexhook": "ro", "/var/lib": "ro",
		"/var/lib/flexhook/state": "rw", "/var/lib/flexhook/leases": "rw", "/run/flannel": "rw"} {
		assert.Equal(t, want, mountMode(out, path), "%s as flexhook.service sees it", path)
	}

	out, code = s.run(ctx, t, "ip", "-4", "route", "show")
	assert.Equal(t, 0, code, "%s", out)
	assert.Contains(t, out, route+" dev eth0", "SubnetAddCommand ran under the unit's hardening before READY")
}

// checkStops stops flexhook.service and checks it is inactive, status
// exits 3 (no daemon), and the route stays (a stop is a restart).
func (s *bootedSystem) checkStops(ctx context.Context, t *testing.T, route string) {
	t.Helper()
	out, code := s.run(ctx, t, "systemctl", "stop", "flexhook")
	require.Equal(t, 0, code, "systemctl stop flexhook: %s", out)
	got := s.show(ctx, t, "ActiveState", "SubState", "Result", "MainPID")
	assert.Equal(t, map[string]string{"ActiveState": "inactive", "SubState": "dead", "Result": "success", "MainPID": "0"}, got)
	out, code = s.run(ctx, t, "flexhook", "status")
	assert.Equal(t, 3, code, "flexhook status with no daemon: %s", out)
	out, _ = s.run(ctx, t, "ip", "-4", "route", "show")
	assert.Contains(t, out, route+" dev eth0", "the data path stays across a stop")
}

// mountMode is "ro" or "rw": the mount that holds path in a mountinfo
// (the last one listed whose mount point is path or above it).
func mountMode(mountinfo, path string) string {
	mode, best := "", -1
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		mp := f[4]
		if (path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")) && len(mp) >= best {
			best = len(mp)
			mode, _, _ = strings.Cut(f[5], ",")
		}
	}
	return mode
}

// bootLease writes a remote node's host-gw lease into the file store, as
// that node would: an hour to live (the file's mtime).
func bootLease(t *testing.T, dir, subnet, ip string) {
	t.Helper()
	b, err := leases.MarshalAttrs(leases.Attrs{PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType})
	require.NoError(t, err)
	tmp := filepath.Join(dir, ".tmp-lease")
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(tmp, exp, exp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, leases.SubnetKey(netip.MustParsePrefix(subnet), netip.Prefix{}))))
}

// bootCgroup makes the cgroup (v2) the booted system runs in, below this
// process's own, and returns it open (for clone3's CLONE_INTO_CGROUP).
// Its cleanup kills what is still in it and removes it, and the copy of
// its tree that systemd-nspawn keeps in a hybrid host's name=systemd
// hierarchy.
func bootCgroup(t *testing.T, name string) *os.File {
	t.Helper()
	var mnt string
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			mnt = m
			break
		}
	}
	if mnt == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified) to boot systemd in")
	}
	dir := filepath.Join(mnt, ownCgroup(t, ""), name)
	require.NoError(t, os.Mkdir(dir, 0o755))
	dirs := []string{dir}
	const named = "/sys/fs/cgroup/systemd"
	var st unix.Statfs_t
	if unix.Statfs(named, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC {
		dirs = append(dirs, filepath.Join(named, ownCgroup(t, "name=systemd"), name))
	}
	f, err := os.Open(dir)
	require.NoError(t, err)
	t.Cleanup(func() {
		f.Close()
		if populated(dir) {
			t.Errorf("processes left in %s; killing them", dir)
			assert.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0))
			deadline := time.Now().Add(30 * time.Second)
			for populated(dir) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
		}
		for _, d := range dirs {
			assert.NoError(t, removeCgroup(d))
		}
		// systemd-nspawn's mount propagation dir, which it may fail to remove.
		if err := os.Remove(filepath.Join("/run/systemd/nspawn/propagate", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("remove nspawn's propagate dir: %v", err)
		}
	})
	return f
}

// ownCgroup is this process's cgroup in the hierarchy with these
// controllers ("" for v2, "name=systemd").
func ownCgroup(t *testing.T, controllers string) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	for line := range strings.Lines(string(raw)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && f[1] == controllers {
			return f[2]
		}
	}
	t.Fatalf("no %q cgroup in /proc/self/cgroup:\n%s", controllers, raw)
	return ""
}

// populated tells whether processes are in the cgroup v2 dir or below.
func populated(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	return err == nil && strings.Contains(string(raw), "populated 1")
}

// removeCgroup removes a cgroup dir and every cgroup below it, deepest
// first; one already gone is fine.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("rmdir %s: %w", d, err)
		}
	}
	return nil
}
