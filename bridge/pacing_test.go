package bridge

import (
	"testing"
	"time"
)

// ⌊ratio × available⌋ and ⌊max_level × logged in⌋ are read as the decimals
// written in the settings: 1.16 × 25 is 29, though the float64 product is
// 28.999999999999996.
func TestPacingBoundsFloorDecimals(t *testing.T) {
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name            string
		ratio, maxLevel float64
		available, busy int
		want            int
	}{
		{"ratio 1.16 of 25", 1.16, 3, 25, 0, 29},
		{"ratio 0.7 of 90", 0.7, 3, 90, 0, 63},
		{"ratio 2.5 of 7", 2.5, 3, 7, 0, 17},
		{"max_level 1.14 of 50", 3, 1.14, 50, 0, 57},
		{"max_level 1.15 of 100 logged in", 3, 1.15, 40, 60, 115},
	}
	for _, c := range cases {
		s := PacingSettings{Mode: PacingRatio, Ratio: c.ratio, MaxLevel: c.maxLevel, Threads: 1000}
		_, d := Pace(s, PacerState{}, PacingObservation{Now: now, Available: c.available, Busy: c.busy})
		if d.Budget != c.want {
			t.Errorf("%s: budget %d, want %d", c.name, d.Budget, c.want)
		}
	}
}
