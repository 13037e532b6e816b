package bridge

import (
	"testing"
	"time"
)

func predSettings() PacingSettings {
	return PacingSettings{Mode: PacingPredictive, MaxLevel: 3, MaxAbandon: 0.03,
		AbandonAfter: 2 * time.Second, Window: 30 * time.Minute, Threads: 80}
}

func predObs(avail, busy int) PacingObservation {
	o := PacingObservation{
		Now: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC), Available: avail, Busy: busy,
		AnswerRate: 0.3, TimeToAnswer: 8 * time.Second, TalkTime: 120 * time.Second,
		WrapUp: 10 * time.Second, OperatorDelay: time.Second,
		AbandonRateWindow: 0.01, AbandonRateDay: 0.01, AnsweredWindow: 200, AnsweredDay: 800,
	}
	for i := range busy {
		o.BusyFor = append(o.BusyFor, time.Duration(i*20)*time.Second)
	}
	return o
}

func TestPredictiveProperties(t *testing.T) {
	s := predSettings()
	cases := []struct {
		name        string
		o           PacingObservation
		wantZero    bool
		wantHard    bool
		maxBudget   int
		atLeastProg bool
	}{
		{name: "no operator", o: PacingObservation{AnswerRate: 0.3, TalkTime: time.Minute}, wantZero: true},
		{name: "all busy, none near the end", o: func() PacingObservation {
			o := predObs(0, 3)
			o.BusyFor = []time.Duration{0, 0, 0}
			return o
		}(), maxBudget: 3},
		{name: "window at the cap", o: func() PacingObservation {
			o := predObs(5, 15)
			o.AbandonRateWindow = 0.03
			return o
		}(), wantHard: true, maxBudget: 5},
		{name: "day at the cap", o: func() PacingObservation {
			o := predObs(5, 15)
			o.AbandonRateDay = 0.031
			return o
		}(), wantHard: true, maxBudget: 5},
		{name: "unmeasured rates: progressive", o: func() PacingObservation {
			o := predObs(4, 0)
			o.AnswerRate, o.TalkTime = 0, 0
			return o
		}(), maxBudget: 4},
		{name: "threads cap", o: predObs(60, 0), maxBudget: 80, atLeastProg: true},
		{name: "max level cap", o: func() PacingObservation {
			o := predObs(2, 0)
			o.AnswerRate = 0.05
			return o
		}(), maxBudget: 6, atLeastProg: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, d := Pace(s, PacerState{}, c.o)
			if c.wantZero && d.Budget != 0 {
				t.Fatalf("budget %d, want 0", d.Budget)
			}
			if d.HardLimit != c.wantHard {
				t.Fatalf("hard limit %v, want %v (%s)", d.HardLimit, c.wantHard, d.Reason)
			}
			if c.maxBudget > 0 && d.Budget > c.maxBudget {
				t.Fatalf("budget %d > %d", d.Budget, c.maxBudget)
			}
			if d.Budget > s.Threads || float64(d.Budget) > s.MaxLevel*float64(c.o.LoggedIn()) {
				t.Fatalf("budget %d over the caps", d.Budget)
			}
			if c.atLeastProg && d.Budget < min(c.o.Available-c.o.Waiting, c.maxBudget) {
				t.Fatalf("budget %d under progressive", d.Budget)
			}
		})
	}
}

func TestPredictiveMonotoneInAvailable(t *testing.T) {
	s := predSettings()
	s.Threads = 1000
	prev := -1
	for avail := 0; avail <= 40; avail++ {
		_, d := Pace(s, PacerState{}, predObs(avail, 20))
		if d.Budget < prev {
			t.Fatalf("available %d: budget %d < %d with one fewer", avail, d.Budget, prev)
		}
		prev = d.Budget
	}
}

func TestPredictiveDialsAheadOfBusyOperators(t *testing.T) {
	s := predSettings()
	o := predObs(0, 100)
	for i := range o.BusyFor {
		o.BusyFor[i] = 2 * time.Minute // at the mean: several end within the ring time
	}
	_, d := Pace(s, PacerState{}, o)
	if d.Budget == 0 {
		t.Fatal("no call dialed for 100 operators all near the end of their calls")
	}
}

func TestPredictiveDeterministicAndFeedback(t *testing.T) {
	s := predSettings()
	o := predObs(5, 15)
	st1, d1 := Pace(s, PacerState{}, o)
	st2, d2 := Pace(s, PacerState{}, o)
	if st1 != st2 || d1 != d2 {
		t.Fatal("not deterministic")
	}
	// A recent abandon rate over the target shrinks the gain; under it, it
	// grows.
	st := PacerState{Gain: 1, LastAt: o.Now.Add(-time.Second), AnsweredSeen: o.AnsweredDay,
		AbandonedSeen: 8, RecentAnswered: 100, RecentAbandoned: 2.5}
	if g, _ := Pace(s, st, o); g.Gain >= 1 {
		t.Fatalf("gain %v did not shrink at 2.5 %%", g.Gain)
	}
	st.RecentAbandoned = 0
	if g, _ := Pace(s, st, o); g.Gain <= 1 {
		t.Fatalf("gain %v did not grow at 0 %%", g.Gain)
	}
	// At the hard limit the gain only shrinks.
	hard := o
	hard.AbandonRateWindow = 0.05
	if g, d := Pace(s, st, hard); g.Gain >= 1 || !d.HardLimit {
		t.Fatalf("gain %v, hard limit %v at a window of 5 %%", g.Gain, d.HardLimit)
	}
	// A lower gain never dials more.
	_, dLow := Pace(s, PacerState{Gain: 0.1}, o)
	_, dHigh := Pace(s, PacerState{Gain: 3}, o)
	if dLow.Budget > dHigh.Budget {
		t.Fatalf("gain 0.1 budget %d > gain 3 budget %d", dLow.Budget, dHigh.Budget)
	}
}
