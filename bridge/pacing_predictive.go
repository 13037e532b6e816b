package bridge

import (
	"math"
	"time"
)

// The predictive controller (docs/PACING.md). It answers one question every
// second: how many calls must be ringing so that, when they are answered, the
// operators free at that moment take them — no more (abandons), no fewer
// (operators waiting). VICIdial only reacts to idle agents minus waiting
// calls; this model also predicts which busy operators will be free, from the
// talk-time distribution conditioned on how long each has been busy, and
// divides by the measured answer rate. A multiplicative gain, fed back from
// the measured abandon rate, absorbs what the model gets wrong.

const (
	// talkSigma is the spread (σ of the logarithm) assumed for talk times:
	// the observation carries only their mean, and call centers' talk times
	// are close to log-normal with σ between 0.5 and 1. A wider σ than the
	// real one makes long calls look likelier to end soon, so the gain's
	// feedback, not this constant, is what keeps the abandon rate down.
	talkSigma = 0.7
	// defaultRing is the ring time assumed before one is measured.
	defaultRing = 8 * time.Second
	// minAnswerRate keeps the division by the answer rate bounded while it
	// is measured on few calls.
	minAnswerRate = 0.05
	// baseOverflow is the share of answers the model lets overflow (find
	// no operator free) at gain 1; not all of them are abandons (some hang
	// up within 2 s, some catch an operator freed a little later).
	baseOverflow = 0.03
	// Gain bounds, a factor on baseOverflow: the normal approximation of
	// the overflow is rough for a few operators, the feedback finds the
	// real factor.
	gainMin, gainMax, gainStart = 0.1, 10, 1
	// targetShare of MaxAbandon is what the feedback aims at: far enough
	// under the cap that one unlucky window does not reach the hard limit.
	targetShare = 0.55
	// Feedback rates per second of the error in units of MaxAbandon: down
	// faster (an abandon costs a customer) than up (the recent rate has a
	// 10-minute memory; a quick recovery would overshoot).
	gainDownPerSec = 1.0 / 120
	gainUpPerSec   = 1.0 / 300
	// recentTau is the memory of the feedback's abandon rate.
	recentTau = 600.0
	// minAnsweredForFeedback: an abandon rate on fewer answered calls is
	// noise, not a signal.
	minAnsweredForFeedback = 30
	// minAnsweredToPredict: before that many answers the measured rates
	// are too rough to dial ahead on (the first attempts to end are the
	// answered ones: the answer rate starts high).
	minAnsweredToPredict = 30
	// ringSigma is the spread assumed for ring times of answered calls.
	ringSigma = 0.5
)

// predictiveBudget is the controller: see docs/PACING.md for the model.
func predictiveBudget(s PacingSettings, st PacerState, o PacingObservation) (PacerState, PacingDecision) {
	dt := 0.0
	if !st.LastAt.IsZero() && o.Now.After(st.LastAt) {
		dt = min(o.Now.Sub(st.LastAt).Seconds(), 60)
	}
	if st.Gain == 0 {
		st.Gain = gainStart
	}
	prog := progressiveBudget(o)
	hard := s.MaxAbandon > 0 &&
		((o.AnsweredWindow > 0 && o.AbandonRateWindow >= s.MaxAbandon) ||
			(o.AnsweredDay > 0 && o.AbandonRateDay >= s.MaxAbandon))
	st = feedbackGain(s, st, o, dt, hard)
	if hard {
		prog.HardLimit = true
		prog.Reason = "hard limit: abandon rate at max_abandon, progressive"
		return st, prog
	}
	if o.AnswerRate <= 0 || o.TalkTime <= 0 || o.AnsweredDay < minAnsweredToPredict {
		// Nothing to predict with yet: progressive measures the rates
		// without risking an abandon.
		prog.Reason = "predictive: measuring (progressive)"
		return st, prog
	}
	a := max(o.AnswerRate, minAnswerRate)
	ring := o.TimeToAnswer
	if ring <= 0 {
		ring = defaultRing
	}
	// A call dialed now is answered after about `ring`; an operator free up
	// to AbandonAfter − OperatorDelay later still answers it in time.
	slack := max(s.AbandonAfter-o.OperatorDelay, 0)
	horizon := (ring + slack).Seconds()
	mean, variance := expectedFree(o.BusyFor, o.TalkTime, o.WrapUp, horizon)
	supply := float64(o.Available-o.Waiting) + mean
	// How many answers we may have in flight: the most whose expected
	// overflow (answers beyond the operators free then) stays a share eps of
	// the answers. The gain moves eps, not the answers: the feedback then
	// acts where the risk is, on the tail.
	inFlight := expectedAnswers(o, a, ring)
	eps := baseOverflow * st.Gain
	lambda := maxAnswers(supply, variance, a, eps)
	fresh := (lambda - inFlight) / a
	// At most a quarter of the operators' worth of new calls per decision:
	// rates measured on few calls can be far off, and a burst cannot be
	// taken back (calls are never withdrawn).
	fresh = min(fresh, max(float64(o.LoggedIn())/4, 1))
	target := o.Dialing + int(math.Floor(fresh))
	d := PacingDecision{Budget: max(target, prog.Budget), Reason: "predictive"}
	return st, d
}

// feedbackGain moves the gain so that the recent abandon rate (decaying
// sums over about recentTau, from the day's counters) stays at targetShare of
// MaxAbandon, far enough under the cap that the window and the day do not
// reach it; at the hard limit it only shrinks.
func feedbackGain(s PacingSettings, st PacerState, o PacingObservation, dt float64, hard bool) PacerState {
	abandoned := int(math.Round(o.AbandonRateDay * float64(o.AnsweredDay)))
	dA, dB := o.AnsweredDay-st.AnsweredSeen, abandoned-st.AbandonedSeen
	if dA < 0 || dB < 0 { // a new day
		dA, dB = o.AnsweredDay, abandoned
	}
	st.AnsweredSeen, st.AbandonedSeen = o.AnsweredDay, abandoned
	decay := math.Exp(-dt / recentTau)
	st.RecentAnswered = st.RecentAnswered*decay + float64(dA)
	st.RecentAbandoned = st.RecentAbandoned*decay + float64(dB)
	if s.MaxAbandon <= 0 || dt <= 0 {
		return st
	}
	g := st.Gain
	switch {
	case hard:
		g *= math.Exp(-gainDownPerSec * dt)
	case st.RecentAnswered >= minAnsweredForFeedback:
		r := st.RecentAbandoned / st.RecentAnswered
		err := (r - targetShare*s.MaxAbandon) / s.MaxAbandon
		if err > 0 {
			g *= math.Exp(-gainDownPerSec * err * dt)
		} else {
			g *= math.Exp(-gainUpPerSec * err * dt)
		}
	}
	st.Gain = min(max(g, gainMin), gainMax)
	return st
}

// expectedFree is the mean and variance of the number of busy operators free
// within horizon seconds: each one's service (talk, log-normal with the
// measured mean, plus the mean wrap-up) conditioned on having lasted busyFor
// so far.
func expectedFree(busyFor []time.Duration, talk, wrap time.Duration, horizon float64) (mean, variance float64) {
	mu := math.Log(talk.Seconds()) - talkSigma*talkSigma/2
	w := wrap.Seconds()
	for _, b := range busyFor {
		p := freeWithin(b.Seconds()-w, horizon, mu)
		mean += p
		variance += p * (1 - p)
	}
	return mean, variance
}

// maxAnswers is the largest expected number of answers λ such that the
// expected overflow E[(X − S)+] ≤ eps·λ, with X the answers (binomial, mean λ,
// variance λ(1−a)) and S the operators free (mean supply, variance
// supplyVar), X − S taken as normal. Monotone in supply.
func maxAnswers(supply, supplyVar, a, eps float64) float64 {
	over := func(l float64) float64 {
		m := l - supply
		sd := math.Sqrt(l*(1-a) + supplyVar)
		if sd < 1e-9 {
			return max(m, 0)
		}
		z := m / sd
		return m*normCDF(z) + sd*normPDF(z)
	}
	if supply <= 0 {
		return 0
	}
	lo, hi := 0.0, 2*supply+10
	for range 40 {
		mid := (lo + hi) / 2
		if over(mid) <= eps*mid {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }
func normPDF(z float64) float64 { return math.Exp(-z*z/2) / math.Sqrt(2*math.Pi) }

// freeWithin is P(T ≤ t+h | T > t) for T log-normal(mu, talkSigma).
func freeWithin(t, h, mu float64) float64 {
	surv := 1.0
	if t > 0 {
		surv = 1 - lognCDF(t, mu)
	}
	if surv < 1e-9 {
		// Far in the tail the conditional law is flat: treat the call as
		// ending at its usual pace rather than dividing by nothing.
		return 0
	}
	end := t + h
	if end <= 0 {
		return 0
	}
	p := (lognCDF(end, mu) - (1 - surv)) / surv
	return min(max(p, 0), 1)
}

func lognCDF(x, mu float64) float64 {
	return 0.5 * math.Erfc(-(math.Log(x)-mu)/(talkSigma*math.Sqrt2))
}

// expectedAnswers is how many of the calls dialing now will still be
// answered. A call that has rung t seconds is answered later with
// probability a·S(t) / (a·S(t) + (1−a)·[t < T]), S the survival of the ring
// time of answered calls (log-normal, mean ring) and T the time unanswered
// attempts end, from AttemptTime = a·ring + (1−a)·T.
func expectedAnswers(o PacingObservation, a float64, ring time.Duration) float64 {
	if o.DialingFor == nil || o.AttemptTime <= 0 || a >= 1 {
		return a * float64(o.Dialing)
	}
	r := ring.Seconds()
	tna := (o.AttemptTime.Seconds() - a*r) / (1 - a)
	mu := math.Log(r) - ringSigma*ringSigma/2
	var sum float64
	for _, d := range o.DialingFor {
		t := d.Seconds()
		surv := 1.0
		if t > 0 {
			surv = 0.5 * math.Erfc((math.Log(t)-mu)/(ringSigma*math.Sqrt2))
		}
		ans := a * surv
		rest := 0.0
		if t < tna {
			rest = 1 - a
		}
		if ans+rest > 0 {
			sum += ans / (ans + rest)
		}
	}
	return sum
}
