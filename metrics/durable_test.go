package metrics

import (
	"sync/atomic"
	"testing"
)

// TestDurableGauges: the replica gauges follow the daemon's state at
// scrape time.
func TestDurableGauges(t *testing.T) {
	m := New("101", cell{}, amiState{})
	var holding atomic.Bool
	var held atomic.Int64
	m.AddDurable("101", func() DurableSample {
		return DurableSample{Holding: holding.Load(), Held: int(held.Load())}
	})
	c := map[string]string{"cell": "101"}
	for _, st := range []struct {
		holding bool
		held    int64
	}{{false, 0}, {true, 7}, {false, 2}} {
		holding.Store(st.holding)
		held.Store(st.held)
		fams := Scrape(t, m.Handler())
		if got, ok := Value(fams, "dialbridge_replicas_holding", c); !ok || got != b2f(st.holding) {
			t.Errorf("holding %v: gauge %v (present %v)", st.holding, got, ok)
		}
		if got, ok := Value(fams, "dialbridge_results_unacknowledged", c); !ok || got != float64(st.held) {
			t.Errorf("held %d: gauge %v (present %v)", st.held, got, ok)
		}
	}
}
