package callcenter

import (
	"testing"
	"time"
)

// A reduced matrix: 20 operators, 35 % and 60 % answer, 1-hour shifts, 2
// seeds. Virtual time: it takes well under a second and never depends on the
// machine's speed.
func reduced() Config {
	return Config{
		Operators:   []int{20},
		AnswerRates: []float64{0.35},
		Talks:       []time.Duration{60 * time.Second},
		Shift:       time.Hour,
		Seeds:       2,
		Workers:     2,
	}
}

func TestRunDeterministic(t *testing.T) {
	sc := Scenario{Operators: 5, AnswerRate: 0.35, MeanTalk: time.Minute, Shift: 30 * time.Minute}
	for _, p := range Policies {
		a, b := Run(sc, p, 7), Run(sc, p, 7)
		if a != b {
			t.Fatalf("%s: two runs of one seed differ: %+v vs %+v", p, a, b)
		}
	}
}

func TestReducedMatrix(t *testing.T) {
	rep := RunMatrix(reduced())
	t.Log("\n" + rep.Table())
	pred := rep.cell(rep.Cells[0].Scenario, Predictive)
	prog := rep.cell(rep.Cells[0].Scenario, Progressive)
	for _, r := range prog.Runs {
		// progressive never has an operator answer later than 1.5 s
		if r.Abandoned != 0 {
			t.Fatalf("progressive abandoned %d", r.Abandoned)
		}
	}
	for _, r := range pred.Runs {
		if r.AbandonRate > 0.03 {
			t.Errorf("predictive seed %d: abandon %.2f %%", r.Seed, 100*r.AbandonRate)
		}
	}
	if pred.MedianOccupancy < prog.MedianOccupancy+0.05 {
		t.Errorf("predictive occupancy %.1f %% not above progressive %.1f %%",
			100*pred.MedianOccupancy, 100*prog.MedianOccupancy)
	}
}

func TestWorstWindow(t *testing.T) {
	ans := []int{10, 10, 10, 10}
	abn := []int{0, 5, 0, 0}
	if got := worstWindow(ans, abn, 2); got != 0.25 {
		t.Fatalf("worst window %v, want 0.25", got)
	}
}

func BenchmarkReducedMatrix(b *testing.B) {
	for b.Loop() {
		RunMatrix(reduced())
	}
}
