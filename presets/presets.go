// Package presets holds the documented flannel extension-backend recipes
// (vxlan, host-gw and wireguard) as flannel net-conf.json files, embedded
// byte for byte as published, so `flexhook run --preset NAME` runs exactly
// the configuration the flannel documentation gives; and production
// presets beside them (vxlan-prod, wireguard-prod, host-gw-prod) that keep the data path up across
// restarts and leave nothing behind.
package presets

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/flexhook/flexhook/internal/suggest"
)

//go:embed *.json
var files embed.FS

const ext = ".json"

// ErrUnknown is wrapped by the error [Get] returns for a name that is not a
// preset.
var ErrUnknown = errors.New("unknown preset")

// Names returns the preset names, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(fmt.Sprintf("presets: embedded files unreadable: %v", err)) // cannot happen with go:embed
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ext))
	}
	slices.Sort(names)
	return names
}

// Get returns the net-conf.json of the preset name. The caller owns the
// returned slice. An unknown name is an error that lists the presets.
func Get(name string) ([]byte, error) {
	if name != "" && !strings.ContainsAny(name, `/\.`) {
		if data, err := files.ReadFile(name + ext); err == nil {
			return data, nil
		}
	}
	if c, ok := suggest.Closest(name, Names()); ok {
		return nil, fmt.Errorf("%w %q (did you mean %q?): the presets are %s", ErrUnknown, name, c, strings.Join(Names(), ", "))
	}
	return nil, fmt.Errorf("%w %q: the presets are %s", ErrUnknown, name, strings.Join(Names(), ", "))
}

// published are the presets that are flannel's documented recipes, byte
// for byte; the others are flexhook's own.
var published = []string{"host-gw", "vxlan", "wireguard"}

// Published returns the names of the presets that are the published
// recipes, sorted.
func Published() []string { return slices.Clone(published) }

// dataShapes names the form of each preset's BackendData (see
// leases.Shapes): what its PreStartupCommand prints and its hooks read.
var dataShapes = map[string]string{
	"vxlan":          "mac", // cat /sys/class/net/flannel-vxlan/address
	"vxlan-prod":     "mac",
	"wireguard-prod": "wireguard-key",
	"wireguard":      "wireguard-key", // wg pubkey
	"host-gw":        "empty",         // no PreStartupCommand
	"host-gw-prod":   "empty",
}

// DataShape returns the name of the shape the BackendData of preset name
// has ("mac", "wireguard-key" or "empty"), or "" for an unknown name.
// flexhook refuses remote leases whose BackendData does not have it.
func DataShape(name string) string { return dataShapes[name] }
