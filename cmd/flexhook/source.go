package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner"
)

// sourceKind is where a network config comes from.
type sourceKind int

const (
	fromFile    sourceKind = iota + 1 // --config FILE
	fromPreset                        // --preset NAME
	fromNetConf                       // kube-flannel's net-conf.json (--kube-subnet-mgr)
	fromStore                         // the store's own: etcd's <prefix>/config, the file store's <dir>/config
)

// configSource is where a command's network config comes from, picked
// once from the flags; run, reload, leases, dry-run, check, lab and
// verify read it through Load, and run watches it with Watch.
type configSource struct {
	kind  sourceKind
	name  string       // the file, the preset, or the store's config key
	store leases.Store // fromStore: the store, once open (bind)
}

// sourceOf picks the source: --config or --preset (exclusive), else
// net-conf.json in kube mode, else the store's own config.
func sourceOf(src SourceFlags, s StoreFlags) (*configSource, error) {
	switch {
	case src.Config != "" && src.Preset != "":
		return nil, usageErrorf("--config and --preset are exclusive (FLEXHOOK_CONFIG and FLEXHOOK_PRESET count as the flags: give one)")
	case src.Config != "":
		return &configSource{kind: fromFile, name: src.Config}, nil
	case src.Preset != "":
		return &configSource{kind: fromPreset, name: src.Preset}, nil
	case s.KubeSubnetMgr:
		return &configSource{kind: fromNetConf, name: s.NetConfigPath}, nil
	case s.useEtcd():
		return &configSource{kind: fromStore, name: strings.TrimSuffix(s.EtcdPrefix, "/") + "/config"}, nil
	}
	return &configSource{kind: fromStore, name: filepath.Join(s.Store, "config")}, nil
}

// requireSource is the source of a command that needs --config or
// --preset (check, dry-run), loaded.
func requireSource(ctx context.Context, src SourceFlags) (*hooks.Config, string, error) {
	cs, err := sourceOf(src, StoreFlags{})
	if err != nil {
		return nil, "", err
	}
	if cs.kind != fromFile && cs.kind != fromPreset {
		return nil, "", usageErrorf("one of --config FILE or --preset NAME is required")
	}
	return cs.Load(ctx)
}

// given reports whether the flags named the config (file or preset).
func (c *configSource) given() bool { return c.kind == fromFile || c.kind == fromPreset }

// bind gives a fromStore source its store, once open.
func (c *configSource) bind(store leases.Store) { c.store = store }

// Load reads and checks the config, and names it for messages (the
// path, the preset, the store's key). A fromStore source not bound yet
// returns (nil, "", nil): the store is opened after the other sources are
// read, since how it opens may depend on the config.
func (c *configSource) Load(ctx context.Context) (*hooks.Config, string, error) {
	switch c.kind {
	case fromFile, fromNetConf:
		cfg, err := hooks.Load(c.name)
		if err != nil {
			return nil, "", configError(err)
		}
		return cfg, c.name, nil
	case fromPreset:
		raw, err := presets.Get(c.name)
		if err != nil {
			return nil, "", usageErrorf("%v", err)
		}
		cfg, err := hooks.Parse(raw)
		if err != nil {
			return nil, "", configError(fmt.Errorf("preset %s: %w", c.name, err))
		}
		return cfg, c.name, nil
	}
	if c.store == nil {
		return nil, "", nil
	}
	cs, ok := leases.As[leases.ConfigStore](c.store)
	if !ok {
		return nil, "", usageErrorf("run: one of --config FILE or --preset NAME is required")
	}
	raw, err := cs.Config(ctx)
	if errors.Is(err, leases.ErrNotFound) {
		return nil, "", usageErrorf("run: no --config or --preset given and the store has no config (%s)", c.name)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", c.name, err)
	}
	cfg, err := hooks.Parse(raw)
	if err != nil {
		return nil, "", configError(fmt.Errorf("%s: %w", c.name, err))
	}
	return cfg, c.name, nil
}

// Watch reloads eng's config from the source until ctx is done: on
// SIGHUP (hup), and when the file changes (--config, net-conf.json). The
// returned function waits for the watcher to stop.
func (c *configSource) Watch(ctx context.Context, eng *runner.Engine, hup <-chan os.Signal, m *metrics.Metrics, log *slog.Logger) (wait func()) {
	watched := ""
	if c.kind == fromFile || c.kind == fromNetConf {
		watched = c.name
	}
	return watchConfig(ctx, eng, watched, hup, func() (*hooks.Config, error) {
		cfg, _, err := c.Load(ctx)
		return cfg, err
	}, m, log)
}
