package main

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/multcall/dialbridge/bridge"
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

// registerTrunkMetrics exports the trunk's breaker and this daemon's use of
// the trunk, read at scrape time.
func registerTrunkMetrics(reg *prometheus.Registry, cell string, u *redisq.TrunkUse) {
	labels := prometheus.Labels{"cell": cell, "trunk": u.Name()}
	gauge := func(name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, fn))
	}
	for _, mode := range []bridge.BreakerMode{bridge.BreakerClosed, bridge.BreakerOpen, bridge.BreakerHalfOpen} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "dialbridge_trunk_breaker_state",
			Help:        "1 for the state the host's breaker on the cell's trunk is in (closed, open, half_open).",
			ConstLabels: prometheus.Labels{"cell": cell, "trunk": u.Name(), "state": string(mode)},
		}, func() float64 { return b2f(u.BreakerState().Mode == mode) }))
	}
	gauge("dialbridge_trunk_breaker_failures", "Consecutive trunk failures the host's breaker counts.",
		func() float64 { return float64(u.BreakerState().Failures) })
	if g := u.Gate(); g != nil {
		gauge("dialbridge_trunk_channels_held", "Trunk channel slots this daemon holds (calls from Originate to result).",
			func() float64 { return float64(g.Held()) })
		gauge("dialbridge_trunk_waiting", "Calls of this daemon waiting for a trunk token or channel slot.",
			func() float64 { return float64(g.Queued()) })
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
