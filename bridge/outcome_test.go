package bridge

import (
	"testing"
	"time"
)

func TestStatusForReason(t *testing.T) {
	tests := []struct {
		reason, cause int
		want          Status
	}{
		{4, 16, StatusAnswered},
		{5, 17, StatusBusy},
		{5, 0, StatusBusy},
		{8, 34, StatusCongestion},
		{3, 19, StatusNoAnswer},
		{3, 0, StatusNoAnswer},
		{0, 17, StatusBusy},
		{0, 18, StatusNoAnswer},
		{0, 19, StatusNoAnswer},
		{0, 21, StatusRejected},
		{1, 21, StatusRejected},
		{0, 1, StatusInvalidNumber},
		{0, 3, StatusInvalidNumber},
		{0, 22, StatusInvalidNumber},
		{0, 28, StatusInvalidNumber},
		{0, 34, StatusCongestion},
		{0, 38, StatusCongestion},
		{0, 41, StatusCongestion},
		{0, 42, StatusCongestion},
		{0, 44, StatusCongestion},
		{0, 0, StatusFailed},
		{0, 16, StatusFailed},
		{1, 0, StatusFailed},
		{0, 127, StatusFailed},
	}
	for _, tt := range tests {
		if got := StatusForReason(tt.reason, tt.cause); got != tt.want {
			t.Errorf("StatusForReason(%d, %d) = %s, want %s", tt.reason, tt.cause, got, tt.want)
		}
	}
}

// The event orders below are the ones recorded from Asterisk 22
// (ami-transcripts-summary.txt), including the non-causal ones.
func TestTrackerOrders(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Applied a moment after the last event, so every event keeps its time.
	clock := func() time.Time { return at(3005) }
	resp := func(ms, reason int) Event {
		r := "Failure"
		if reason == 4 {
			r = "Success"
		}
		return Event{Kind: EventOriginateResponse, At: at(ms), Reason: reason, Response: r, Channel: "Local/x@lab"}
	}
	nc := func(ms, leg int) Event {
		return Event{Kind: EventNewchannel, At: at(ms), Leg: leg, Channel: "Local/x@lab-1;" + string(rune('0'+leg))}
	}
	up := func(ms, leg int) Event { return Event{Kind: EventUp, At: at(ms), Leg: leg} }
	hu := func(ms, leg, cause int) Event {
		return Event{Kind: EventHangup, At: at(ms), Leg: leg, Cause: cause, CauseText: "c"}
	}

	tests := []struct {
		name       string
		events     []Event
		wantStatus Status
		wantCause  int
		settled    bool // causeSettled / ended after all events
	}{
		{"busy: response before ;2 hangup", []Event{nc(1, 1), nc(1, 2), resp(1, 5), hu(1, 1, 0), hu(1, 2, 17)}, StatusBusy, 17, true},
		{"busy: response last", []Event{nc(1, 1), nc(1, 2), hu(1, 1, 0), hu(1, 2, 17), resp(2, 5)}, StatusBusy, 17, true},
		{"congestion: hangups before response", []Event{nc(1, 1), nc(1, 2), hu(1, 1, 0), hu(1, 2, 34), resp(1, 8)}, StatusCongestion, 34, true},
		{"hangup17: reason 0, cause decides", []Event{nc(1, 1), nc(1, 2), hu(1, 2, 17), resp(1, 0), hu(2, 1, 17)}, StatusBusy, 17, true},
		{"reject: reason 0 cause 21", []Event{nc(1, 1), nc(1, 2), hu(1, 2, 21), resp(1, 0), hu(1, 1, 21)}, StatusRejected, 21, true},
		{"unallocated: cause 1", []Event{nc(1, 1), nc(1, 2), resp(1, 0), hu(1, 2, 1), hu(1, 1, 1)}, StatusInvalidNumber, 1, true},
		{"noanswer: reason 3", []Event{nc(1, 1), nc(1, 2), resp(3000, 3), hu(3000, 1, 19), hu(3001, 2, 19)}, StatusNoAnswer, 19, true},
		{"doesnotexist: cause 0 both legs", []Event{nc(1, 1), nc(1, 2), hu(1, 2, 0), hu(1, 1, 0), resp(1, 0)}, StatusFailed, 0, true},
		{"unknown tech: no channel events", []Event{resp(1, 0)}, StatusFailed, 0, false},
		{"busy: ;2 hangup still missing", []Event{nc(1, 1), nc(1, 2), resp(1, 5), hu(1, 1, 0)}, StatusBusy, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tracker{clock: clock}
			for _, ev := range tt.events {
				tr.apply(ev)
			}
			if !tr.responded {
				t.Fatal("no response recorded")
			}
			if got := StatusForReason(tr.reason, tr.cause); got != tt.wantStatus {
				t.Errorf("status %s, want %s", got, tt.wantStatus)
			}
			if tr.cause != tt.wantCause {
				t.Errorf("cause %d, want %d", tr.cause, tt.wantCause)
			}
			if tr.causeSettled() != tt.settled {
				t.Errorf("causeSettled %v, want %v", tr.causeSettled(), tt.settled)
			}
		})
	}

	t.Run("answered: up before response, hangup later", func(t *testing.T) {
		tr := tracker{clock: clock}
		for _, ev := range []Event{nc(1, 1), nc(1, 2), up(2, 2), up(3, 1), resp(4, 4)} {
			tr.apply(ev)
		}
		if tr.ended() {
			t.Fatal("ended before hangup")
		}
		if !tr.answeredAt().Equal(at(3)) {
			t.Fatalf("answeredAt %v, want the Up of our channel", tr.answeredAt())
		}
		tr.apply(hu(2504, 2, 16))
		if tr.ended() {
			t.Fatal("ended on the other leg's hangup")
		}
		tr.apply(hu(2505, 1, 16))
		if !tr.ended() || tr.cause != 16 || !tr.endedAt.Equal(at(2505)) {
			t.Fatalf("ended=%v cause=%d endedAt=%v", tr.ended(), tr.cause, tr.endedAt)
		}
	})
	t.Run("answered: hangup before response (very short call)", func(t *testing.T) {
		tr := tracker{clock: clock}
		for _, ev := range []Event{nc(1, 1), nc(1, 2), hu(5, 2, 16), hu(5, 1, 16), resp(6, 4)} {
			tr.apply(ev)
		}
		if !tr.ended() || StatusForReason(tr.reason, tr.cause) != StatusAnswered {
			t.Fatalf("ended=%v reason=%d", tr.ended(), tr.reason)
		}
	})
	t.Run("duplicate response ignored", func(t *testing.T) {
		tr := tracker{clock: clock}
		tr.apply(resp(1, 5))
		tr.apply(resp(2, 4))
		if tr.reason != 5 {
			t.Fatalf("reason %d, want the first", tr.reason)
		}
	})
}
