package main

import (
	"strconv"
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/metrics"
	"github.com/multcall/dialbridge/redisq"
)

// trunkHealth is /healthz's view of the breaker (contract section 7: 200
// with "trunk": "open" — the daemon itself is healthy).
func (d *daemon) trunkHealth() (string, time.Time) {
	st := d.trunk.BreakerState()
	return string(st.Mode), st.RetryAt()
}

// trunkBeat is what the heartbeat says of the trunk: its name, the host's
// breaker and this daemon's slots, so that other daemons and the monitor
// see it without asking the trunk's keys.
func (d *daemon) trunkBeat() []string {
	if d.trunk == nil {
		return nil
	}
	st := d.trunk.BreakerState()
	retry := ""
	if at := st.RetryAt(); !at.IsZero() {
		retry = bridge.FormatTime(at)
	}
	held := 0
	if g := d.trunk.Gate(); g != nil {
		held = g.Held()
	}
	return []string{
		"trunk", d.trunk.Name(),
		"trunk_breaker", string(st.Mode),
		"trunk_breaker_retry_at", retry,
		"trunk_channels_held", strconv.Itoa(held),
	}
}

// trunkSample is what the trunk's metrics read at scrape time.
func trunkSample(u *redisq.TrunkUse) metrics.TrunkSample {
	st := u.BreakerState()
	s := metrics.TrunkSample{Breaker: string(st.Mode), Failures: st.Failures}
	if g := u.Gate(); g != nil {
		s.Held, s.Waiting = g.Held(), g.Queued()
	}
	return s
}
