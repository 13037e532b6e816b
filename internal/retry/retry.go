// Package retry holds what the daemon's retry loops share: a capped
// exponential backoff, a sleep that ends with its context, and a logger that
// reports a dependency's outage once per change of state instead of once
// per retry (thousands of calls retrying must not flood the log).
package retry

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Bounds of Next.
const (
	MinBackoff = 50 * time.Millisecond
	MaxBackoff = 2 * time.Second
)

// Next is the wait after one more failure, given the previous wait (0 for
// the first failure): MinBackoff, doubling, capped at MaxBackoff.
func Next(d time.Duration) time.Duration {
	if d < MinBackoff {
		return MinBackoff
	}
	if d *= 2; d > MaxBackoff {
		return MaxBackoff
	}
	return d
}

// Sleep waits d, or less when ctx ends; it reports whether the wait ran out.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 { // nothing to wait for: no timer (pacing loops that run late)
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Health logs a dependency's state changes once: the first error of an
// outage, and the first success after it.
type Health struct {
	name    string
	log     zerolog.Logger
	mu      sync.Mutex
	down    bool
	errs    int
	last    error
	outages atomic.Int64 // transitions to down, ever
}

// NewHealth tracks the dependency called name.
func NewHealth(name string, log zerolog.Logger) *Health {
	return &Health{name: name, log: log}
}

// Down records a failure.
func (h *Health) Down(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs++
	h.last = err
	if !h.down {
		h.down = true
		h.outages.Add(1)
		h.log.Error().Err(err).Str("dependency", h.name).Msg(h.name + " unavailable: retrying with backoff")
	}
}

// Up records a success.
func (h *Health) Up() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = nil
	if h.down {
		h.down = false
		h.log.Info().Str("dependency", h.name).Int("failed_tries", h.errs).Msg(h.name + " available again")
		h.errs = 0
	}
}

// IsDown reports whether the last recorded outcome was a failure.
func (h *Health) IsDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}

// Err is the failure of the last recorded outcome, nil after a success.
func (h *Health) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Outages counts the outages so far: a change tells a caller one happened.
func (h *Health) Outages() int64 { return h.outages.Load() }
