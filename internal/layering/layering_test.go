// Package layering holds the test that keeps the module's layers: a
// package imports only packages of its own layer or below.
package layering

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/flexhook/flexhook/"

// layers, bottom first (docs/layout.md, "Layers"). A package's layer is that of
// the longest entry its path starts with.
var layers = [][]string{
	// 0. Foundations: nothing they import is ours.
	{"internal/ipmath", "internal/retry", "internal/atomicfile", "internal/toolargs", "internal/testutil", "internal/suggest"},
	// 1. Kernel objects, tools and the lease stores.
	{"internal/netcmd", "internal/wgkey", "internal/pathmtu", "internal/coreutils", "internal/puretools", "internal/masq",
		"leases", "leases/file", "leases/etcd", "leases/kube", "leases/leasestest"},
	// 2. The config and hooks, and what observes them.
	{"hooks", "presets", "internal/metrics"},
	// 3. The engine: the interpreter and its middlewares, the lifecycle.
	{"runner/shell", "runner"},
	// 4. Programs and the lab.
	{"cmd", "tools", "internal/netlab", "internal/layering", "internal/imagetest"},
}

func layerOf(pkg string) int {
	best, layer := -1, -1
	for i, l := range layers {
		for _, p := range l {
			if (pkg == p || strings.HasPrefix(pkg, p+"/")) && len(p) > best {
				best, layer = len(p), i
			}
		}
	}
	return layer
}

func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`,
		module+"...").Output()
	require.NoError(t, err)
	pkgs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		from := layerOf(pkg)
		if !assert.GreaterOrEqual(t, from, 0, "%s: in no layer; add it to layers (and docs/layout.md)", pkg) {
			continue
		}
		pkgs++
		for _, imp := range f[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			to := layerOf(dep)
			assert.LessOrEqual(t, to, from, "%s (layer %d) imports %s (layer %d), a higher layer", pkg, from, dep, to)
		}
	}
	assert.Greater(t, pkgs, 20)
}
