package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/imagetest"
)

// static is this command built without cgo (TestMain): a static
// executable that stands in for flexhook.
var static string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mkimage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	static = filepath.Join(dir, "flexhook")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", static, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

type entry struct {
	h    tar.Header
	data string
}

// rootfsTar writes a tar as mmdebstrap writes one: "./" names, the root
// itself, a device node, a hard link, a symlink, a file capability as a
// PAX xattr, and atime/ctime records.
func rootfsTar(t *testing.T, entries []entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	old := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		h := e.h
		h.Size = int64(len(e.data))
		h.ModTime, h.AccessTime, h.ChangeTime = old, old, old
		h.Format = tar.FormatPAX
		require.NoError(t, tw.WriteHeader(&h))
		_, err := io.WriteString(tw, e.data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
	return p
}

var capability = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00})

var debianLike = []entry{
	{h: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
	{h: tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755}},
	{h: tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
	{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "./dev/fd", Linkname: "/proc/self/fd"}},
	{h: tar.Header{Typeflag: tar.TypeDir, Name: "./etc/", Mode: 0o755}},
	{h: tar.Header{Typeflag: tar.TypeReg, Name: "./etc/shadow", Mode: 0o640, Gid: 42, Gname: "shadow"}, data: "root:*:20309:0:99999:7:::\n"},
	{h: tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755}},
	{h: tar.Header{Typeflag: tar.TypeDir, Name: "./usr/bin/", Mode: 0o755}},
	{h: tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/ping", Mode: 0o755,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capability}}, data: "ping"},
	{h: tar.Header{Typeflag: tar.TypeLink, Name: "./usr/bin/ping4", Linkname: "./usr/bin/ping"}},
	{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin", Linkname: "usr/bin"}},
}

// The archive is what docker load, podman load and ctr import read: an
// OCI layout and a manifest.json naming the same valid image, with the
// DaemonSet's entrypoint and the labels; its one layer is the root
// filesystem made neutral (no ./, no /dev content, every mtime the
// epoch, owners, links and file capabilities kept) plus the binary. Two
// runs give the same bytes.
func TestArchive(t *testing.T) {
	bin := static
	rootfs := rootfsTar(t, debianLike)
	dir := t.TempDir()
	args := func(out string) []string {
		return []string{"-rootfs", rootfs, "-bin", bin, "-tag", "flexhook:v1.2.3", "-version", "v1.2.3",
			"-revision", "0123456789ab", "-arch", runtime.GOARCH, "-epoch", "1700000000", "-out", out}
	}
	out := filepath.Join(dir, "image.tar")
	var stdout bytes.Buffer
	require.NoError(t, run(args(out), &stdout))
	assert.Contains(t, stdout.String(), out+": flexhook:v1.2.3 (")
	assert.Contains(t, stdout.String(), "manifest sha256:")
	assert.Contains(t, stdout.String(), "2 entries under /dev left out")

	a := imagetest.Load(t, out, "flexhook:v1.2.3")
	assert.Equal(t, "oci-layout", a.Names[0])
	for _, n := range []string{"index.json", "manifest.json"} {
		assert.Contains(t, a.Names, n)
	}
	assert.Len(t, a.Names, 8, "oci-layout, blobs/, blobs/sha256/, three blobs, index.json, manifest.json: %v", a.Names)
	assert.Equal(t, types.OCIImageIndex, a.Index.MediaType)
	assert.Equal(t, types.OCIManifestSchema1, a.Index.Manifests[0].MediaType)
	assert.Equal(t, map[string]string{"io.containerd.image.name": "docker.io/library/flexhook:v1.2.3",
		"org.opencontainers.image.ref.name": "v1.2.3"}, a.Index.Manifests[0].Annotations)
	m, err := a.OCI.Manifest()
	require.NoError(t, err)
	assert.Equal(t, types.OCIConfigJSON, m.Config.MediaType)
	require.Len(t, m.Layers, 1)
	assert.Equal(t, types.OCILayer, m.Layers[0].MediaType)

	c := a.Config
	assert.Equal(t, runtime.GOARCH, c.Architecture)
	assert.Equal(t, "linux", c.OS)
	assert.Equal(t, int64(1700000000), c.Created.Unix())
	assert.Equal(t, []string{"/usr/local/bin/flexhook"}, c.Config.Entrypoint)
	assert.Equal(t, []string{"run"}, c.Config.Cmd)
	assert.Contains(t, c.Config.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	assert.Equal(t, "v1.2.3", c.Config.Labels["org.opencontainers.image.version"])
	assert.Equal(t, "0123456789ab", c.Config.Labels["org.opencontainers.image.revision"])
	assert.Equal(t, "https://github.com/flexhook/flexhook", c.Config.Labels["org.opencontainers.image.source"])
	assert.Equal(t, "Apache-2.0", c.Config.Labels["org.opencontainers.image.licenses"])
	require.Len(t, c.History, 1)
	require.Len(t, c.RootFS.DiffIDs, 1)

	layers, err := a.OCI.Layers()
	require.NoError(t, err)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	got := map[string]*tar.Header{}
	var names []string
	var flexhook []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		names = append(names, h.Name)
		got[h.Name] = h
		assert.Equal(t, int64(1700000000), h.ModTime.Unix(), h.Name)
		assert.True(t, h.AccessTime.IsZero() && h.ChangeTime.IsZero(), "%s: no atime or ctime", h.Name)
		if h.Name == binPath {
			flexhook, err = io.ReadAll(tr)
			require.NoError(t, err)
		}
	}
	assert.Equal(t, []string{"dev/", "etc/", "etc/shadow", "usr/", "usr/bin/", "usr/bin/ping", "usr/bin/ping4", "bin",
		"usr/local/", "usr/local/bin/", "usr/local/bin/flexhook"}, names)
	assert.Equal(t, 42, got["etc/shadow"].Gid)
	assert.Equal(t, int64(0o640), got["etc/shadow"].Mode)
	assert.Equal(t, capability, got["usr/bin/ping"].PAXRecords["SCHILY.xattr.security.capability"])
	assert.Equal(t, "usr/bin/ping", got["usr/bin/ping4"].Linkname)
	assert.Equal(t, "usr/bin", got["bin"].Linkname)
	assert.Equal(t, int64(0o755), got[binPath].Mode)
	want, err := os.ReadFile(bin)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, flexhook), "the binary as built")

	again := filepath.Join(dir, "again.tar")
	require.NoError(t, run(args(again), io.Discard))
	b1, err := os.ReadFile(out)
	require.NoError(t, err)
	b2, err := os.ReadFile(again)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b1, b2), "the same inputs give the same archive")
	left, err := filepath.Glob(filepath.Join(dir, ".mkimage-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temp dir left")
}

// A flexhook already in the root filesystem is replaced, not doubled.
func TestLayerReplacesBinary(t *testing.T) {
	rootfs := rootfsTar(t, []entry{
		{h: tar.Header{Typeflag: tar.TypeDir, Name: "usr/", Mode: 0o755}},
		{h: tar.Header{Typeflag: tar.TypeDir, Name: "usr/local/", Mode: 0o755}},
		{h: tar.Header{Typeflag: tar.TypeDir, Name: "usr/local/bin/", Mode: 0o755}},
		{h: tar.Header{Typeflag: tar.TypeReg, Name: "./usr/local/bin/flexhook", Mode: 0o755}, data: "stale"},
	})
	f, err := os.Open(rootfs)
	require.NoError(t, err)
	defer f.Close()
	var layer bytes.Buffer
	_, err = writeLayer(&layer, f, strings.NewReader("new"), 3, time.Unix(1, 0))
	require.NoError(t, err)
	tr := tar.NewReader(&layer)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		names = append(names, h.Name)
		if h.Name == binPath {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			assert.Equal(t, "new", string(b))
		}
	}
	assert.Equal(t, []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/flexhook"}, names)
}

func TestRefusals(t *testing.T) {
	bin := static
	rootfs := rootfsTar(t, debianLike)
	escape := rootfsTar(t, []entry{{h: tar.Header{Typeflag: tar.TypeReg, Name: "../etc/passwd", Mode: 0o644}}})
	dynamic, err := exec.LookPath("true")
	require.NoError(t, err)
	other := map[string]string{"amd64": "arm64"}[runtime.GOARCH]
	if other == "" {
		other = "amd64"
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing flag", []string{"-rootfs", rootfs}, "-rootfs, -bin, -out, -tag, -version and -revision are required"},
		{"bad tag", []string{"-tag", "Flexhook:v1"}, "-tag: "},
		{"dynamic binary", []string{"-bin", dynamic}, "dynamically linked (build it with CGO_ENABLED=0)"},
		{"other arch", []string{"-arch", other}, "the image is " + other},
		{"unknown arch", []string{"-arch", "vax"}, `-arch "vax": not a GOARCH mkimage knows`},
		{"bad epoch", []string{"-epoch", "yesterday"}, `-epoch "yesterday": want seconds since 1970`},
		{"entry outside the root", []string{"-rootfs", escape}, `entry "../etc/passwd" is outside the root`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-rootfs", rootfs, "-bin", bin, "-tag", "flexhook:v1", "-version", "v1", "-revision", "r", "-out", out}
			if tc.name == "missing flag" {
				args = nil
			}
			err := run(append(args, tc.args...), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			_, err = os.Stat(out)
			assert.ErrorIs(t, err, os.ErrNotExist, "no archive written")
		})
	}
}
