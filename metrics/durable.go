package metrics

import "github.com/prometheus/client_golang/prometheus"

// DurableSample is what the replica gauges read at scrape time
// (redis.wait_replicas, contract section 2 "Durability").
type DurableSample struct {
	Holding bool // the last WAIT fell short: nothing is claimed
	Held    int  // results pushed and not yet acknowledged by the replicas
}

// AddDurable registers the replica gauges of a daemon with
// redis.wait_replicas ≥ 1, read from sample at scrape time.
func (m *Metrics) AddDurable(cell string, sample func() DurableSample) {
	labels := prometheus.Labels{"cell": cell}
	f := promauto{reg: m.reg}
	f.gauge("dialbridge_replicas_holding", "1 while the replicas do not acknowledge (redis.wait_replicas): nothing is claimed.", labels,
		func() float64 { return b2f(sample().Holding) })
	f.gauge("dialbridge_results_unacknowledged", "Results pushed and held in memory until the replicas acknowledge them.", labels,
		func() float64 { return float64(sample().Held) })
}
