//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/flexhook/flexhook/internal/imagetest"
	"github.com/flexhook/flexhook/internal/testutil"
)

const (
	// imageVersion and imageTag are what TestImage builds the image as.
	imageVersion = "v0.0.0-imagetest"
	imageTag     = "flexhook:imagetest"
	// imagePath is the image config's PATH, which the inner test runs with.
	imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// imageInnerEnv marks TestImage's inner run; imageRootEnv is the root
	// filesystem it runs in.
	imageInnerEnv = "FLEXHOOK_IMAGE_INNER"
	imageRootEnv  = "FLEXHOOK_IMAGE_ROOT"
)

// TestImage builds the image as `make image` does (mmdebstrap and
// tools/mkimage; the root filesystem is cached in .cache/image), reads the
// archive back both ways its loaders do (manifest.json, the OCI layout),
// unpacks its one layer, and runs inside that root filesystem, chrooted in
// a mount and network namespace of the test's own: the tools the presets
// need resolve on the image's PATH and run, flexhook is the stamped one,
// `check --host` passes every preset, and `lab verify` passes all its
// checks with host-gw, vxlan-prod and wireguard-prod. So the archive, not
// the build directory, is what runs.
func TestImage(t *testing.T) {
	if os.Getenv(imageInnerEnv) != "" {
		imageInner(t)
		return
	}
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root: mmdebstrap, chroot and network namespaces (run `sudo make integration`)")
	}
	for _, tool := range []string{"make", "mmdebstrap", "tar", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "needs %s (make deps installs it)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	// Runs before dir is removed: nothing may stay mounted in it.
	t.Cleanup(func() { assert.Empty(t, mountsUnder(t, root), "mounts left in the root filesystem") })

	archive := filepath.Join(dir, "flexhook-image.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "make", "-C", "..", "image", "IMAGE_OUT="+archive,
		"VERSION="+imageVersion, "IMAGE_TAG="+imageTag).CombinedOutput()
	t.Logf("make image (%s):\n%s", time.Since(start).Round(time.Second), out)
	require.NoError(t, err)
	require.Contains(t, string(out), archive+": "+imageTag+" (")

	start = time.Now()
	a := imagetest.Load(t, archive, imageTag)
	t.Logf("archive read and checked (%s)", time.Since(start).Round(time.Second))
	assert.Equal(t, "docker.io/library/"+imageTag, a.Index.Manifests[0].Annotations["io.containerd.image.name"])
	c := a.Config
	assert.Equal(t, runtime.GOARCH, c.Architecture)
	assert.Equal(t, []string{"/usr/local/bin/flexhook"}, c.Config.Entrypoint)
	assert.Contains(t, c.Config.Env, imagePath)
	assert.Equal(t, imageVersion, c.Config.Labels["org.opencontainers.image.version"])
	assert.NotEmpty(t, c.Config.Labels["org.opencontainers.image.revision"])
	layers, err := a.OCI.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)

	// The layer, as a runtime unpacks it: owners, modes and file
	// capabilities (ping's) kept.
	require.NoError(t, os.Mkdir(root, 0o755))
	start = time.Now()
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	untar := exec.CommandContext(ctx, "tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-f", "-")
	untar.Stdin = rc
	out, err = untar.CombinedOutput()
	rc.Close()
	require.NoError(t, err, "%s", out)
	t.Logf("layer unpacked (%s)", time.Since(start).Round(time.Second))

	st, err := os.Stat(filepath.Join(root, "usr/local/bin/flexhook"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	devs, err := os.ReadDir(filepath.Join(root, "dev"))
	require.NoError(t, err)
	assert.Empty(t, devs, "no device nodes in the image")
	for _, p := range []string{"var/lib/apt/lists", "var/cache/apt/archives", "usr/share/man", "etc/resolv.conf"} {
		_, err := os.Lstat(filepath.Join(root, p))
		assert.ErrorIs(t, err, os.ErrNotExist, "/%s is not in the image", p)
	}

	t.Setenv(imageRootEnv, root)
	if flexhookBin != "" {
		t.Setenv("FLEXHOOK_BIN", flexhookBin) // the inner run's TestMain builds none
	}
	testutil.RunInner(t, "TestImage", imageInnerEnv, []string{"--mount", "--net", "--propagation", "private"})
}

// imageInner runs in TestImage's own mount and network namespaces: it
// gives the root filesystem what a container runtime gives it (proc,
// sys, a /dev with the usual nodes and /dev/net/tun, tmpfs /run and /tmp)
// and runs programs chrooted there.
func imageInner(t *testing.T) {
	root := os.Getenv(imageRootEnv)
	require.NotEmpty(t, root)
	mountRuntime(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Each tool the presets run (and the lab: ping), found on the image's
	// PATH by the image's own env (execvp inside the root) and run.
	for _, tool := range [][]string{
		{"ip", "-V"}, {"bridge", "-V"}, {"arp", "-V"}, {"wg", "--version"}, {"nft", "--version"},
		{"sysctl", "--version"}, {"wireguard-go", "--version"}, {"ping", "-V"},
	} {
		out, err := inRoot(ctx, root, append([]string{"/usr/bin/env"}, tool...)...).CombinedOutput()
		assert.NoError(t, err, "%s in the image: %s", tool[0], out)
	}

	out, err := inRoot(ctx, root, "/usr/local/bin/flexhook", "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), imageVersion, "the stamped version")

	for _, preset := range []string{"host-gw", "host-gw-prod", "vxlan", "vxlan-prod", "wireguard", "wireguard-prod"} {
		out, err := inRoot(ctx, root, "/usr/local/bin/flexhook", "check", "--host", "--preset", preset).CombinedOutput()
		assert.NoError(t, err, "check --host --preset %s: every command its hooks name is on PATH: %s", preset, out)
	}

	// The labs run side by side; the group returns when all are done.
	t.Run("lab-verify", func(t *testing.T) {
		for _, preset := range []string{"host-gw", "vxlan-prod", "wireguard-prod"} {
			t.Run(preset, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				cmd := inRoot(ctx, root, "/usr/local/bin/flexhook", "lab", "verify", "--preset", preset, "--nodes", "2", "--json")
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				t.Logf("lab verify --preset %s in the image (%s): %v", preset, time.Since(start).Round(time.Second), err)
				var card verifyCard
				require.NoError(t, json.Unmarshal(out, &card), "stdout: %s\nstderr: %s", out, stderr.String())
				require.Len(t, card.Checks, 10, "%s", out)
				for _, c := range card.Checks {
					assert.True(t, c.OK, "check %d %s: %s %s", c.N, c.Name, strings.Join(c.Detail, "\n"), c.NotRun)
				}
				assert.True(t, card.OK)
				assert.NoError(t, err, "exit status 0\nstderr: %s", stderr.String())
			})
		}
	})
	left, err := os.ReadDir(filepath.Join(root, "run/netns"))
	require.NoError(t, err, "the labs used the image's /run/netns")
	assert.Empty(t, left, "the labs' namespaces are gone")
}

// inRoot is a command run chrooted in root, in /, with the image's PATH.
func inRoot(ctx context.Context, root string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{imagePath, "HOME=/root"}
	return cmd
}

// mountRuntime mounts in root what a container runtime would, and
// unmounts everything under root (also what the programs mounted there,
// as ip netns does on /run/netns) when t ends, failing t when a mount
// stays.
func mountRuntime(t *testing.T, root string) {
	t.Cleanup(func() {
		for _, m := range mountsUnder(t, root) { // deepest first
			if err := unix.Unmount(m, 0); err != nil {
				t.Errorf("unmount %s: %v", m, err)
				_ = unix.Unmount(m, unix.MNT_DETACH)
			}
		}
		assert.Empty(t, mountsUnder(t, root), "mounts left in the root filesystem")
	})
	// The root a bind mount of its own, as a runtime's is: ip -n makes
	// "/" a slave mount, which needs "/" to be a mount point.
	require.NoError(t, unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""), "bind %s on itself", root)
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "dev", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "tmp", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		target := filepath.Join(root, m.target)
		require.NoError(t, unix.Mount(m.fstype, target, m.fstype, m.flags, m.data), "mount %s on %s", m.fstype, target)
	}
	dev := filepath.Join(root, "dev")
	require.NoError(t, os.Mkdir(filepath.Join(dev, "net"), 0o755))
	for name, num := range map[string][2]uint32{
		"null": {1, 3}, "zero": {1, 5}, "full": {1, 7}, "random": {1, 8}, "urandom": {1, 9}, "tty": {5, 0}, "net/tun": {10, 200},
	} {
		p := filepath.Join(dev, name)
		require.NoError(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(num[0], num[1]))), "mknod %s", p)
		require.NoError(t, os.Chmod(p, 0o666))
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		require.NoError(t, os.Symlink(target, filepath.Join(dev, name)))
	}
}

// mountsUnder lists the mount points at or below dir in this mount
// namespace, deepest (latest) first.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	require.NoError(t, sc.Err())
	slices.Reverse(points)
	return points
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
