package main

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// health is what the notifier asks: *metrics.Metrics answers it.
type health interface {
	Ready(now time.Time) (bool, string)
	Healthy(now time.Time) (bool, string)
}

// notifyEvery is how often the notifier looks for readiness.
const notifyEvery = 200 * time.Millisecond

// notifier says once that the node is ready (a log line, and READY=1 to
// systemd when it started flexhook with Type=notify, NOTIFY_SOCKET set),
// telling systemd why not yet in STATUS= meanwhile; with WatchdogSec=, it
// then pets the watchdog (WATCHDOG=1) at half the interval while the
// engine makes progress (the /healthz rule), so a stuck daemon is
// restarted. It returns when ctx is done, or once ready when there is no
// watchdog to pet.
func notifier(ctx context.Context, h health, log *slog.Logger) {
	watchdog, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: bad WATCHDOG_USEC; not petting it", "error", err)
	}
	every := notifyEvery
	if watchdog > 0 {
		every = min(every, watchdog/2)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	ready, lastWhy := false, ""
	for {
		now := time.Now()
		if !ready {
			ok, why := h.Ready(now)
			switch {
			case ok:
				ready = true
				log.Info("ready: PostStartupCommand done, the store's leases applied")
				notify(log, "READY=1\nSTATUS=ready")
			case why != lastWhy:
				lastWhy = why
				notify(log, "STATUS=not ready: "+why)
			}
		}
		if watchdog > 0 {
			if ok, _ := h.Healthy(now); ok {
				notify(log, "WATCHDOG=1")
			}
		} else if ready {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// notify sends state to systemd's NOTIFY_SOCKET, if there is one.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "error", err)
	}
}
