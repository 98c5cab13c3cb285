// Package imagetest reads an image archive as tools/mkimage writes it
// both ways its loaders do: through manifest.json (docker load of the
// classic store, go-containerregistry's tarball) and through the OCI
// layout's index.json (ctr import, podman load), checks that each view
// is a valid image and that both are the same image, and returns them.
package imagetest

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/require"
)

// Archive is one image archive, read.
type Archive struct {
	// Names are the archive's entries, in order.
	Names []string
	// Index is index.json; its one manifest is OCI.
	Index *v1.IndexManifest
	// OCI is the image index.json names; Docker the one manifest.json
	// names for tag (go-containerregistry synthesizes a Docker manifest
	// for it: only their configs and layers are the same).
	OCI, Docker v1.Image
	// Config is OCI's config.
	Config *v1.ConfigFile
}

// Load reads the archive at path, whose manifest.json must list tag,
// and fails t unless both views are valid (every digest, size and diff
// ID checked against the bytes) and hold the same config and layers.
func Load(t testing.TB, path, tag string) Archive {
	t.Helper()
	var a Archive
	dir := t.TempDir()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		a.Names = append(a.Names, h.Name)
		require.True(t, filepath.IsLocal(h.Name), "entry %q stays inside the archive", h.Name)
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(p, 0o755))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			out, err := os.Create(p)
			require.NoError(t, err)
			_, err = io.Copy(out, tr)
			require.NoError(t, err)
			require.NoError(t, out.Close())
		default:
			t.Fatalf("archive entry %s: type %c, want only files and directories", h.Name, h.Typeflag)
		}
	}

	ref, err := name.NewTag(tag)
	require.NoError(t, err)
	a.Docker, err = tarball.ImageFromPath(path, &ref)
	require.NoError(t, err, "manifest.json lists %s", tag)
	// Its layers are the OCI view's blobs (compared below by digest, which
	// is their path in the archive): checked there, byte by byte.
	require.NoError(t, validate.Image(a.Docker, validate.Fast), "the image manifest.json names")

	idx, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err, "an OCI image layout")
	a.Index, err = idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, a.Index.Manifests, 1, "index.json names one image")
	a.OCI, err = idx.Image(a.Index.Manifests[0].Digest)
	require.NoError(t, err)
	require.NoError(t, validate.Image(a.OCI), "the image index.json names")
	a.Config, err = a.OCI.ConfigFile()
	require.NoError(t, err)

	ociConfig, err := a.OCI.RawConfigFile()
	require.NoError(t, err)
	dockerConfig, err := a.Docker.RawConfigFile()
	require.NoError(t, err)
	require.Equal(t, string(ociConfig), string(dockerConfig), "both views hold one config")
	ociLayers, err := a.OCI.Layers()
	require.NoError(t, err)
	dockerLayers, err := a.Docker.Layers()
	require.NoError(t, err)
	require.Len(t, dockerLayers, len(ociLayers))
	for i := range ociLayers {
		o, err := ociLayers[i].Digest()
		require.NoError(t, err)
		d, err := dockerLayers[i].Digest()
		require.NoError(t, err)
		require.Equal(t, o, d, "layer %d is one blob in both views", i)
	}
	return a
}
