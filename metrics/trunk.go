package metrics

import "github.com/prometheus/client_golang/prometheus"

// TrunkSample is what a cell's trunk gauges read at scrape time (contract
// section 7).
type TrunkSample struct {
	Breaker  string // closed, open or half_open: the host's breaker
	Failures int    // consecutive failures the breaker counts
	Held     int    // channel slots this daemon holds
	Waiting  int    // calls of this daemon waiting for a token or a slot
}

// BreakerStates are the values TrunkSample.Breaker takes; each gets its own
// series of dialbridge_trunk_breaker_state, 1 for the current one.
var BreakerStates = []string{"closed", "open", "half_open"}

// AddTrunk registers the gauges of the cell's trunk: the host's breaker and
// this daemon's use of the trunk, read from sample at scrape time.
func (m *Metrics) AddTrunk(cell, trunk string, sample func() TrunkSample) {
	f := promauto{reg: m.reg}
	for _, state := range BreakerStates {
		f.gauge("dialbridge_trunk_breaker_state",
			"1 for the state the host's breaker on the cell's trunk is in (closed, open, half_open).",
			prometheus.Labels{"cell": cell, "trunk": trunk, "state": state},
			func() float64 { return b2f(sample().Breaker == state) })
	}
	labels := prometheus.Labels{"cell": cell, "trunk": trunk}
	f.gauge("dialbridge_trunk_breaker_failures", "Consecutive trunk failures the host's breaker counts.", labels,
		func() float64 { return float64(sample().Failures) })
	f.gauge("dialbridge_trunk_channels_held", "Trunk channel slots this daemon holds (calls from Originate to result).", labels,
		func() float64 { return float64(sample().Held) })
	f.gauge("dialbridge_trunk_waiting", "Calls of this daemon waiting for a trunk token or channel slot.", labels,
		func() float64 { return float64(sample().Waiting) })
}
