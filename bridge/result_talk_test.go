package bridge

import (
	"strings"
	"testing"
	"time"
)

// Contract section 2: talk_ms comes from a monotonic clock and is never
// negative.

// wallOnly is t as amigo's TimeReceived text or a call hash gives it back:
// no monotonic reading.
func wallOnly(t time.Time) time.Time { return t.Round(0) }

// TestHasMonotonic checks the helper against time's own rendering of the
// monotonic reading.
func TestHasMonotonic(t *testing.T) {
	for _, tm := range []time.Time{time.Now(), wallOnly(time.Now()), time.Now().Add(time.Hour), time.Unix(0, 0), {}} {
		if got, want := hasMonotonic(tm), strings.Contains(tm.String(), " m="); got != want {
			t.Errorf("hasMonotonic(%v) = %v", tm, got)
		}
	}
}

func TestResultTalkMS(t *testing.T) {
	base := time.Now()
	parsed := func(t time.Time) time.Time { // through a call hash
		p, err := time.Parse(TimeFormat, FormatTime(t))
		if err != nil {
			panic(err)
		}
		return p
	}
	tests := []struct {
		name            string
		answered, ended time.Time
		want            int64
	}{
		{"monotonic readings", base, base.Add(73120 * time.Millisecond), 73120},
		{"wall clock stepped back between answer and hangup", wallOnly(base), wallOnly(base).Add(-5 * time.Second), 0},
		{"answered_at from the hash after recovery, ahead of our clock", parsed(base.Add(2 * time.Second)), base, 0},
		{"answered_at from the hash after recovery, put on our clock", onMonotonic(parsed(base.Add(-10*time.Second)), base), base.Add(5 * time.Second), 15000},
		{"answered, not ended", base, time.Time{}, 0},
		{"never answered", time.Time{}, base, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Call{Cmd: &Command{ID: "c1"}, AnsweredAt: tt.answered, EndedAt: tt.ended}
			if got := c.Result(StatusAnswered).TalkMS; got != tt.want {
				t.Fatalf("talk_ms %d, want %d", got, tt.want)
			}
		})
	}
}

// The tracker's times are taken from event timestamps that are text (amigo's
// TimeReceived): they must come out on the monotonic clock, showing the
// same wall time.
func TestTrackerTimesAreMonotonic(t *testing.T) {
	now := time.Now()
	evAt := wallOnly(now.Add(-3 * time.Millisecond))
	tests := []struct {
		name string
		ev   Event
		got  func(*tracker) time.Time
	}{
		{"OriginateResponse", Event{Kind: EventOriginateResponse, At: evAt, Reason: ReasonAnswered}, func(t *tracker) time.Time { return t.respondedAt }},
		{"Up", Event{Kind: EventUp, At: evAt, Leg: 1}, func(t *tracker) time.Time { return t.upAt }},
		{"Hangup", Event{Kind: EventHangup, At: evAt, Leg: 1, Cause: 16}, func(t *tracker) time.Time { return t.endedAt }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tracker{clock: func() time.Time { return now }}
			tr.apply(tt.ev)
			got := tt.got(&tr)
			if !hasMonotonic(got) {
				t.Fatalf("%v has no monotonic reading", got)
			}
			if !got.Round(0).Equal(evAt) {
				t.Fatalf("wall time %v, the event said %v", got.Round(0), evAt)
			}
		})
	}
}

// An event stamped with a monotonic reading (time.Now on arrival) keeps it,
// whatever the wall clock says when it is applied.
func TestTrackerKeepsMonotonicStamps(t *testing.T) {
	at := time.Now()
	tr := tracker{clock: func() time.Time { return at.Add(time.Hour) }}
	tr.apply(Event{Kind: EventUp, At: at, Leg: 1})
	if tr.upAt != at {
		t.Fatalf("upAt %v, want the event's own %v", tr.upAt, at)
	}
}

// An answered call's talk time follows the monotonic clock even when the
// events' wall stamps jump, and is never negative.
func TestAnsweredTalkMSAcrossWallClockSteps(t *testing.T) {
	const talk = 73120 * time.Millisecond
	tests := []struct {
		name string
		step time.Duration // of the wall clock between the Up and the Hangup
		want int64
	}{
		{"no step", 0, 73120},
		{"stepped back an hour", -time.Hour, 73120},
		{"stepped forward an hour", time.Hour, 73120},
		{"stepped back 2 minutes, longer than the call", -2 * time.Minute, 73120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := time.Now()
			now := base
			tr := tracker{clock: func() time.Time { return now }}
			tr.apply(Event{Kind: EventUp, At: wallOnly(base), Leg: 1})
			tr.apply(Event{Kind: EventOriginateResponse, At: wallOnly(base), Reason: ReasonAnswered})
			now = base.Add(talk)
			tr.apply(Event{Kind: EventHangup, At: wallOnly(base.Add(talk + tt.step)), Leg: 1, Cause: 16})

			call := &Call{Cmd: &Command{ID: "c1"}, AnsweredAt: tr.answeredAt(), EndedAt: tr.endedAt}
			if got := call.Result(StatusAnswered).TalkMS; got != tt.want {
				t.Fatalf("talk_ms %d, want %d", got, tt.want)
			}
		})
	}
}

func TestOnMonotonic(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		t       time.Time
		wantAge time.Duration
	}{
		{"already monotonic", now.Add(-time.Second), time.Second},
		{"ten seconds ago", wallOnly(now.Add(-10 * time.Second)), 10 * time.Second},
		{"a day ago", wallOnly(now.Add(-24 * time.Hour)), 24 * time.Hour},
		{"ahead of our clock", wallOnly(now.Add(time.Second)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := onMonotonic(tt.t, now)
			if !hasMonotonic(got) || now.Sub(got) != tt.wantAge {
				t.Fatalf("onMonotonic = %v, %s before now; want %s", got, now.Sub(got), tt.wantAge)
			}
		})
	}
	if !onMonotonic(time.Time{}, now).IsZero() {
		t.Fatal("the zero time must stay zero")
	}
}
