package hooks_test

import (
	"errors"
	"testing"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/presets"
)

// FuzzParse feeds arbitrary bytes to the config parser and the lint: no
// panic; an error is a *hooks.Error naming a field or a line:col; a config
// that parses has a valid subnet range and lints without panicking.
func FuzzParse(f *testing.F) {
	for _, name := range presets.Names() {
		raw, err := presets.Get(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	for _, s := range []string{
		`{"Network":"10.50.0.0/16","Backend":{"Type":"extension","SubnetAddCommand":"read X; eval \"$X\""}}`,
		`{"Network":"10.50.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"extension"}}`,
		`{"Network":"10.50.0.0/30","SubnetLen":32,"Backend":{"Type":"extension"}}`,
		`{"Network":"10.50.0.0/16","Backend":{"Type":"extension","PreStartupCommand":"echo 'unterminated"}}`,
		`{"Network":"10.50.0.0/16","Backend":{"Type":"vxlan"}}`,
		`{"Network": 5}`, `[`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := hooks.Parse(data)
		if err != nil {
			var he *hooks.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not a *hooks.Error", err, err)
			}
			if he.Field == "" && he.Line == 0 && he.File == "" {
				t.Fatalf("error %q names no place", err)
			}
			return
		}
		if cfg.SubnetLen < cfg.Network.Bits() || cfg.SubnetLen > 32 || !cfg.Network.Contains(cfg.SubnetMin) || !cfg.Network.Contains(cfg.SubnetMax) {
			t.Fatalf("parsed an invalid range: %+v", cfg)
		}
		for _, w := range hooks.Lint(cfg) {
			_ = w.String()
		}
	})
}
