package bridge

import (
	"fmt"
	"testing"
	"time"
)

func TestClassifyBreakerOutcome(t *testing.T) {
	acc := func(status Status, reason, cause int, rang bool) BreakerOutcome {
		return BreakerOutcome{Status: status, Reason: reason, Cause: cause, Fate: FateAccepted, Rang: rang}
	}
	tests := []struct {
		name string
		in   BreakerOutcome
		want BreakerVerdict
	}{
		// Successes: the carrier delivered the call.
		{"answered", acc(StatusAnswered, 4, 16, true), BreakerSuccess},
		{"answered, carrier hung up with 34", acc(StatusAnswered, 4, 34, true), BreakerSuccess},
		{"busy by Reason 5", acc(StatusBusy, 5, 0, false), BreakerSuccess},
		{"no_answer ring-out", acc(StatusNoAnswer, 3, 19, true), BreakerSuccess},
		{"no_answer, no cause", acc(StatusNoAnswer, 3, 0, false), BreakerSuccess},
		{"rejected", acc(StatusRejected, 0, 21, false), BreakerSuccess},
		{"invalid_number 1", acc(StatusInvalidNumber, 0, 1, false), BreakerSuccess},
		{"invalid_number 28", acc(StatusInvalidNumber, 0, 28, false), BreakerSuccess},

		// Failures: outcomes of Originates Asterisk accepted or refused.
		{"congestion Reason 8", acc(StatusCongestion, 8, 0, false), BreakerFailure},
		{"congestion cause 44", acc(StatusCongestion, 0, 44, false), BreakerFailure},
		{"cause 27 destination out of order", acc(StatusFailed, 0, 27, false), BreakerFailure},
		{"cause 38 network out of order", acc(StatusCongestion, 0, 38, false), BreakerFailure},
		{"cause 41 temporary failure", acc(StatusCongestion, 0, 41, false), BreakerFailure},
		{"cause 42 switching congestion", acc(StatusCongestion, 0, 42, false), BreakerFailure},
		{"cause 102 timer expiry, failed", acc(StatusFailed, 0, 102, false), BreakerFailure},
		{"cause 102 under an originate timeout", acc(StatusNoAnswer, 3, 102, false), BreakerFailure},
		{"cause 27 even after ringing", acc(StatusFailed, 1, 27, true), BreakerFailure},
		{"failed, channel never created", acc(StatusFailed, 0, 0, false), BreakerFailure},
		{"failed, other cause, never rang", acc(StatusFailed, 0, 58, false), BreakerFailure},
		{"refused by Asterisk", BreakerOutcome{Status: StatusFailed, Fate: FateRefused}, BreakerFailure},

		// Neutral.
		{"failed after ringing, unlisted cause", acc(StatusFailed, 1, 16, true), BreakerNeutral},
		{"trunk busy", BreakerOutcome{Status: StatusFailed, Own: OwnTrunkBusy}, BreakerNeutral},
		{"AMI unavailable", BreakerOutcome{Status: StatusFailed, Own: OwnAMIUnavailable}, BreakerNeutral},
		{"AMI unavailable after a refusal", BreakerOutcome{Status: StatusFailed, Fate: FateRefused, Own: OwnAMIUnavailable}, BreakerNeutral},
		{"breaker open", BreakerOutcome{Status: StatusFailed, Own: OwnBreakerOpen}, BreakerNeutral},
		{"failed, never written (invalid request)", BreakerOutcome{Status: StatusFailed, Fate: FateNotWritten}, BreakerNeutral},
		{"unknown, no response", BreakerOutcome{Status: StatusUnknown, Fate: FateNoResponse}, BreakerNeutral},
		{"unknown after accept", BreakerOutcome{Status: StatusUnknown, Fate: FateAccepted}, BreakerNeutral},
		{"ack_timeout", BreakerOutcome{Status: StatusAckTimeout}, BreakerNeutral},
		{"invalid", BreakerOutcome{Status: StatusInvalid}, BreakerNeutral},
		{"duplicate", BreakerOutcome{Status: StatusDuplicate}, BreakerNeutral},
	}
	for _, tt := range tests {
		if got := ClassifyBreakerOutcome(tt.in); got != tt.want {
			t.Errorf("%s: %+v → %s, want %s", tt.name, tt.in, got, tt.want)
		}
	}
}

// The real carriers of pjsip-transcripts.txt (Asterisk 22, PJSIP trunks),
// through the same status rules as the call path.
func TestClassifyBreakerPJSIPTranscripts(t *testing.T) {
	tests := []struct {
		scenario      string
		reason, cause int
		rang          bool
		want          BreakerVerdict
	}{
		{"answer (200, BYE without Q.850)", 4, 0, true, BreakerSuccess},
		{"busy (486)", 0, 17, false, BreakerSuccess},
		{"decline (603)", 0, 21, false, BreakerSuccess},
		{"notfound (404)", 0, 1, false, BreakerSuccess},
		{"unavailable (503)", 0, 34, false, BreakerFailure},
		{"noanswer (180, CANCEL, 487)", 3, 19, true, BreakerSuccess},
		{"cps (503 + Retry-After)", 0, 34, false, BreakerFailure},
		{"answerq850 (BYE Q.850 16)", 4, 16, true, BreakerSuccess},
	}
	for _, tt := range tests {
		r := &Result{Status: StatusForReason(tt.reason, tt.cause), Reason: tt.reason, Cause: tt.cause}
		if got := ClassifyBreakerOutcome(BreakerOutcomeOf(r, FateAccepted, tt.rang)); got != tt.want {
			t.Errorf("%s: status %s → %s, want %s", tt.scenario, r.Status, got, tt.want)
		}
	}
}

func TestOwnErrorOf(t *testing.T) {
	tests := map[string]OwnError{
		"":                                      OwnNone,
		"trunk busy":                            OwnTrunkBusy,
		"trunk busy: no channel within 30s":     OwnTrunkBusy,
		"trunk breaker open":                    OwnBreakerOpen,
		"AMI unavailable":                       OwnAMIUnavailable,
		ErrNotWritten.Error():                   OwnAMIUnavailable,
		"originate refused by Asterisk: x":      OwnNone,
		"Asterisk could not create the channel": OwnNone,
	}
	for in, want := range tests {
		if got := OwnErrorOf(in); got != want {
			t.Errorf("OwnErrorOf(%q) = %d, want %d", in, got, want)
		}
	}
	r := &Result{Status: StatusFailed, Error: BreakerOpenErrorText}
	if v := ClassifyBreakerOutcome(BreakerOutcomeOf(r, FateNotWritten, false)); v != BreakerNeutral {
		t.Errorf("breaker open result: %s", v)
	}
}

// brk drives the pure rules in virtual time.
type brk struct {
	t   *testing.T
	cfg BreakerConfig
	s   BreakerState
	now time.Time
	seq int
}

var brkT0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func newBrk(t *testing.T, failures int, cooldown, lease time.Duration) *brk {
	return &brk{t: t, cfg: BreakerConfig{Failures: failures, Cooldown: cooldown, ProbeLease: lease}, now: brkT0}
}

func (b *brk) at(d time.Duration) *brk { b.now = brkT0.Add(d); return b }

func (b *brk) acquire(token string) BreakerDecision {
	var d BreakerDecision
	b.s, d = b.cfg.Acquire(b.s, b.now, token)
	return d
}

func (b *brk) record(v BreakerVerdict, token string) {
	b.seq++
	b.s = b.cfg.Record(b.s, b.now, BreakerEvent{Verdict: v, Token: token, ID: fmt.Sprint("e", b.seq)})
}

func (b *brk) mode() BreakerMode { return b.cfg.View(b.s, b.now).Mode }

func (b *brk) wantMode(want BreakerMode) {
	b.t.Helper()
	if got := b.mode(); got != want {
		b.t.Fatalf("at +%s: mode %s, want %s (state %+v)", b.now.Sub(brkT0), got, want, b.s)
	}
}

func (b *brk) wantAllow(token string, allow, probe bool) BreakerDecision {
	b.t.Helper()
	d := b.acquire(token)
	if d.Allow != allow || d.Probe != probe {
		b.t.Fatalf("at +%s: Acquire(%q) = allow %v probe %v, want %v %v (state %+v)",
			b.now.Sub(brkT0), token, d.Allow, d.Probe, allow, probe, b.s)
	}
	return d
}

func TestBreakerClosedCountsConsecutiveFailures(t *testing.T) {
	b := newBrk(t, 3, 10*time.Second, time.Minute)
	b.wantAllow("a", true, false)
	b.record(BreakerFailure, "a")
	b.record(BreakerFailure, "b")
	b.record(BreakerNeutral, "c") // neither counts nor resets
	b.wantMode(BreakerClosed)
	if b.s.Failures != 2 {
		t.Fatalf("failures %d, want 2", b.s.Failures)
	}
	b.record(BreakerSuccess, "d") // resets the count
	if b.s != (BreakerState{Mode: BreakerClosed}) {
		t.Fatalf("after a success: %+v, want the zero state", b.s)
	}
	b.record(BreakerFailure, "e")
	b.record(BreakerFailure, "f")
	b.wantMode(BreakerClosed)
	b.at(time.Second).record(BreakerFailure, "g")
	b.wantMode(BreakerOpen)
	if !b.s.OpenedAt.Equal(b.now) || !b.s.Until.Equal(b.now.Add(10*time.Second)) || b.s.Failures != 3 {
		t.Fatalf("opened: %+v", b.s)
	}
}

func TestBreakerOpenIgnoresCallsAlreadyDialing(t *testing.T) {
	b := newBrk(t, 2, 10*time.Second, time.Minute)
	b.record(BreakerFailure, "a")
	b.record(BreakerFailure, "b")
	d := b.wantAllow("c", false, false)
	if want := brkT0.Add(10 * time.Second); !d.RetryAt.Equal(want) {
		t.Fatalf("RetryAt %s, want %s", d.RetryAt, want)
	}
	until := b.s.Until
	// Outcomes of calls dialing when it opened: a failure does not extend
	// the cooldown, a success (an answered call hanging up now) does not
	// close it.
	b.at(3*time.Second).record(BreakerFailure, "x")
	b.at(4*time.Second).record(BreakerSuccess, "y")
	b.wantMode(BreakerOpen)
	if !b.s.Until.Equal(until) {
		t.Fatalf("cooldown moved: %s, want %s", b.s.Until, until)
	}
	b.at(10*time.Second-time.Millisecond).wantAllow("c", false, false)
	b.at(10 * time.Second).wantMode(BreakerHalfOpen)
}

func TestBreakerHalfOpenOneProbe(t *testing.T) {
	for _, tc := range []struct {
		verdict BreakerVerdict
		want    BreakerMode
	}{
		{BreakerSuccess, BreakerClosed},
		{BreakerFailure, BreakerOpen},
		{BreakerNeutral, BreakerHalfOpen},
	} {
		t.Run(string(tc.verdict), func(t *testing.T) {
			b := newBrk(t, 1, 5*time.Second, time.Minute)
			b.record(BreakerFailure, "a")
			b.at(5 * time.Second)
			b.wantAllow("", false, false) // an empty token never probes
			b.wantAllow("p", true, true)
			d := b.wantAllow("q", false, false)
			if want := b.now.Add(time.Minute); !d.RetryAt.Equal(want) {
				t.Fatalf("RetryAt %s, want the probe's lease %s", d.RetryAt, want)
			}
			b.wantAllow("p", true, true) // the probe asking again
			// Calls that were already dialing decide nothing.
			b.at(6*time.Second).record(BreakerSuccess, "x")
			b.record(BreakerFailure, "y")
			b.wantMode(BreakerHalfOpen)
			b.at(7*time.Second).record(tc.verdict, "p")
			b.wantMode(tc.want)
			switch tc.want {
			case BreakerClosed:
				if b.s != (BreakerState{Mode: BreakerClosed}) {
					t.Fatalf("closed by the probe: %+v, want the zero state", b.s)
				}
				b.wantAllow("r", true, false)
			case BreakerOpen:
				// A whole new cooldown from the probe's failure.
				if want := b.now.Add(5 * time.Second); !b.s.Until.Equal(want) || !b.s.OpenedAt.Equal(b.now) {
					t.Fatalf("reopened: %+v, want until %s", b.s, want)
				}
				b.at(12*time.Second-time.Millisecond).wantAllow("r", false, false)
				b.at(12*time.Second).wantAllow("r", true, true)
			case BreakerHalfOpen:
				b.wantAllow("r", true, true) // the probe was given back
			}
		})
	}
}

func TestBreakerProbeLeaseRunsOut(t *testing.T) {
	b := newBrk(t, 1, time.Second, 30*time.Second)
	b.record(BreakerFailure, "a")
	b.at(time.Second).wantAllow("p", true, true)
	b.at(31*time.Second-time.Millisecond).wantAllow("q", false, false)
	b.at(31*time.Second).wantAllow("q", true, true) // p's daemon died
	// p was not dead after all: its late outcome is not the probe's.
	b.at(32*time.Second).record(BreakerSuccess, "p")
	b.wantMode(BreakerHalfOpen)
	b.record(BreakerFailure, "q")
	b.wantMode(BreakerOpen)
}

func TestBreakerRetriedRecordCountsOnce(t *testing.T) {
	b := newBrk(t, 3, time.Second, time.Minute)
	ev := BreakerEvent{Verdict: BreakerFailure, Token: "a", ID: "a"}
	b.s = b.cfg.Record(b.s, b.now, ev)
	b.s = b.cfg.Record(b.s, b.now, ev) // the reply was lost; go-redis sent it again
	if b.s.Failures != 1 {
		t.Fatalf("failures %d after a retried Record, want 1", b.s.Failures)
	}
	ev2 := BreakerEvent{Verdict: BreakerFailure, Token: "b", ID: "b"}
	b.s = b.cfg.Record(b.s, b.now, ev2)
	b.s = b.cfg.Record(b.s, b.now, BreakerEvent{Verdict: BreakerFailure, Token: "c"}) // no ID: no check
	b.wantMode(BreakerOpen)
}

func TestBreakerClockSteppedBack(t *testing.T) {
	b := newBrk(t, 1, 10*time.Second, time.Minute)
	b.at(time.Hour).record(BreakerFailure, "a")
	// The host's clock steps back an hour: the cooldown still ends 10 s
	// from the new now at the latest, not an hour and 10 s later.
	b.at(0).wantAllow("x", false, false)
	b.at(10*time.Second).wantAllow("p", true, true)
	// The lease is bounded the same way.
	if v := b.cfg.View(b.s, b.at(0).now); !v.ProbeUntil.Equal(b.now.Add(time.Minute)) {
		t.Fatalf("lease until %s after the clock stepped back, want %s", v.ProbeUntil, b.now.Add(time.Minute))
	}
}

func TestBreakerConfigBounds(t *testing.T) {
	b := newBrk(t, 0, 0, 0) // failures < 1 is 1; no cooldown; default lease
	b.record(BreakerFailure, "a")
	b.wantMode(BreakerHalfOpen) // open for zero time
	b.wantAllow("p", true, true)
	if want := b.now.Add(DefaultProbeLease); !b.s.ProbeUntil.Equal(want) {
		t.Fatalf("lease until %s, want %s", b.s.ProbeUntil, want)
	}
}

// A dead trunk, failures 3, cooldown 1 s, in virtual time, with a call
// attempted every 10 ms and every dialed call failing 200 ms later: until
// it opens, failures + the calls dialing when it opened reach the carrier;
// after that, one probe per cooldown.
func TestBreakerDeadTrunkVirtualTime(t *testing.T) {
	b := newBrk(t, 3, time.Second, time.Minute)
	type call struct {
		token string
		end   time.Duration
	}
	var dialing []call
	var dialedAt []time.Duration
	firstOpen, dialingAtOpen, opens := time.Duration(-1), 0, 0
	step := 10 * time.Millisecond
	for now, n := time.Duration(0), 0; now < 20*time.Second; now += step {
		b.at(now)
		rest := dialing[:0]
		for _, c := range dialing {
			if c.end > now {
				rest = append(rest, c)
				continue
			}
			before := b.mode()
			b.record(BreakerFailure, c.token)
			if before != BreakerOpen && b.mode() == BreakerOpen {
				opens++
				if firstOpen < 0 {
					firstOpen = now
				}
			}
		}
		dialing = rest
		if firstOpen == now {
			dialingAtOpen = len(dialing)
		}
		n++
		tok := fmt.Sprint("c", n)
		if d := b.acquire(tok); d.Allow {
			dialing = append(dialing, call{tok, now + 200*time.Millisecond})
			dialedAt = append(dialedAt, now)
		}
	}
	if firstOpen < 0 {
		t.Fatal("never opened")
	}
	before := 0
	for _, at := range dialedAt {
		if at < firstOpen {
			before++
		}
	}
	if want := 3 + dialingAtOpen; before != want {
		t.Fatalf("%d calls reached the carrier before it opened, want failures (3) + %d dialing", before, dialingAtOpen)
	}
	// After the opening, calls are probes, at least a cooldown apart, each
	// failing and opening it again.
	probes := dialedAt[before:]
	for i := 1; i < len(probes); i++ {
		if gap := probes[i] - probes[i-1]; gap < time.Second {
			t.Fatalf("probes at %s and %s only %s apart while the trunk is dead", probes[i-1], probes[i], gap)
		}
	}
	// Opens, then each probe at open+1 s fails 200 ms later: a 1.2 s cycle.
	want := int((20*time.Second - firstOpen) / (1200 * time.Millisecond))
	if len(probes) < want || len(probes) > want+1 {
		t.Fatalf("%d probes in %s, want %d or %d", len(probes), 20*time.Second-firstOpen, want, want+1)
	}
	if opens < len(probes) || opens > len(probes)+1 {
		t.Fatalf("%d openings for %d probes", opens, len(probes))
	}
}
