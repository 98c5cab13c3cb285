package file

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flexhook/flexhook/internal/atomicfile"
	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// writeLease writes l with expiration now + TTL and returns it with the
// expiration as stored.
func (s *Store) writeLease(l leases.Lease) (leases.Lease, error) {
	b, err := leases.MarshalAttrs(l.Attrs)
	if err != nil {
		return leases.Lease{}, err
	}
	exp, err := writeAtomic(s.subnets, leases.SubnetKey(l.Subnet, l.IPv6Subnet), b, s.now().Add(s.ttl))
	if err != nil {
		return leases.Lease{}, err
	}
	l.Expiration = exp
	return l, nil
}

// writeAtomic replaces dir/name with data (mode 0600) through a temporary
// file whose name holds its creation time (see removeStaleTemps), with
// modification time mtime unless zero; it returns the time as stored.
func writeAtomic(dir, name string, data []byte, mtime time.Time) (time.Time, error) {
	return atomicfile.WriteIn(dir, name, tempPrefix+strconv.FormatInt(time.Now().UnixNano(), 10)+"-*", data, 0o600, mtime)
}

// removeStaleTemps removes temporary files older than staleTemp, left by
// writers that crashed between create and rename. Their age is in their
// name (their modification time may already be a lease expiration).
func (s *Store) removeStaleTemps(now time.Time) {
	des, err := os.ReadDir(s.subnets)
	if err != nil {
		return
	}
	for _, de := range des {
		rest, ok := strings.CutPrefix(de.Name(), tempPrefix)
		if !ok {
			continue
		}
		stamp, _, _ := strings.Cut(rest, "-")
		ns, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || now.Sub(time.Unix(0, ns)) < staleTemp {
			continue
		}
		if err := os.Remove(filepath.Join(s.subnets, de.Name())); err == nil {
			s.log.Info("removed stale temporary file", "file", de.Name())
		}
	}
}

// lock takes the exclusive allocation lock <dir>/.lock, polling with a
// non-blocking flock so that ctx is honoured. The returned func releases it.
func (s *Store) lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil { // it may have been wiped
		return nil, fmt.Errorf("lock: %w", err)
	}
	p := filepath.Join(s.dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	fd := int(f.Fd())
	// The lock is polled, so that ctx and Close can end the wait: 0.5ms
	// doubling to 20ms, with jitter so waiting processes spread out.
	b := retry.Backoff{Initial: 500 * time.Microsecond, Max: 20 * time.Millisecond,
		Jitter: func(d time.Duration) time.Duration { return d + rand.N(d) }}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close ends the wait too; the goroutine ends with lctx
		select {
		case <-s.done:
			cancel()
		case <-lctx.Done():
		}
	}()
	err = retry.Do(lctx, b, func(context.Context) error {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return retry.Permanent(fmt.Errorf("lock %s: %w", p, err))
		}
		return err
	}, nil)
	switch {
	case err == nil:
		return func() {
			_ = syscall.Flock(fd, syscall.LOCK_UN)
			f.Close()
		}, nil
	case ctx.Err() != nil:
		err = fmt.Errorf("lock %s: %w", p, ctx.Err())
	case lctx.Err() != nil:
		err = ErrClosed
	}
	f.Close()
	return nil, err
}
