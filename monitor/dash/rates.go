package dash

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// sample is one refresh's counters of a cell.
type sample struct {
	at    time.Time
	stats map[string]int64
	dial  int64
}

// History keeps a cell's recent samples: the rates are the counters'
// deltas between refreshes, the sparkline the dial depths.
type History struct {
	samples []sample // oldest first, at most maxAge old
	maxAge  time.Duration
	spark   []int64 // dial depth, one per refresh, newest last
	sparkN  int
}

// NewHistory keeps a minute (and a bit) of samples and sparkN depths.
func NewHistory(sparkN int) *History {
	if sparkN <= 0 {
		sparkN = 40
	}
	return &History{maxAge: 70 * time.Second, sparkN: sparkN}
}

// Add records a cell's refresh (cells with an error are not recorded).
func (h *History) Add(at time.Time, c *Cell) {
	if c.Err != "" {
		return
	}
	h.samples = append(h.samples, sample{at: at, stats: c.Stats, dial: c.Dial})
	i := 0
	for i < len(h.samples)-1 && at.Sub(h.samples[i].at) > h.maxAge {
		i++
	}
	h.samples = h.samples[i:]
	h.spark = append(h.spark, c.Dial)
	if len(h.spark) > h.sparkN {
		h.spark = h.spark[len(h.spark)-h.sparkN:]
	}
}

// Rates are a cell's recent throughput.
type Rates struct {
	// Calls per second (results pushed) over the last 10 s and minute; the
	// windows are shorter while the monitor has been running less long.
	Per10s  float64 `json:"calls_per_s_10s"`
	PerMin  float64 `json:"calls_per_s_1m"`
	Claimed float64 `json:"claimed_per_s_10s"`
	// Mix is each status's share of the results of the last minute.
	Mix    map[string]int64 `json:"mix_1m"`
	MixAll int64            `json:"mix_1m_total"`
	Window time.Duration    `json:"-"`
	// Have10s, HaveMin: the windows have two samples (one read has none).
	Have10s bool `json:"-"`
	HaveMin bool `json:"-"`
}

// base is the oldest sample at most w before the newest.
func (h *History) base(w time.Duration) (old, cur sample, ok bool) {
	if len(h.samples) < 2 {
		return sample{}, sample{}, false
	}
	cur = h.samples[len(h.samples)-1]
	for _, s := range h.samples {
		if cur.at.Sub(s.at) <= w+w/20 {
			return s, cur, s.at.Before(cur.at)
		}
	}
	return sample{}, sample{}, false
}

// Rates derives the rates from the samples.
func (h *History) Rates() Rates {
	r := Rates{Mix: map[string]int64{}}
	if old, cur, ok := h.base(10 * time.Second); ok {
		d := cur.at.Sub(old.at).Seconds()
		r.Per10s = delta(cur, old, "results") / d
		r.Claimed = delta(cur, old, "claimed") / d
		r.Have10s = true
	}
	if old, cur, ok := h.base(time.Minute); ok {
		d := cur.at.Sub(old.at).Seconds()
		r.PerMin = delta(cur, old, "results") / d
		r.Window = cur.at.Sub(old.at)
		r.HaveMin = true
		for _, st := range bridge.AllStatuses {
			if n := int64(delta(cur, old, string(st))); n > 0 {
				r.Mix[string(st)] = n
				r.MixAll += n
			}
		}
	}
	return r
}

func delta(cur, old sample, f string) float64 {
	d := cur.stats[f] - old.stats[f]
	if d < 0 { // counters reset (stats deleted): count from zero
		d = cur.stats[f]
	}
	return float64(d)
}

// Spark is the dial depths, newest last.
func (h *History) Spark() []int64 { return h.spark }

var sparkRunes = []rune("▁▂▃▄▅▆▇█")

// Sparkline draws vs scaled to their maximum, at most width runes (the newest).
func Sparkline(vs []int64, width int) string {
	if len(vs) > width {
		vs = vs[len(vs)-width:]
	}
	var hi int64
	for _, v := range vs {
		hi = max(hi, v)
	}
	var b strings.Builder
	for _, v := range vs {
		i := 0
		if hi > 0 {
			i = int(v * int64(len(sparkRunes)-1) / hi)
		}
		b.WriteRune(sparkRunes[i])
	}
	return b.String()
}
