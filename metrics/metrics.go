// Package metrics is dialbridge's Prometheus side: an Observer of one cell's
// work (bridge.Observer) plus collectors that read the cell's and the AMI
// client's state at scrape time. Everything lives in its own registry, never
// the global one, so several cells (or tests) in one process do not collide.
//
// Metric names begin with dialbridge_; every series carries the label cell.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/multcall/dialbridge/bridge"
)

// Cell is what the metrics read from a running cell at scrape time.
type Cell interface {
	InFlight() int
	Threads() int
	RedisUp() bool
	Claiming() bool
}

// AMI is what the metrics read from the AMI client at scrape time.
type AMI interface {
	Ready() bool
	Reconnects() uint64
}

// Statuses are the result statuses whose counters exist from the start (at
// zero), so rate() and absent() work before the first call of each kind.
var Statuses = []bridge.Status{
	bridge.StatusAnswered, bridge.StatusBusy, bridge.StatusNoAnswer, bridge.StatusCongestion,
	bridge.StatusRejected, bridge.StatusInvalidNumber, bridge.StatusFailed, bridge.StatusAckTimeout,
	bridge.StatusInvalid, bridge.StatusDuplicate, bridge.StatusUnknown,
}

// Buckets of the latency histograms, in seconds.
var (
	// Claim → originate accepted: Redis round trips, Multcall's
	// confirmation (timeouts.command_ack, 5 s by default) and Asterisk's
	// Response.
	ClaimToOriginateBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// Originate → outcome: ring time, then talk time for answered calls.
	OriginateToOutcomeBuckets = []float64{.1, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600}
)

// Metrics implements bridge.Observer and serves the registry.
type Metrics struct {
	reg *prometheus.Registry

	claimed     prometheus.Counter
	retries     prometheus.Counter
	ackTimeouts prometheus.Counter
	results     *prometheus.CounterVec
	byStatus    map[bridge.Status]prometheus.Counter
	toOriginate prometheus.Histogram
	toOutcome   prometheus.Histogram
}

var _ bridge.Observer = (*Metrics)(nil)

// New builds the metrics of cell, reading c and a (either may be nil) at
// scrape time. The registry also holds the Go runtime and process collectors.
func New(cell string, c Cell, a AMI) *Metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"cell": cell}
	f := promauto{reg: reg}
	m := &Metrics{reg: reg, byStatus: map[bridge.Status]prometheus.Counter{}}

	m.claimed = f.counter(prometheus.CounterOpts{
		Name: "dialbridge_commands_claimed_total", ConstLabels: labels,
		Help: "Dial commands taken from the cell's dial list.",
	})
	m.retries = f.counter(prometheus.CounterOpts{
		Name: "dialbridge_originate_retries_total", ConstLabels: labels,
		Help: "Originate attempts made again after Asterisk refused one or AMI was down.",
	})
	m.ackTimeouts = f.counter(prometheus.CounterOpts{
		Name: "dialbridge_ack_timeouts_total", ConstLabels: labels,
		Help: "Commands not dialed because Multcall did not confirm our ACK in time.",
	})
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dialbridge_results_total", ConstLabels: labels,
		Help: "Results pushed, by status.",
	}, []string{"status"})
	reg.MustRegister(m.results)
	for _, s := range Statuses {
		m.byStatus[s] = m.results.WithLabelValues(string(s))
	}
	m.toOriginate = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dialbridge_claim_to_originate_seconds", ConstLabels: labels,
		Help:    "Time from claiming a command to Asterisk accepting its Originate.",
		Buckets: ClaimToOriginateBuckets,
	})
	m.toOutcome = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dialbridge_originate_to_outcome_seconds", ConstLabels: labels,
		Help:    "Time from the accepted Originate to the call's result (ring time, plus talk time when answered).",
		Buckets: OriginateToOutcomeBuckets,
	})
	reg.MustRegister(m.toOriginate, m.toOutcome)

	if c != nil {
		f.gauge("dialbridge_calls_in_progress", "Calls of the cell in progress (claimed, not yet settled).", labels,
			func() float64 { return float64(c.InFlight()) })
		f.gauge("dialbridge_threads", "Maximum calls of the cell in progress at once (queues[].threads).", labels,
			func() float64 { return float64(c.Threads()) })
		f.gauge("dialbridge_redis_up", "1 when the cell's last Redis step succeeded.", labels,
			func() float64 { return b2f(c.RedisUp()) })
		f.gauge("dialbridge_claiming", "1 while the cell takes new commands (Redis and AMI up, not stopping).", labels,
			func() float64 { return b2f(c.Claiming()) })
	}
	if a != nil {
		f.gauge("dialbridge_ami_up", "1 when the AMI client is connected and logged in.", labels,
			func() float64 { return b2f(a.Ready()) })
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dialbridge_ami_reconnects_total", ConstLabels: labels,
			Help: "AMI sessions logged in again after a lost connection.",
		}, func() float64 { return float64(a.Reconnects()) }))
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts its own errors
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Claimed implements bridge.Observer.
func (m *Metrics) Claimed() { m.claimed.Inc() }

// Originated implements bridge.Observer.
func (m *Metrics) Originated(sinceClaim time.Duration) { m.toOriginate.Observe(sinceClaim.Seconds()) }

// Retried implements bridge.Observer.
func (m *Metrics) Retried() { m.retries.Inc() }

// Finished implements bridge.Observer.
func (m *Metrics) Finished(status bridge.Status, sinceOriginate time.Duration) {
	c, ok := m.byStatus[status]
	if !ok { // a status added to the bridge later: still counted
		c = m.results.WithLabelValues(string(status))
	}
	c.Inc()
	if status == bridge.StatusAckTimeout {
		m.ackTimeouts.Inc()
	}
	if sinceOriginate > 0 {
		m.toOutcome.Observe(sinceOriginate.Seconds())
	}
}

type promauto struct{ reg *prometheus.Registry }

func (f promauto) counter(o prometheus.CounterOpts) prometheus.Counter {
	c := prometheus.NewCounter(o)
	f.reg.MustRegister(c)
	return c
}

func (f promauto) gauge(name, help string, labels prometheus.Labels, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, fn))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
