package bridge

import (
	"strings"
	"time"
)

// The trunk breaker of contract section 7, as pure rules: which finished
// calls count for or against a trunk (ClassifyBreakerOutcome), and how the
// breaker of one (host, trunk) moves between closed, open and half-open
// (BreakerConfig.Acquire, Record, View). redisq keeps the state in Redis and
// runs the same rules in Lua, so every daemon of a host shares one breaker;
// its tests run both on the same sequences and compare.
//
// Decisions where the contract is silent (PROTOCOL.md §7 should say them):
//
//   - Only the probe decides a breaker that is not closed. Outcomes of calls
//     that were already dialing when it opened neither extend nor close it,
//     successes included: an answered call's result comes at its hangup,
//     minutes after the carrier took it, and says nothing of the trunk now.
//     The probe is the first call let through after the cooldown.
//   - A probe that ends neutral (unknown, trunk busy, never dialed, …) is
//     given back, and the next call is the probe. A probe whose daemon died
//     is given back when its lease (ProbeLease) runs out.
//   - A probe failure opens the breaker for a whole new cooldown.
//   - Time is the host's clock, passed in by the caller. A cooldown or lease
//     never lasts more than its length from now, so a clock stepped back
//     cannot hold the breaker open for the size of the step.

// BreakerVerdict is what one finished call says about its trunk.
type BreakerVerdict string

const (
	// BreakerNeutral: the call says nothing about the trunk (it never
	// reached the carrier, or its outcome is not the trunk's doing).
	BreakerNeutral BreakerVerdict = "neutral"
	// BreakerSuccess: the carrier delivered the call (answered, busy, no
	// answer, rejected, invalid number); closes the breaker.
	BreakerSuccess BreakerVerdict = "success"
	// BreakerFailure: the trunk failed the call (contract section 7).
	BreakerFailure BreakerVerdict = "failure"
)

// OriginateFate is what became of a call's Originate actions, as the call
// path knows it: a Result alone does not say whether Asterisk accepted or
// refused an action.
type OriginateFate int

const (
	// FateNotWritten: no Originate reached Asterisk (our own waits, an
	// invalid request, a command that ended before dialing).
	FateNotWritten OriginateFate = iota
	// FateAccepted: Asterisk answered the last action Response: Success.
	FateAccepted
	// FateRefused: Asterisk answered the last action Response: Error.
	FateRefused
	// FateNoResponse: written, never answered; the outcome is lost.
	FateNoResponse
)

// OwnError is a failure of dialbridge's own making, never the trunk's
// (contract section 7: "never our own trunk busy, AMI unavailable or
// breaker open").
type OwnError int

const (
	OwnNone OwnError = iota
	OwnTrunkBusy
	OwnAMIUnavailable
	OwnBreakerOpen
)

// The error texts of results that were never dialed for our own reasons
// (contract section 7 names the first two). The call path should use these
// so that OwnErrorOf recognises them.
const (
	BreakerOpenErrorText  = "trunk breaker open"
	BreakerTrunkBusyText  = "trunk busy"
	breakerAMIUnavailText = "AMI unavailable"
)

// OwnErrorOf recognises our own error texts at the start of a result's error
// (amiUnavailable and the trunk paths put them first).
func OwnErrorOf(errText string) OwnError {
	switch {
	case strings.HasPrefix(errText, BreakerOpenErrorText):
		return OwnBreakerOpen
	case strings.HasPrefix(errText, BreakerTrunkBusyText):
		return OwnTrunkBusy
	case strings.HasPrefix(errText, breakerAMIUnavailText):
		return OwnAMIUnavailable
	}
	return OwnNone
}

// BreakerOutcome is what the classifier needs of a finished call.
type BreakerOutcome struct {
	Status Status
	Reason int // OriginateResponse Reason
	Cause  int // first non-zero Hangup cause
	Fate   OriginateFate
	// Rang: a leg of the call reached Ringing or Up (Newstate 5 or 6), so
	// the carrier reached a phone. Only a failed call reads it.
	Rang bool
	Own  OwnError
}

// BreakerOutcomeOf builds the classifier's input from a result and what the
// call path knows beyond it.
func BreakerOutcomeOf(r *Result, fate OriginateFate, rang bool) BreakerOutcome {
	return BreakerOutcome{
		Status: r.Status, Reason: r.Reason, Cause: r.Cause,
		Fate: fate, Rang: rang, Own: OwnErrorOf(r.Error),
	}
}

// trunkFailureCause reports the Hangup causes contract section 7 counts as
// the trunk's failure: the network's, not the called party's.
func trunkFailureCause(cause int) bool {
	switch cause {
	case 27, 34, 38, 41, 42, 102:
		return true
	}
	return false
}

// ClassifyBreakerOutcome decides what a finished call says about its trunk
// (contract section 7). The order matters:
//  1. our own failures, and statuses that never reached a verdict of
//     Asterisk (ack_timeout, invalid, duplicate, unknown), are neutral;
//  2. an Originate Asterisk refused is a failure;
//  3. an answered call is a success whatever its hangup cause (a carrier
//     that hangs up an answered call with 34 still delivered it);
//  4. an unanswered call with a network cause (27, 34, 38, 41, 42, 102) is
//     a failure even when its Reason made it busy or no_answer: a carrier
//     that times out (102) while Asterisk's ring timer runs gives Reason 3;
//  5. congestion is a failure; busy, no_answer, rejected, invalid_number
//     are successes;
//  6. failed is a failure when the channel never rang (it could not be
//     created, or the carrier dropped it before any ringing), else neutral.
func ClassifyBreakerOutcome(o BreakerOutcome) BreakerVerdict {
	if o.Own != OwnNone {
		return BreakerNeutral
	}
	switch o.Status {
	case StatusAckTimeout, StatusInvalid, StatusDuplicate, StatusUnknown:
		return BreakerNeutral
	}
	switch o.Fate {
	case FateRefused:
		return BreakerFailure
	case FateAccepted:
	default:
		return BreakerNeutral
	}
	if o.Status == StatusAnswered {
		return BreakerSuccess
	}
	if trunkFailureCause(o.Cause) {
		return BreakerFailure
	}
	switch o.Status {
	case StatusCongestion:
		return BreakerFailure
	case StatusBusy, StatusNoAnswer, StatusRejected, StatusInvalidNumber:
		return BreakerSuccess
	case StatusFailed:
		if !o.Rang {
			return BreakerFailure
		}
	}
	return BreakerNeutral
}

// BreakerMode is the breaker's position.
type BreakerMode string

const (
	BreakerClosed   BreakerMode = "closed"
	BreakerOpen     BreakerMode = "open"
	BreakerHalfOpen BreakerMode = "half_open"
)

// Defaults of trunks[].breaker (contract section 1).
const (
	DefaultBreakerFailures = 10
	DefaultBreakerCooldown = 30 * time.Second
	// DefaultProbeLease covers a probe from claim to result at the longest:
	// ACK wait, the longest ring time a command may ask (300 s) and the
	// outcome's grace.
	DefaultProbeLease = 6 * time.Minute
)

// BreakerConfig is one trunk's breaker settings; its methods are the rules.
type BreakerConfig struct {
	Failures int           // consecutive trunk failures that open it; < 1 counts as 1
	Cooldown time.Duration // how long it stays open before the probe
	// ProbeLease: how long a probe may be out before another call may
	// probe (its daemon may have died); ≤ 0 means DefaultProbeLease.
	ProbeLease time.Duration
}

func (c BreakerConfig) failures() int { return max(1, c.Failures) }
func (c BreakerConfig) cooldown() time.Duration {
	return max(0, c.Cooldown)
}
func (c BreakerConfig) lease() time.Duration {
	if c.ProbeLease <= 0 {
		return DefaultProbeLease
	}
	return c.ProbeLease
}

// BreakerState is the breaker of one (host, trunk). The zero value is a
// closed breaker with no failures, which is also what a missing Redis hash
// means.
type BreakerState struct {
	Mode BreakerMode
	// Failures: consecutive trunk failures while closed; kept while open
	// (it says how many opened it), cleared when it closes.
	Failures int
	OpenedAt time.Time // when it last opened (zero when closed)
	Until    time.Time // open: when the cooldown ends
	// Probe is the token of the call holding the half-open probe, "" when
	// none; ProbeUntil is when its lease runs out.
	Probe      string
	ProbeUntil time.Time
	// LastEvent is the id of the last outcome that changed the state, so
	// that a Record retried after a lost reply is not counted twice.
	LastEvent string
}

func (s BreakerState) mode() BreakerMode {
	switch s.Mode {
	case BreakerOpen, BreakerHalfOpen:
		return s.Mode
	}
	return BreakerClosed
}

// zero reports a closed breaker with no failures: nothing to remember.
func (s BreakerState) zero() bool { return s.mode() == BreakerClosed && s.Failures <= 0 }

// RetryAt is when a call denied now may next be let through: the end of the
// cooldown, the probe's lease, or now (zero time) when nothing holds calls.
func (s BreakerState) RetryAt() time.Time {
	switch s.mode() {
	case BreakerOpen:
		return s.Until
	case BreakerHalfOpen:
		if s.Probe != "" {
			return s.ProbeUntil
		}
	}
	return time.Time{}
}

// View is the state as it stands at now: a cooldown that ended is
// half-open, a probe whose lease ran out is given back.
func (c BreakerConfig) View(s BreakerState, now time.Time) BreakerState {
	s.Mode = s.mode()
	if s.zero() {
		return BreakerState{Mode: BreakerClosed}
	}
	if s.Mode == BreakerOpen {
		if end := now.Add(c.cooldown()); s.Until.After(end) {
			s.Until = end // the clock stepped back
		}
		if !now.Before(s.Until) {
			s.Mode, s.Until, s.Probe, s.ProbeUntil = BreakerHalfOpen, time.Time{}, "", time.Time{}
		}
	}
	if s.Mode == BreakerHalfOpen && s.Probe != "" {
		if end := now.Add(c.lease()); s.ProbeUntil.After(end) {
			s.ProbeUntil = end
		}
		if !now.Before(s.ProbeUntil) {
			s.Probe, s.ProbeUntil = "", time.Time{}
		}
	}
	return s
}

// BreakerDecision is the answer to a call that asks to dial.
type BreakerDecision struct {
	Allow bool
	// Probe: this call is the half-open probe; its outcome decides.
	Probe bool
	// RetryAt: when denied, when to ask again (see BreakerState.RetryAt).
	RetryAt time.Time
}

// Acquire asks whether a call may dial now. token identifies the call
// (unique per claim); the call that finds the breaker half-open with no
// probe out becomes the probe. Asking again with the probe's token is
// allowed (a retried request, or the probe's second check before its
// Originate). An empty token never takes the probe: it asks only whether
// the breaker is closed.
func (c BreakerConfig) Acquire(s BreakerState, now time.Time, token string) (BreakerState, BreakerDecision) {
	s = c.View(s, now)
	var d BreakerDecision
	switch s.Mode {
	case BreakerClosed:
		d.Allow = true
	case BreakerHalfOpen:
		switch {
		case token == "":
		case s.Probe == "":
			s.Probe, s.ProbeUntil = token, now.Add(c.lease())
			d.Allow, d.Probe = true, true
		case s.Probe == token:
			d.Allow, d.Probe = true, true
		}
	}
	if !d.Allow {
		d.RetryAt = s.RetryAt()
	}
	return s, d
}

// BreakerEvent is one finished call's verdict for its trunk.
type BreakerEvent struct {
	Verdict BreakerVerdict
	// Token: the call's token as given to Acquire; it makes the outcome the
	// probe's when it holds the probe.
	Token string
	// ID: unique per outcome (e.g. the call's token); a retried Record with
	// the same ID right after the first changes nothing. "" = no check.
	ID string
}

// Record applies a finished call's verdict.
func (c BreakerConfig) Record(s BreakerState, now time.Time, ev BreakerEvent) BreakerState {
	s = c.View(s, now)
	if ev.ID != "" && ev.ID == s.LastEvent {
		return s
	}
	changed := false
	switch s.Mode {
	case BreakerClosed:
		switch ev.Verdict {
		case BreakerFailure:
			s.Failures++
			if s.Failures >= c.failures() {
				s.Mode, s.OpenedAt, s.Until = BreakerOpen, now, now.Add(c.cooldown())
			}
			changed = true
		case BreakerSuccess:
			return BreakerState{Mode: BreakerClosed}
		}
	case BreakerHalfOpen:
		if ev.Token == "" || ev.Token != s.Probe {
			break // a call that was already dialing when it opened
		}
		switch ev.Verdict {
		case BreakerFailure:
			s.Mode, s.OpenedAt, s.Until = BreakerOpen, now, now.Add(c.cooldown())
			s.Probe, s.ProbeUntil = "", time.Time{}
		case BreakerSuccess:
			return BreakerState{Mode: BreakerClosed}
		default:
			s.Probe, s.ProbeUntil = "", time.Time{}
		}
		changed = true
	}
	// Open: calls already dialing neither extend nor close it.
	if changed {
		s.LastEvent = ev.ID
	}
	return s
}

// BreakerTransition is the stored state before and after one step; the
// caller logs a change of Mode (one log line per state change: only the
// daemon whose step changed the stored state sees From ≠ To).
type BreakerTransition struct {
	From, To BreakerState
}

// Changed reports a change of mode.
func (t BreakerTransition) Changed() bool { return t.From.mode() != t.To.mode() }
