package main

import (
	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/presets"
)

// dataShape decides the shape remote BackendData must have: the
// operator's --backend-data-pattern first; else the shape of the preset
// run (--preset), or of the preset whose five hooks a --config file
// repeats word for word (an operator's copy of the vxlan recipe with
// another Network is still the vxlan recipe); else none (nil), and only
// the rules every BackendData meets apply. It names where the shape came
// from for the log.
func dataShape(pattern, preset string, cfg *hooks.Config) (*leases.Shape, string, error) {
	if pattern != "" {
		s, err := leases.PatternShape(pattern)
		if err != nil {
			return nil, "", usageErrorf("--backend-data-pattern: %v", err)
		}
		return s, "--backend-data-pattern", nil
	}
	if preset == "" && cfg != nil {
		preset = presetOf(cfg)
	}
	if name := presets.DataShape(preset); name != "" {
		return leases.Shapes[name], "preset " + preset, nil
	}
	return nil, "", nil
}

// presetOf returns the preset whose hooks cfg has, or "".
func presetOf(cfg *hooks.Config) string {
	for _, name := range presets.Names() {
		raw, err := presets.Get(name)
		if err != nil {
			continue
		}
		p, err := hooks.Parse(raw)
		if err != nil {
			continue // cannot happen: a test parses every preset
		}
		same := true
		for _, k := range hooks.Kinds {
			if p.Backend.Hook(k).Source != cfg.Backend.Hook(k).Source {
				same = false
			}
		}
		if same {
			return name
		}
	}
	return ""
}
