package leases

import "sync"

// Warm hands what a store's Acquire just read (every lease) to the
// store's first Watch, once, so that Watch need not read it all again.
// Once a Watch has taken it, nothing more is kept: it would only hold
// every lease twice. Safe for concurrent use; the zero value is ready.
type Warm[T any] struct {
	mu    sync.Mutex
	v     T
	has   bool
	taken bool
}

// Wanted reports whether a Keep now would still reach a Watch (so a
// read may skip making what it would keep).
func (w *Warm[T]) Wanted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.taken
}

// Keep keeps v for the first Watch, in place of what was kept before,
// unless a Watch has taken already.
func (w *Warm[T]) Keep(v T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.taken {
		w.v, w.has = v, true
	}
}

// Take returns what was kept (ok false when nothing was) and keeps
// nothing from then on.
func (w *Warm[T]) Take() (v T, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok = w.v, w.has
	var zero T
	w.v, w.has, w.taken = zero, false, true
	return v, ok
}
