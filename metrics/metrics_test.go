package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/multcall/dialbridge/bridge"
)

type cell struct{}

func (cell) InFlight() int  { return 3 }
func (cell) Threads() int   { return 50 }
func (cell) RedisUp() bool  { return true }
func (cell) Claiming() bool { return false }

type amiState struct{}

func (amiState) Ready() bool        { return true }
func (amiState) Reconnects() uint64 { return 7 }

// Scrape fetches h and parses the text format.
func Scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d", rec.Code)
	}
	return Parse(t, rec.Body)
}

// Parse parses the Prometheus text format.
func Parse(t testing.TB, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// Value is the value of the series of name whose labels include want.
func Value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	m := New("101", cell{}, amiState{})
	var wg sync.WaitGroup
	for range 10 { // concurrent use, as on the call path
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Claimed()
			m.Originated(30 * time.Millisecond)
			m.Retried()
			m.Finished(bridge.StatusAnswered, 2*time.Second)
			m.Finished(bridge.StatusAckTimeout, 0)
		}()
	}
	wg.Wait()
	m.Finished("brand_new", 0)

	fams := Scrape(t, m.Handler())
	c := map[string]string{"cell": "101"}
	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dialbridge_commands_claimed_total", c, 10},
		{"dialbridge_originate_retries_total", c, 10},
		{"dialbridge_ack_timeouts_total", c, 10},
		{"dialbridge_results_total", map[string]string{"cell": "101", "status": "answered"}, 10},
		{"dialbridge_results_total", map[string]string{"cell": "101", "status": "ack_timeout"}, 10},
		{"dialbridge_results_total", map[string]string{"cell": "101", "status": "busy"}, 0},
		{"dialbridge_results_total", map[string]string{"cell": "101", "status": "brand_new"}, 1},
		{"dialbridge_claim_to_originate_seconds", c, 10},
		{"dialbridge_originate_to_outcome_seconds", c, 10}, // never-originated calls are not observed
		{"dialbridge_calls_in_progress", c, 3},
		{"dialbridge_threads", c, 50},
		{"dialbridge_redis_up", c, 1},
		{"dialbridge_ami_up", c, 1},
		{"dialbridge_claiming", c, 0},
		{"dialbridge_ami_reconnects_total", c, 7},
	} {
		got, ok := Value(fams, w.name, w.labels)
		if !ok || got != w.want {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.want)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "dialbridge_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			t.Errorf("unexpected metric %s", name)
		}
	}
	// Two cells in one process do not collide (own registries).
	_ = New("202", nil, nil)
}
