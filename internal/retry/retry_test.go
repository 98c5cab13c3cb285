package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/retry"
)

// instant is a clock that fires at once and records the waits asked for.
func instant(waits *[]time.Duration) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		*waits = append(*waits, d)
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
}

func TestDelay(t *testing.T) {
	b := retry.Backoff{Initial: 10, Max: 100}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{1, 10}, {2, 20}, {3, 40}, {4, 80}, {5, 100}, {60, 100}} {
		assert.Equal(t, tc.want, b.Delay(tc.attempt), "attempt %d", tc.attempt)
	}
}

func TestSequence(t *testing.T) {
	s := retry.Sequence{Backoff: retry.Backoff{Initial: time.Second, Max: 3 * time.Second}}
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, []time.Duration{s.Next(), s.Next(), s.Next()})
	s.Reset()
	assert.Equal(t, time.Second, s.Next())
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	var waits []time.Duration
	b := retry.Backoff{Initial: time.Second, Max: 4 * time.Second, After: instant(&waits)}
	calls := 0
	var retried []string
	err := retry.Do(t.Context(), b, func(context.Context) error {
		calls++
		if calls < 5 {
			return fmt.Errorf("try %d", calls)
		}
		return nil
	}, func(attempt int, err error, wait time.Duration) {
		retried = append(retried, fmt.Sprintf("%d %v %v", attempt, err, wait))
	})
	require.NoError(t, err)
	assert.Equal(t, 5, calls)
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}, waits)
	assert.Equal(t, []string{"1 try 1 1s", "2 try 2 2s", "3 try 3 4s", "4 try 4 4s"}, retried)
}

func TestDoStops(t *testing.T) {
	var waits []time.Duration
	b := retry.Backoff{Initial: time.Second, Max: time.Second, After: instant(&waits)}
	boom := errors.New("boom")
	err := retry.Do(t.Context(), b, func(context.Context) error { return retry.Permanent(boom) }, nil)
	require.ErrorIs(t, err, boom)
	assert.Empty(t, waits, "a permanent error is not retried")

	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err = retry.Do(ctx, retry.Backoff{Initial: time.Hour, Max: time.Hour}, func(context.Context) error {
		calls++
		cancel()
		return boom
	}, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, boom, "the last error is kept")
	assert.Equal(t, 1, calls)
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, retry.Sleep(ctx, time.Hour), context.Canceled)
	require.NoError(t, retry.Sleep(t.Context(), time.Millisecond))
}

func TestDoAttemptsJitterProgress(t *testing.T) {
	var waits []time.Duration
	boom := errors.New("boom")
	b := retry.Backoff{Initial: 10, Max: 1000, Attempts: 3, After: instant(&waits),
		Jitter: func(d time.Duration) time.Duration { return d / 2 }}
	calls := 0
	err := retry.Do(t.Context(), b, func(context.Context) error { calls++; return boom }, nil)
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 3, calls, "Attempts bounds the calls")
	assert.Equal(t, []time.Duration{5, 10}, waits, "the jitter turns each delay into the wait")

	waits, calls = nil, 0
	b = retry.Backoff{Initial: 10, Max: 1000, After: instant(&waits)}
	var errs []string
	err = retry.Do(t.Context(), b, func(context.Context) error {
		calls++
		switch calls {
		case 3:
			return retry.Progress(fmt.Errorf("ran a while, then %w", boom))
		case 5:
			return nil
		}
		return boom
	}, func(_ int, err error, _ time.Duration) { errs = append(errs, err.Error()) })
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{10, 20, 10, 20}, waits, "Progress starts the backoff over")
	assert.Equal(t, "ran a while, then boom", errs[2], "onRetry sees the error inside Progress")
}
