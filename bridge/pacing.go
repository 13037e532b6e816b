package bridge

import (
	"math"
	"time"
)

// Pacing (contract section 6): how many calls a cell keeps dialing at once.
// The pacer is a pure function of what it observes — the operators, the
// calls, the measured rates — returning the budget; the daemon feeds it from
// the call queue manager and Redis every second, and the call-center
// simulation (benchmark/callcenter) feeds it in virtual time with the same
// code. threads and the trunk's limits stay hard caps on top of it.

// PacingMode is queues[].pacing.mode.
type PacingMode string

// The pacing modes of contract section 6.
const (
	PacingNone        PacingMode = "none"        // threads: every command dialed as it arrives (v1)
	PacingProgressive PacingMode = "progressive" // available − waiting
	PacingRatio       PacingMode = "ratio"       // ⌊ratio × available⌋ − waiting
	PacingPredictive  PacingMode = "predictive"  // the controller (docs/PACING.md)
)

// PacingSettings are a cell's pacing settings with defaults applied.
type PacingSettings struct {
	Mode         PacingMode
	Ratio        float64       // ratio mode; > 0
	MaxLevel     float64       // most calls dialing per logged-in operator; default 3.0
	MaxAbandon   float64       // abandon-rate cap, e.g. 0.03
	AbandonAfter time.Duration // the regulators' 2 s
	Window       time.Duration // the sliding window of the abandon rate; default 30 m
	Threads      int           // hard cap
}

// PacingObservation is what the pacer sees at one instant. Counts are for
// the whole cell (every daemon of it). Measured rates are over the recent
// past; zero values mean "not measured yet" and the pacer must be careful
// with them (no operator logged in → nothing dialed).
type PacingObservation struct {
	Now time.Time

	// Operators logged in, by state (contract section 5).
	Available, Ringing, Busy int
	// BusyFor is, for each busy operator, how long they have been on their
	// current call: with the talk-time distribution it says when each is
	// likely to be free.
	BusyFor []time.Duration

	Waiting int // answered calls queued, not yet delivered to an operator
	Dialing int // calls claimed and not yet answered or finished
	// DialingFor is, for each call dialing, how long since it was dialed:
	// a young call will likely still be answered, one that has rung past
	// the usual ring time likely will not. Nil: every call dialing is taken
	// as answering at AnswerRate (cautious: it dials less).
	DialingFor []time.Duration

	// Measured over the recent past.
	AnswerRate   float64       // answered ÷ dial attempts that ended (0..1)
	TimeToAnswer time.Duration // mean ring time of answered calls
	// AttemptTime is the mean time from dial to the end of the attempt
	// (answered, busy, failed or no answer) over every attempt that ended.
	// With TimeToAnswer it says how many of the calls dialing now will still
	// be answered: the unanswered ones ring longest, so they crowd the
	// calls in flight. Zero: not measured (the answer rate is used).
	AttemptTime   time.Duration
	TalkTime      time.Duration // mean talk time (answered by an operator → hangup)
	WrapUp        time.Duration // mean time an operator stays unavailable after a call
	OperatorDelay time.Duration // mean time from delivery to an operator's answer

	// Abandon rate (abandoned ÷ answered) over the window and the day, with
	// the answered counts they are measured on.
	AbandonRateWindow, AbandonRateDay float64
	AnsweredWindow, AnsweredDay       int
}

// LoggedIn is the number of operators logged in.
func (o PacingObservation) LoggedIn() int { return o.Available + o.Ringing + o.Busy }

// PacingDecision is the pacer's answer.
type PacingDecision struct {
	// Budget is how many calls may be dialing now (claimed, not answered
	// or finished); no call starts while Dialing ≥ Budget.
	Budget int
	// Level is calls dialing per logged-in operator that Budget amounts to
	// (for the pacing hash and the monitor).
	Level float64
	// HardLimit is true while the abandon rate over the window or the day
	// has reached MaxAbandon and predictive has fallen back to progressive.
	HardLimit bool
	// Reason says in a few words why (for logs and the monitor).
	Reason string
}

// PacerState is what the pacer carries from one decision to the next (the
// predictive controller's feedback); the zero value is a fresh start.
type PacerState struct {
	// Gain scales the predictive controller's dialing; feedback on the
	// measured abandon rate adjusts it.
	Gain float64
	// LastAt is when the last decision was made.
	LastAt time.Time
	// The day's answered and abandoned counts at the last decision, and
	// their exponentially decaying sums (time constant recentTau): the
	// feedback's recent abandon rate, which reacts within minutes where the
	// 30-minute window lags.
	AnsweredSeen, AbandonedSeen     int
	RecentAnswered, RecentAbandoned float64
}

// Pace decides the budget from one observation. It is pure: the same
// settings, state and observation give the same decision.
func Pace(s PacingSettings, st PacerState, o PacingObservation) (PacerState, PacingDecision) {
	if s.Mode == "" || s.Mode == PacingNone {
		st.LastAt = o.Now
		return st, PacingDecision{Budget: s.Threads, Reason: "pacing off"}
	}
	if o.LoggedIn() == 0 {
		st.LastAt = o.Now
		return st, PacingDecision{Reason: "no operator logged in"}
	}
	var d PacingDecision
	switch s.Mode {
	case PacingRatio:
		d = ratioBudget(s, o)
	case PacingPredictive:
		st, d = predictiveBudget(s, st, o)
	default:
		d = progressiveBudget(o)
	}
	// LastAt only now: the predictive feedback integrates over the time
	// since the previous decision.
	st.LastAt = o.Now
	return st, capBudget(s, o, d)
}

// progressiveBudget: one call dialing per available operator not already
// promised to a waiting call.
func progressiveBudget(o PacingObservation) PacingDecision {
	return PacingDecision{Budget: o.Available - o.Waiting, Reason: "progressive"}
}

// ratioBudget: ⌊ratio × available⌋ − waiting.
func ratioBudget(s PacingSettings, o PacingObservation) PacingDecision {
	return PacingDecision{Budget: floorTimes(s.Ratio, o.Available) - o.Waiting, Reason: "ratio"}
}

// floorTimes is ⌊x × n⌋ for x written as a decimal in the settings: the
// float64 product of 1.16 and 25 is 28.999999999999996, and the contract's
// floor of it is 29. The slack (1e-9) is far above float64's error on these
// magnitudes and far below any step a setting can mean.
func floorTimes(x float64, n int) int {
	return int(math.Floor(x*float64(n) + 1e-9))
}

// capBudget applies the hard caps: never negative, at most MaxLevel per
// logged-in operator, at most threads; and fills in Level.
func capBudget(s PacingSettings, o PacingObservation, d PacingDecision) PacingDecision {
	if s.MaxLevel > 0 {
		d.Budget = min(d.Budget, floorTimes(s.MaxLevel, o.LoggedIn()))
	}
	if s.Threads > 0 {
		d.Budget = min(d.Budget, s.Threads)
	}
	d.Budget = max(d.Budget, 0)
	if n := o.LoggedIn(); n > 0 {
		d.Level = float64(d.Budget) / float64(n)
	}
	return d
}
