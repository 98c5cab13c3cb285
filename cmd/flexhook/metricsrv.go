package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/flexhook/flexhook/internal/metrics"
)

// metricsAddr is where /metrics, /healthz and /readyz are served:
// --metrics-addr, or flanneld's --healthz-ip and --healthz-port; "" for
// off.
func metricsAddr(f runFlags) string {
	if f.MetricsAddr != "" {
		return f.MetricsAddr
	}
	if f.HealthzPort > 0 {
		return net.JoinHostPort(f.HealthzIP, strconv.Itoa(f.HealthzPort))
	}
	return ""
}

// serveMetrics listens on addr (nothing for "") and serves m there until
// the returned stop is called. A port that cannot be had is an error at
// once, before anything runs.
func serveMetrics(ctx context.Context, addr string, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, usageErrorf("--metrics-addr: %v", err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", addr, "error", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", l.Addr().String())
	return func() {
		// ctx is done by now (SIGTERM): the shutdown gets its own bound.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
