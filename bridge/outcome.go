package bridge

import "time"

// AMI OriginateResponse Reason values (enum ast_control_frame_type).
const (
	ReasonFailed      = 0
	ReasonHangup      = 1
	ReasonRingTimeout = 3
	ReasonAnswered    = 4
	ReasonBusy        = 5
	ReasonCongestion  = 8
)

// StatusForReason maps an OriginateResponse Reason and the first non-zero
// Hangup cause of the call's channels to a status, as real Asterisk 22
// behaves (contract section 2). Reason 0 or 1 says little — a far end that
// hangs up with a cause before answering gives Reason 0 — so the cause
// decides then.
func StatusForReason(reason, cause int) Status {
	switch reason {
	case ReasonAnswered:
		return StatusAnswered
	case ReasonBusy:
		return StatusBusy
	case ReasonCongestion:
		return StatusCongestion
	case ReasonRingTimeout:
		return StatusNoAnswer
	}
	return StatusForCause(cause)
}

// StatusForCause maps a Q.850 hangup cause of an unanswered call.
func StatusForCause(cause int) Status {
	switch cause {
	case 17:
		return StatusBusy
	case 18, 19:
		return StatusNoAnswer
	case 21:
		return StatusRejected
	case 1, 3, 22, 28:
		return StatusInvalidNumber
	case 34, 38, 41, 42, 44:
		return StatusCongestion
	}
	return StatusFailed
}

// tracker folds the events of one originate attempt into what is known of
// the call. Events arrive in any order (OriginateResponse and channel events
// travel different paths in Asterisk), so every decision reads the whole
// state, never the last event alone.
type tracker struct {
	responded   bool
	reason      int
	response    string
	respondedAt time.Time

	channel string // real name of our channel, when known

	legSeen [3]bool // index 1: our channel, 2: the ";2" half of a Local channel
	legHung [3]bool
	rang    bool // a leg rang or was answered (the breaker's "rang")

	cause     int // first non-zero Hangup cause
	causeText string

	upAt    time.Time // our channel went Up
	endedAt time.Time // our channel hung up

	lost bool // the AMI connection dropped while we waited: events may be missing

	clock func() time.Time // time.Now when nil
}

// maxEventAge bounds how long an event may wait between its arrival and
// apply by the wall clock. Beyond it, or below zero, the wall clock stepped
// in between, and the moment of apply is the better answer.
const maxEventAge = 5 * time.Second

// stamp is when an event arrived, on this process's monotonic clock. Event
// times that come from amigo as text have no monotonic reading: a talk time
// taken between two of them would follow every step of the wall clock
// (contract section 2: talk_ms comes from a monotonic clock). Events are
// applied within moments of their arrival, so their age by the wall clock
// puts them on the monotonic clock with the wall time they showed.
func (t *tracker) stamp(at time.Time) time.Time {
	if hasMonotonic(at) {
		return at
	}
	now := time.Now()
	if t.clock != nil {
		now = t.clock()
	}
	if age := now.Round(0).Sub(at); at.IsZero() || age < 0 || age > maxEventAge {
		return now
	}
	return onMonotonic(at, now)
}

// hasMonotonic reports whether t carries a monotonic reading: Round(0)
// strips it and changes nothing else.
func hasMonotonic(t time.Time) bool { return t != t.Round(0) }

func (t *tracker) apply(ev Event) {
	switch ev.Kind {
	case EventOriginateResponse:
		if t.responded {
			return
		}
		t.responded = true
		t.reason = ev.Reason
		t.response = ev.Response
		t.respondedAt = t.stamp(ev.At)
		// On failure Asterisk puts the requested dial string in Channel,
		// not a channel name: keep a real name if we have one.
		if ev.Reason == ReasonAnswered || t.channel == "" {
			t.channel = ev.Channel
		}
	case EventNewchannel:
		if ev.Leg == 1 || ev.Leg == 2 {
			t.legSeen[ev.Leg] = true
		}
		if ev.Leg == 1 && ev.Channel != "" {
			t.channel = ev.Channel
		}
	case EventRinging:
		if ev.Leg == 1 || ev.Leg == 2 {
			t.legSeen[ev.Leg] = true
			t.rang = true
		}
	case EventUp:
		if ev.Leg == 1 || ev.Leg == 2 {
			t.legSeen[ev.Leg] = true
			t.rang = true
		}
		if ev.Leg == 1 && t.upAt.IsZero() {
			t.upAt = t.stamp(ev.At)
		}
	case EventHangup:
		if ev.Leg != 1 && ev.Leg != 2 {
			return
		}
		t.legSeen[ev.Leg] = true
		t.legHung[ev.Leg] = true
		if ev.Cause != 0 && t.cause == 0 {
			t.cause = ev.Cause
			t.causeText = ev.CauseText
		}
		if ev.Leg == 1 && t.endedAt.IsZero() {
			t.endedAt = t.stamp(ev.At)
			if t.channel == "" {
				t.channel = ev.Channel
			}
		}
	case EventLost:
		t.lost = true
	}
}

// answeredAt is when the call was answered: our channel's Up if seen,
// else the OriginateResponse that said so.
func (t *tracker) answeredAt() time.Time {
	if !t.upAt.IsZero() && (t.respondedAt.IsZero() || t.upAt.Before(t.respondedAt)) {
		return t.upAt
	}
	return t.respondedAt
}

// causeSettled reports whether waiting longer cannot improve the cause: a
// non-zero cause is known, or every leg we saw has hung up.
func (t *tracker) causeSettled() bool {
	if t.cause != 0 {
		return true
	}
	if !t.legSeen[1] && !t.legSeen[2] {
		return false // no channel event yet: maybe none will come (unknown technology)
	}
	for leg := 1; leg <= 2; leg++ {
		if t.legSeen[leg] && !t.legHung[leg] {
			return false
		}
	}
	return true
}

// ended reports whether an answered call is over: our channel hung up and
// the cause is as good as it will get.
func (t *tracker) ended() bool {
	if t.endedAt.IsZero() {
		return false
	}
	return t.causeSettled()
}
