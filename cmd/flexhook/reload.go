package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/runner"
)

// reloadDebounce lets an editor's write, rename and chmod settle into one
// reload.
const reloadDebounce = 200 * time.Millisecond

// watchConfig reloads the running config on each signal from hup (SIGHUP,
// taken by the caller) and, for --config,
// whenever its file changes (fsnotify on its directory, so editors that
// replace the file by a rename are seen). A file that does not load or
// validate is refused with its error and the running config kept; so is a
// change of the network (a restart is needed). It returns when ctx is
// done; the returned func waits for that.
func watchConfig(ctx context.Context, eng *runner.Engine, path string, hup <-chan os.Signal, reload func() (*hooks.Config, error),
	m *metrics.Metrics, log *slog.Logger) (wait func()) {
	var events <-chan fsnotify.Event
	var w *fsnotify.Watcher
	if path != "" {
		var err error
		if w, err = fsnotify.NewWatcher(); err == nil {
			if err = w.Add(filepath.Dir(path)); err == nil {
				events = w.Events
			}
		}
		if err != nil {
			log.Warn("cannot watch the config file; reload with SIGHUP", "config", path, "error", err)
		}
	}
	apply := func(why string) {
		cfg, err := reload()
		if err != nil {
			m.Reloaded(time.Now(), false)
			log.Error("config reload refused; the running config is kept", "why", why, "error", err)
			return
		}
		changed, err := eng.Reload(cfg)
		if err != nil {
			m.Reloaded(time.Now(), false)
			log.Error("config reload refused", "why", why, "error", err)
			return
		}
		m.Reloaded(time.Now(), true)
		names := make([]string, len(changed))
		for i, k := range changed {
			names[i] = k.String()
		}
		log.Info("config reload accepted", "why", why, "changed_hooks", strings.Join(names, ","))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if w != nil {
			defer w.Close()
		}
		settle := time.NewTimer(time.Hour)
		settle.Stop()
		defer settle.Stop()
		base := filepath.Base(path)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				apply("SIGHUP")
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				if filepath.Base(ev.Name) == base && !ev.Has(fsnotify.Chmod) {
					settle.Reset(reloadDebounce)
				}
			case <-settle.C:
				if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
					continue // mid-rename, or removed: nothing to load
				}
				apply("config file changed")
			}
		}
	}()
	return wg.Wait
}
