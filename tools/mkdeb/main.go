// Command mkdeb packs flexhook into a Debian package without dpkg-deb:
// the static binary as /usr/bin/flexhook, the systemd unit (ExecStart
// pointing there) as /lib/systemd/system/flexhook.service, and
// /etc/flexhook/env (a conffile, 0600: it may hold the etcd password).
// It depends on the tools the presets run.
//
//	mkdeb -arch amd64 -version 1.2.3 -bin dist/flexhook-linux-amd64 -unit contrib/flexhook.service -out dist/flexhook_1.2.3_amd64.deb
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5" //nolint:gosec // md5sums is the format dpkg reads, not a security check
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// depends are the Debian packages of the tools the presets' hooks run.
const depends = "iproute2, net-tools, wireguard-tools, procps"

// recommends are what only some configs need.
const recommends = "wireguard-go, nftables"

// envFile is /etc/flexhook/env as shipped.
const envFile = `# flexhook's settings: every flag has a FLEXHOOK_* variable
# (flexhook run -h). This file is read by flexhook.service.
# The config: the operator's net-conf.json, or a preset instead (flexhook
# presets); keep one of these two lines, not both.
FLEXHOOK_CONFIG=/etc/flexhook/net-conf.json
#FLEXHOOK_PRESET=vxlan-prod
#FLEXHOOK_ETCD_ENDPOINTS=https://etcd-1:2379
#FLEXHOOK_ETCD_PASSWORD=
`

type file struct {
	name string // without the leading "/"
	mode int64
	data []byte
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

// debVersion is what dpkg accepts as an upstream version: it starts with
// a digit.
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

// gitHash is a bare commit (git describe --always without a tag).
var gitHash = regexp.MustCompile(`^[0-9a-f]{7,40}(-dirty)?$`)

// packageVersion turns a build's version (v1.2.3, 1.2.3-4-gabcdef, a
// bare commit, devel) into one dpkg orders sensibly: a bare commit or
// anything not starting with a digit sorts before every release (0~...).
func packageVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	switch {
	case gitHash.MatchString(v):
		return "0~git" + strings.ReplaceAll(v, "-", "+")
	case debVersion.MatchString(v):
		return v
	}
	return "0~" + regexp.MustCompile(`[^A-Za-z0-9.+~]`).ReplaceAllString(v, "+")
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	arch := fs.String("arch", "", "Debian architecture (amd64, arm64)")
	version := fs.String("version", "", "package version (a leading v is dropped; not starting with a digit: 0~VERSION)")
	bin := fs.String("bin", "", "the flexhook binary")
	unit := fs.String("unit", "", "the systemd unit")
	out := fs.String("out", "", "the .deb to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *arch == "" || *version == "" || *bin == "" || *unit == "" || *out == "" {
		return errors.New("-arch, -version, -bin, -unit and -out are required")
	}
	v := packageVersion(*version)
	exe, err := os.ReadFile(*bin)
	if err != nil {
		return err
	}
	u, err := os.ReadFile(*unit)
	if err != nil {
		return err
	}
	files := []file{
		{"usr/bin/flexhook", 0o755, exe},
		{"lib/systemd/system/flexhook.service", 0o644, bytes.ReplaceAll(u, []byte("/usr/local/bin/flexhook"), []byte("/usr/bin/flexhook"))},
		{"etc/flexhook/env", 0o600, []byte(envFile)},
	}
	deb, err := build(*arch, v, files)
	if err != nil {
		return err
	}
	return os.WriteFile(*out, deb, 0o644)
}

// build returns the .deb: an ar archive of debian-binary, control.tar.gz
// and data.tar.gz.
func build(arch, version string, files []file) ([]byte, error) {
	var size int64
	var sums strings.Builder
	for _, f := range files {
		size += int64(len(f.data))
		fmt.Fprintf(&sums, "%x  %s\n", md5.Sum(f.data), f.name)
	}
	control := fmt.Sprintf(`Package: flexhook
Version: %s
Architecture: %s
Maintainer: flexhook developers <flexhook@example.invalid>
Installed-Size: %d
Depends: %s
Recommends: %s
Section: net
Priority: optional
Homepage: https://github.com/flexhook/flexhook
Description: flannel's extension backend as a daemon of its own
 flexhook runs flannel net-conf.json extension backends (five shell hooks
 per node, run by an embedded POSIX shell interpreter) over a lease store
 shared with flanneld: a directory, etcd, or Kubernetes Node annotations.
`, version, arch, (size+1023)/1024, depends, recommends)
	ctl, err := tarGz([]file{
		{"control", 0o644, []byte(control)},
		{"md5sums", 0o644, []byte(sums.String())},
		{"conffiles", 0o644, []byte("/etc/flexhook/env\n")},
	})
	if err != nil {
		return nil, err
	}
	data, err := tarGz(files)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range []file{{"debian-binary", 0o644, []byte("2.0\n")}, {"control.tar.gz", 0o644, ctl}, {"data.tar.gz", 0o644, data}} {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.name, 0, 0, 0, 0o100644, len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

// tarGz packs files, with their parent directories, owned by root.
func tarGz(files []file) ([]byte, error) {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.name); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./" + d + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatGNU}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./" + f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatGNU}); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, bytes.NewReader(f.data)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
