package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/presets"
)

// loadSource loads the config named by --config or --preset and returns it
// with a name for messages (the file path or the preset name). Neither
// given returns (nil, "", nil): the caller decides whether that is allowed.
func loadSource(src SourceFlags) (*hooks.Config, string, error) {
	switch {
	case src.Config != "" && src.Preset != "":
		return nil, "", usageErrorf("--config and --preset are exclusive")
	case src.Config != "":
		cfg, err := hooks.Load(src.Config)
		if err != nil {
			return nil, "", configError(err)
		}
		return cfg, src.Config, nil
	case src.Preset != "":
		raw, err := presets.Get(src.Preset)
		if err != nil {
			return nil, "", usageErrorf("%v", err)
		}
		cfg, err := hooks.Parse(raw)
		if err != nil {
			return nil, "", configError(fmt.Errorf("preset %s: %w", src.Preset, err))
		}
		return cfg, src.Preset, nil
	}
	return nil, "", nil
}

// requireSource is loadSource where one of --config and --preset is needed.
func requireSource(src SourceFlags) (*hooks.Config, string, error) {
	cfg, name, err := loadSource(src)
	if err == nil && cfg == nil {
		err = usageErrorf("one of --config FILE or --preset NAME is required")
	}
	return cfg, name, err
}

const checkSynopsis = "flexhook check (--config FILE | --preset NAME)"

// cmdCheck validates a config (JSON, fields, every hook's shell syntax)
// without running anything: `ok: NAME` and lint warnings, or the error.
// A lint error (lease data run as code, a builtin the interpreter lacks)
// fails the check with exit 2 after the lint lines.
func cmdCheck(_ context.Context, args []string, stdout, _ io.Writer) error {
	var f checkFlags
	if err := parseFlags("check", &f, checkSynopsis, args, stdout); err != nil {
		return err
	}
	cfg, name, err := requireSource(f.SourceFlags)
	if err != nil {
		return err
	}
	ws := hooks.Lint(cfg)
	errs := 0
	for _, w := range ws {
		if w.Severity == hooks.SeverityError {
			errs++
		}
	}
	if errs == 0 {
		fmt.Fprintf(stdout, "ok: %s\n", name)
	}
	for _, w := range ws {
		fmt.Fprintf(stdout, "lint: %s\n", w.String())
	}
	if errs > 0 {
		return configError(fmt.Errorf("%s: %d lint error(s): the hooks would fail or run lease data as code", name, errs))
	}
	return nil
}
