// Command mkimage packs a root filesystem and the static flexhook binary
// into an OCI image archive, without a container daemon: one layer (the
// root filesystem tar as mmdebstrap writes it, /dev emptied, every mtime
// set to -epoch, flexhook added as /usr/local/bin/flexhook), a config for
// the DaemonSet of deploy/kube-flexhook.yml, and a tar that holds both an
// OCI image layout (oci-layout, index.json, blobs/sha256/) and a
// docker-style manifest.json with RepoTags, as `docker save` of Docker 25
// and later writes it: docker load, podman load and ctr import accept it.
//
//	mkimage -rootfs rootfs.tar -bin flexhook -tag flexhook:v1.2.3 -version v1.2.3 -revision abc123 -out dist/flexhook-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// binPath is where the binary goes in the image (the DaemonSet's command).
const binPath = "usr/local/bin/flexhook"

// imagePath is the image's PATH: Debian's default for root.
const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Annotation keys of index.json, as Docker 25's docker save writes them:
// containerd (ctr import, Docker's containerd store) names the image by
// the first, the OCI layout's readers (podman, skopeo) by the second.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// elfMachine is the ELF machine of each GOARCH an image is built for.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

type options struct {
	rootfs, bin, out            string
	tag                         string
	version, revision, source   string
	arch                        string
	epoch                       int64
	title, description, license string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if err := checkStatic(o.bin, o.arch); err != nil {
		return err
	}
	epoch := time.Unix(o.epoch, 0).UTC()

	tmp, err := os.MkdirTemp(filepath.Dir(o.out), ".mkimage-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	layerPath := filepath.Join(tmp, "layer.tar.gz")
	dropped, err := writeLayerFile(layerPath, o.rootfs, o.bin, epoch)
	if err != nil {
		return err
	}
	img, err := buildImage(layerPath, o, epoch)
	if err != nil {
		return err
	}

	part := filepath.Join(tmp, "image.tar")
	f, err := os.Create(part)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	if err := writeArchive(f, img, ref, epoch); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if err := os.Rename(part, o.out); err != nil {
		return fmt.Errorf("move archive in place: %w", err)
	}

	st, err := os.Stat(o.out)
	if err != nil {
		return fmt.Errorf("stat archive: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %s (%.1f MB, %d bytes)\n  manifest %s\n  config   %s (docker's image ID)\n",
		o.out, repoTag(ref), float64(st.Size())/1e6, st.Size(), digest, cfg)
	if dropped > 0 {
		fmt.Fprintf(stdout, "  %d entries under /dev left out (the runtime mounts /dev)\n", dropped)
	}
	return nil
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.StringVar(&o.rootfs, "rootfs", "", "the root filesystem: a tar (mmdebstrap's output)")
	fs.StringVar(&o.bin, "bin", "", "the static flexhook binary, put at /"+binPath)
	fs.StringVar(&o.out, "out", "", "the image archive to write")
	fs.StringVar(&o.tag, "tag", "", "the image's name and tag, e.g. flexhook:v1.2.3 (in index.json and manifest.json)")
	fs.StringVar(&o.version, "version", "", "label org.opencontainers.image.version")
	fs.StringVar(&o.revision, "revision", "", "label org.opencontainers.image.revision (the commit)")
	fs.StringVar(&o.source, "source", "https://github.com/flexhook/flexhook", "label org.opencontainers.image.source")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "the image's architecture (GOARCH); the binary must be built for it")
	fs.StringVar(&o.title, "title", "flexhook", "label org.opencontainers.image.title")
	fs.StringVar(&o.description, "description", "flannel's extension backend as a daemon of its own", "label org.opencontainers.image.description")
	fs.StringVar(&o.license, "license", "Apache-2.0", "label org.opencontainers.image.licenses (an SPDX expression; empty: no label)")
	epoch := fs.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970: every file's mtime and the image's created time (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.rootfs == "" || o.bin == "" || o.out == "" || o.tag == "" || o.version == "" || o.revision == "" {
		return o, errors.New("-rootfs, -bin, -out, -tag, -version and -revision are required")
	}
	if _, ok := elfMachine[o.arch]; !ok {
		return o, fmt.Errorf("-arch %q: not a GOARCH mkimage knows", o.arch)
	}
	if *epoch != "" {
		n, err := strconv.ParseInt(*epoch, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("-epoch %q: want seconds since 1970", *epoch)
		}
		o.epoch = n
	}
	return o, nil
}

// checkStatic refuses a binary that is not a static ELF executable for
// arch: a dynamically linked one would load the image's libc, not the one
// it was built against.
func checkStatic(bin, arch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("-bin %s: %w", bin, err)
	}
	defer f.Close()
	if want := elfMachine[arch]; f.Machine != want {
		return fmt.Errorf("-bin %s: built for %s, the image is %s (%s)", bin, f.Machine, arch, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("-bin %s: dynamically linked (build it with CGO_ENABLED=0)", bin)
		}
	}
	return nil
}

// writeLayerFile writes the gzipped layer to path and returns how many
// entries under /dev it left out.
func writeLayerFile(path, rootfs, bin string, mtime time.Time) (int, error) {
	in, err := os.Open(rootfs)
	if err != nil {
		return 0, fmt.Errorf("-rootfs: %w", err)
	}
	defer in.Close()
	exe, err := os.Open(bin)
	if err != nil {
		return 0, fmt.Errorf("-bin: %w", err)
	}
	defer exe.Close()
	st, err := exe.Stat()
	if err != nil {
		return 0, fmt.Errorf("-bin: %w", err)
	}
	out, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create layer: %w", err)
	}
	defer out.Close()
	gz := gzip.NewWriter(out) // no name, no mtime: the same bytes every time
	dropped, err := writeLayer(gz, in, exe, st.Size(), mtime)
	if err != nil {
		return 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, fmt.Errorf("compress layer: %w", err)
	}
	if err := out.Close(); err != nil {
		return 0, fmt.Errorf("write layer: %w", err)
	}
	return dropped, nil
}

// writeLayer copies the root filesystem tar to w: names without "./",
// no entry for "/" itself, nothing under /dev (container runtimes mount
// their own; device nodes break rootless loads), every mtime set to
// mtime and no atime or ctime, the extended attributes (file
// capabilities) kept; then the binary at binPath, 0755 root:root.
func writeLayer(w io.Writer, rootfs, exe io.Reader, exeSize int64, mtime time.Time) (int, error) {
	tr := tar.NewReader(rootfs)
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	dropped := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("-rootfs: %w", err)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return 0, fmt.Errorf("-rootfs: %w", err)
		}
		if name == "" || name == binPath {
			continue
		}
		if strings.HasPrefix(name, "dev/") {
			dropped++
			continue
		}
		if h.Typeflag == tar.TypeLink {
			if h.Linkname, err = entryName(h.Linkname); err != nil || h.Linkname == "" {
				return 0, fmt.Errorf("-rootfs: hard link %s: bad target %q", name, h.Linkname)
			}
		}
		h.Name = name
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
			dirs[name] = true
		}
		normalize(h, mtime)
		if err := tw.WriteHeader(h); err != nil {
			return 0, fmt.Errorf("layer: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return 0, fmt.Errorf("layer: %s: %w", name, err)
		}
	}
	for d := range parents(binPath) {
		if !dirs[d] {
			h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}
			normalize(h, mtime)
			if err := tw.WriteHeader(h); err != nil {
				return 0, fmt.Errorf("layer: %s: %w", d, err)
			}
		}
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: binPath, Mode: 0o755, Size: exeSize, Uname: "root", Gname: "root"}
	normalize(h, mtime)
	if err := tw.WriteHeader(h); err != nil {
		return 0, fmt.Errorf("layer: %s: %w", binPath, err)
	}
	if _, err := io.Copy(tw, exe); err != nil {
		return 0, fmt.Errorf("-bin: %w", err)
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("layer: %w", err)
	}
	return dropped, nil
}

// entryName is a tar entry's name relative to the root, without "./" or
// a trailing "/"; "" for the root itself. A name that climbs out of the
// root is an error.
func entryName(n string) (string, error) {
	c := path.Clean(strings.TrimPrefix(n, "/"))
	if c == "." {
		return "", nil
	}
	if !filepath.IsLocal(c) {
		return "", fmt.Errorf("entry %q is outside the root", n)
	}
	return c, nil
}

// parents yields the directories above p, outermost first.
func parents(p string) iter.Seq[string] {
	return func(yield func(string) bool) {
		parts := strings.Split(path.Dir(p), "/")
		for i := range parts {
			if !yield(strings.Join(parts[:i+1], "/")) {
				return
			}
		}
	}
}

// normalize makes h the same for the same file on any machine: PAX
// format, mtime as given, no atime or ctime, only the extended
// attributes of the PAX records.
func normalize(h *tar.Header, mtime time.Time) {
	h.Format = tar.FormatPAX
	h.ModTime = mtime
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	for k := range h.PAXRecords {
		if !strings.HasPrefix(k, "SCHILY.xattr.") {
			delete(h.PAXRecords, k)
		}
	}
}

// buildImage makes the one-layer OCI image with its config.
func buildImage(layerPath string, o options, created time.Time) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "mmdebstrap (a Debian root filesystem) and tools/mkimage (flexhook " + o.version + ")",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: created}
	labels := map[string]string{
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.title":       o.title,
		"org.opencontainers.image.description": o.description,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	if o.license != "" {
		labels["org.opencontainers.image.licenses"] = o.license
	}
	// The DaemonSet sets command and args itself (flexhook check, run, or
	// cp); Entrypoint and Cmd serve `docker run IMAGE [ARGS]`.
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binPath},
		Cmd:        []string{"run"},
		Env:        []string{imagePath},
		WorkingDir: "/",
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// repoTag is the name docker shows: without docker.io/library/ for the
// default registry.
func repoTag(ref name.Tag) string {
	repo := ref.RepositoryStr()
	if ref.RegistryStr() == name.DefaultRegistry {
		return strings.TrimPrefix(repo, "library/") + ":" + ref.TagStr()
	}
	return ref.RegistryStr() + "/" + repo + ":" + ref.TagStr()
}

// fullName is the name containerd stores: with the registry, docker.io
// for the default one.
func fullName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

// archive writes a tar's entries, each with the same mtime, owned by root.
type archive struct {
	tw    *tar.Writer
	mtime time.Time
}

func (a archive) dir(name string) error {
	return a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: a.mtime, Format: tar.FormatPAX})
}

func (a archive) file(name string, size int64, r io.Reader) error {
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: a.mtime, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	if _, err := io.Copy(a.tw, r); err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	return nil
}

func (a archive) bytes(name string, b []byte) error {
	return a.file(name, int64(len(b)), bytes.NewReader(b))
}

func (a archive) json(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	return a.bytes(name, b)
}

// blobName is a blob's path in the layout.
func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeArchive writes img as the OCI image layout of Docker 25's docker
// save: oci-layout, the blobs (layer, config, manifest), index.json naming
// the manifest, and manifest.json (the config, the RepoTags and the layers
// by their blob paths) for docker load and older readers.
func writeArchive(w io.Writer, img v1.Image, ref name.Tag, mtime time.Time) error {
	a := archive{tw: tar.NewWriter(w), mtime: mtime}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	configName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	desc, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}

	if err := a.json("oci-layout", map[string]string{"imageLayoutVersion": "1.0.0"}); err != nil {
		return err
	}
	for _, d := range []string{"blobs", "blobs/sha256"} {
		if err := a.dir(d); err != nil {
			return fmt.Errorf("archive: %s: %w", d, err)
		}
	}
	var layerNames []string
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		err = a.file(blobName(h), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
		layerNames = append(layerNames, blobName(h))
	}
	if err := a.bytes(blobName(configName), rawConfig); err != nil {
		return err
	}
	if err := a.bytes(blobName(desc), rawManifest); err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Digest:    desc,
			Size:      int64(len(rawManifest)),
			Annotations: map[string]string{
				annotationImageName: fullName(ref),
				annotationRefName:   ref.TagStr(),
			},
		}},
	}
	if err := a.json("index.json", index); err != nil {
		return err
	}
	if err := a.json("manifest.json", tarball.Manifest{{
		Config:   blobName(configName),
		RepoTags: []string{repoTag(ref)},
		Layers:   layerNames,
	}}); err != nil {
		return err
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}
