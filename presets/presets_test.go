package presets

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flexhook/flexhook/hooks"
)

// recipesDir holds the recipes as flannel's documentation publishes
// them (see its README), so that the presets are checked on any clone.
var recipesDir = filepath.Join("testdata", "published")

func recipes(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(recipesDir); err != nil {
		t.Fatalf("published recipes needed to check the presets: %v", err)
	}
	return recipesDir
}

func TestNames(t *testing.T) {
	want := []string{"host-gw", "host-gw-prod", "vxlan", "vxlan-prod", "wireguard", "wireguard-prod"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	for _, p := range Published() {
		if !slices.Contains(Names(), p) {
			t.Errorf("published %q is no preset", p)
		}
	}
}

func TestPresetsEqualRecipes(t *testing.T) {
	dir := recipes(t)
	published, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range published {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".json"))
	}
	if !slices.Equal(names, Published()) {
		t.Errorf("recipes %q, published presets %q", names, Published())
	}
	for _, name := range Published() {
		got, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("preset %s differs from %s", name, filepath.Join(dir, name+".json"))
		}
	}
}

// Every hook flexhook parses from a preset is the recipe's command string,
// byte for byte, as decoded independently from the published file.
func TestPresetsParse(t *testing.T) {
	dir := recipes(t)
	for _, name := range Published() {
		t.Run(name, func(t *testing.T) {
			data, err := Get(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := hooks.Parse(data)
			if err != nil {
				t.Fatalf("preset %s: %v", name, err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var recipe struct{ Backend map[string]string }
			if err := json.Unmarshal(raw, &recipe); err != nil {
				t.Fatal(err)
			}
			if cfg.Backend.Type != recipe.Backend["Type"] {
				t.Errorf("Type = %q, recipe %q", cfg.Backend.Type, recipe.Backend["Type"])
			}
			hooksSet := 0
			for _, k := range hooks.Kinds {
				want, ok := recipe.Backend[k.String()]
				h := cfg.Backend.Hook(k)
				if h.Source != want {
					t.Errorf("%s:\n got %q\nwant %q", k, h.Source, want)
				}
				if ok != !h.Empty() {
					t.Errorf("%s: in recipe %v, parsed and non-empty %v", k, ok, !h.Empty())
				}
				if ok {
					hooksSet++
				}
			}
			if hooksSet+1 != len(recipe.Backend) {
				t.Errorf("recipe Backend has %d keys, %d hooks were parsed", len(recipe.Backend), hooksSet)
			}
			for _, w := range hooks.Lint(cfg) {
				if w.Severity >= hooks.SeverityError {
					t.Errorf("lint: %s", w)
				} else {
					t.Logf("lint: %s", w)
				}
			}
		})
	}
}

// The production presets parse, and lint finds no error in them (nor a
// warning: they quote the lease data they read).
func TestProductionPresetsLint(t *testing.T) {
	for _, name := range Names() {
		if slices.Contains(Published(), name) {
			continue
		}
		data, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := hooks.Parse(data)
		if err != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
		for _, w := range hooks.Lint(cfg) {
			t.Errorf("preset %s: lint: %s", name, w)
		}
	}
}

// hooks names the presets in its advice for other backend types; the names
// must be the presets'.
func TestTypeAdviceNamesPreset(t *testing.T) {
	for _, name := range Published() {
		_, err := hooks.Parse([]byte(`{"Network": "10.50.0.0/16", "Backend": {"Type": "` + name + `"}}`))
		if err == nil || !strings.Contains(err.Error(), "--preset "+name+" ") {
			t.Errorf("Type %q: %v does not point to --preset %s", name, err, name)
		}
	}
}

func TestGetUnknown(t *testing.T) {
	for _, name := range []string{"udp", "", "VXLAN", "vxlan.json", "../presets/vxlan", "."} {
		_, err := Get(name)
		if !errors.Is(err, ErrUnknown) {
			t.Errorf("Get(%q) = %v, want ErrUnknown", name, err)
			continue
		}
		if want := "the presets are host-gw, host-gw-prod, vxlan, vxlan-prod, wireguard, wireguard-prod"; !strings.HasSuffix(err.Error(), want) {
			t.Errorf("Get(%q) = %v, want it to end in %q", name, err, want)
		}
	}
}

func TestGetReturnsCopy(t *testing.T) {
	a, _ := Get("vxlan")
	a[0] = 'X'
	b, _ := Get("vxlan")
	if b[0] != '{' {
		t.Error("Get shares its buffer: a caller's write changed the preset")
	}
}

func TestEveryPresetDeclaresADataShape(t *testing.T) {
	for _, name := range Names() {
		if DataShape(name) == "" {
			t.Errorf("preset %s declares no BackendData shape", name)
		}
	}
	if DataShape("nope") != "" {
		t.Error("an unknown preset has a shape")
	}
}
