package metrics

import (
	"sync"
	"testing"
)

// TestTrunkGauges: the trunk's gauges follow the breaker and the daemon's
// use of the trunk at scrape time, one breaker-state series at 1.
func TestTrunkGauges(t *testing.T) {
	m := New("101", cell{}, amiState{})
	var mu sync.Mutex
	var now TrunkSample
	m.AddTrunk("101", "gw1", func() TrunkSample {
		mu.Lock()
		defer mu.Unlock()
		return now
	})
	c := map[string]string{"cell": "101", "trunk": "gw1"}
	for _, st := range []TrunkSample{
		{Breaker: "closed"},
		{Breaker: "open", Failures: 5, Held: 0, Waiting: 3},
		{Breaker: "half_open", Failures: 5, Held: 1, Waiting: 2},
		{Breaker: "closed", Held: 4},
	} {
		mu.Lock()
		now = st
		mu.Unlock()
		fams := Scrape(t, m.Handler())
		for _, state := range BreakerStates {
			want := b2f(state == st.Breaker)
			got, ok := Value(fams, "dialbridge_trunk_breaker_state", map[string]string{"cell": "101", "trunk": "gw1", "state": state})
			if !ok || got != want {
				t.Errorf("%+v: breaker_state{state=%s} = %v (present %v), want %v", st, state, got, ok, want)
			}
		}
		for name, want := range map[string]int{
			"dialbridge_trunk_breaker_failures": st.Failures,
			"dialbridge_trunk_channels_held":    st.Held,
			"dialbridge_trunk_waiting":          st.Waiting,
		} {
			if got, ok := Value(fams, name, c); !ok || got != float64(want) {
				t.Errorf("%+v: %s = %v (present %v), want %d", st, name, got, ok, want)
			}
		}
	}
}
