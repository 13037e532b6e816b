package metrics

import "github.com/prometheus/client_golang/prometheus"

// PacingSample is what a paced cell's metrics read at scrape time.
type PacingSample struct {
	Budget   int // -1: no usable budget
	Dialing  int // calls of the cell dialing (every daemon)
	Held     int // slots this daemon holds
	Nothing  bool
	Leader   bool // this daemon paces the cell; the fields below are its
	Level    float64
	Avail    int
	Busy     int
	Ringing  int
	Waiting  int
	Answer   float64
	AbWindow float64
	AbDay    float64
	Hard     bool
}

// AddPacing registers the pacing gauges of a paced cell (contract section
// 6), read from sample at scrape time. The operator counts and rates come
// from the daemon that paces the cell (dialbridge_pacing_leader 1); the
// others report them as 0.
func (m *Metrics) AddPacing(cell string, sample func() PacingSample) {
	labels := prometheus.Labels{"cell": cell}
	f := promauto{reg: m.reg}
	g := func(name, help string, fn func(PacingSample) float64) {
		f.gauge(name, help, labels, func() float64 { return fn(sample()) })
	}
	g("dialbridge_pacing_budget", "Calls the cell may have dialing now (-1: no usable budget).", func(s PacingSample) float64 { return float64(s.Budget) })
	g("dialbridge_pacing_dialing", "Calls of the cell dialing (claimed, not answered or settled), every daemon.", func(s PacingSample) float64 { return float64(s.Dialing) })
	g("dialbridge_pacing_held", "Budget slots this daemon holds.", func(s PacingSample) float64 { return float64(s.Held) })
	g("dialbridge_pacing_dials_nothing", "1 while the paced cell dials nothing (no queue manager, no operator, stale or unreadable state).", func(s PacingSample) float64 { return b2f(s.Nothing) })
	g("dialbridge_pacing_leader", "1 when this daemon paces the cell.", func(s PacingSample) float64 { return b2f(s.Leader) })
	g("dialbridge_pacing_level", "Calls dialing per logged-in operator the budget amounts to.", func(s PacingSample) float64 { return s.Level })
	g("dialbridge_pacing_operators_available", "Operators available.", func(s PacingSample) float64 { return float64(s.Avail) })
	g("dialbridge_pacing_operators_busy", "Operators busy.", func(s PacingSample) float64 { return float64(s.Busy) })
	g("dialbridge_pacing_operators_ringing", "Operators ringing.", func(s PacingSample) float64 { return float64(s.Ringing) })
	g("dialbridge_pacing_waiting", "Answered calls waiting for an operator.", func(s PacingSample) float64 { return float64(s.Waiting) })
	g("dialbridge_pacing_answer_rate", "Measured answer rate (answered ÷ attempts ended).", func(s PacingSample) float64 { return s.Answer })
	g("dialbridge_pacing_abandon_rate_window", "Abandon rate over pacing.window.", func(s PacingSample) float64 { return s.AbWindow })
	g("dialbridge_pacing_abandon_rate_day", "Abandon rate over the day (pacing.timezone).", func(s PacingSample) float64 { return s.AbDay })
	g("dialbridge_pacing_hard_limit", "1 while the abandon rate is at max_abandon and predictive dials as progressive.", func(s PacingSample) float64 { return b2f(s.Hard) })
}
