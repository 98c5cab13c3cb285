package file

import (
	"sync"
	"time"
)

// storeClock is the store's clock: the wall clock as it was at New,
// moved on by the monotonic clock, so that a step of the wall clock (NTP,
// an operator) neither expires every lease at once nor keeps one forever.
type storeClock struct {
	wall   func() time.Time
	mono   func() time.Duration // time since New
	start  time.Time
	grace  time.Duration
	clkMu  sync.Mutex
	far    map[string]farSeen // files whose mtime was more than a TTL ahead
	stepAt time.Duration      // the wall-clock offset last reported
}

// farSeen is a lease file whose mtime lies more than a TTL in the future:
// its expiration counts from when the store first saw that mtime.
type farSeen struct {
	mtime time.Time
	first time.Time
}

// now is the store's clock: the wall clock at New plus the monotonic time
// since. It notes (once per change) when the wall clock has stepped away
// from it.
func (s *Store) now() time.Time {
	now := s.clock.start.Add(s.clock.mono())
	off := s.clock.wall().Sub(now).Round(time.Second)
	s.clock.clkMu.Lock()
	report := (off > time.Minute || off < -time.Minute) && (off-s.clock.stepAt > time.Minute || s.clock.stepAt-off > time.Minute)
	if report {
		s.clock.stepAt = off
	}
	s.clock.clkMu.Unlock()
	if report {
		s.log.Warn("the wall clock stepped; lease expirations keep to the clock as it ran since the start",
			"offset", off.String())
	}
	return now
}

// expiration is a lease file's expiration: its mtime, unless that lies
// more than a TTL ahead (a writer's clock far off, or a hostile file),
// then a TTL after the store first saw that mtime.
func (s *Store) expiration(name string, mtime, now time.Time) time.Time {
	s.clock.clkMu.Lock()
	defer s.clock.clkMu.Unlock()
	if !mtime.After(now.Add(s.ttl + time.Minute)) {
		delete(s.clock.far, name)
		return mtime
	}
	f, ok := s.clock.far[name]
	if !ok || !f.mtime.Equal(mtime) {
		f = farSeen{mtime: mtime, first: now}
		s.clock.far[name] = f
	}
	return f.first.Add(s.ttl)
}
