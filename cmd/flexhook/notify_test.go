package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
)

// fakeHealth is ready once readyAt calls have been made, healthy while
// healthy is set; it counts the Healthy calls and the true answers.
type fakeHealth struct {
	calls, readyAt    atomic.Int32
	asked, saidHealth atomic.Int32
	healthy           atomic.Bool
}

func (f *fakeHealth) Ready(time.Time) (bool, string) {
	if f.calls.Add(1) >= f.readyAt.Load() {
		return true, "ok"
	}
	return false, "the first snapshot of the lease store is not applied yet"
}

func (f *fakeHealth) Healthy(time.Time) (bool, string) {
	ok := f.healthy.Load()
	if ok {
		f.saidHealth.Add(1)
	}
	f.asked.Add(1)
	return ok, ""
}

// listenNotify is systemd's end of NOTIFY_SOCKET: the datagrams sent to it.
func listenNotify(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func next(t *testing.T, got <-chan string) string {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
		return ""
	}
}

// Under Type=notify: STATUS says why not ready, READY=1 comes once, and
// WATCHDOG=1 exactly as often as the engine was found healthy (none once
// it is stuck); a log line says ready.
func TestNotifier(t *testing.T) {
	got := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	h := &fakeHealth{}
	h.readyAt.Store(3)
	h.healthy.Store(true)
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); notifier(ctx, h, log) }()

	var msgs []string
	for !slices.Contains(msgs, "READY=1\nSTATUS=ready") {
		msgs = append(msgs, next(t, got))
	}
	assert.Equal(t, "STATUS=not ready: the first snapshot of the lease store is not applied yet", msgs[0])
	// Stuck: the engine makes no progress, so no more pets (systemd
	// restarts the daemon after WatchdogSec).
	h.healthy.Store(false)
	k := h.asked.Load()
	require.Eventually(t, func() bool { return h.asked.Load() >= k+3 }, 10*time.Second, 10*time.Millisecond,
		"the notifier asks on while stuck")
	cancel()
	<-done
	for len(got) > 0 {
		msgs = append(msgs, <-got)
	}
	pets, readies := 0, 0
	for _, m := range msgs {
		switch m {
		case "WATCHDOG=1":
			pets++
		case "READY=1\nSTATUS=ready":
			readies++
		}
	}
	assert.Equal(t, 1, readies, "READY=1 once: %q", msgs)
	assert.Equal(t, int(h.saidHealth.Load()), pets, "a pet for each healthy answer, none else: %q", msgs)
	assert.Positive(t, pets)
	assert.Contains(t, logs.String(), `msg="ready: PostStartupCommand done, the store's leases applied"`)
}

// Without a watchdog the notifier ends once it said ready.
func TestNotifierEndsWhenReady(t *testing.T) {
	got := listenNotify(t)
	h := &fakeHealth{}
	h.readyAt.Store(1)
	done := make(chan struct{})
	go func() { defer close(done); notifier(context.Background(), h, slog.New(slog.DiscardHandler)) }()
	assert.Equal(t, "READY=1\nSTATUS=ready", next(t, got))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the notifier runs on with nothing to do")
	}
}
