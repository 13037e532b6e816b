package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const testPBX = "127.0.0.1:5038"

func adoptCell(t *testing.T, threads int, st *fakeStore, d *fakeLister) *Cell {
	t.Helper()
	return NewCell(Options{
		Cell: "101", Instance: "me", Threads: threads, PBX: testPBX,
		RingTimeout: 5 * time.Second, OutcomeGrace: 2 * time.Second, HangupGrace: 50 * time.Millisecond,
	}, st, fakeConfirms{}, d, zerolog.Nop())
}

// orphan adds a dead daemon's command in doubt: its hash (state, channel
// id, PBX) and the entry its claimed list held.
func (s *fakeStore) orphan(id, state, pbx string, extra ...string) {
	raw := fmt.Sprintf(`{"id":%q,"number":"5511%s"}`, id, strings.Repeat("0", 4))
	h := map[string]string{
		"id": id, "instance": "dead-1", "state": state, "attempts": "1", "call_code": "cc-" + id,
		"channel_id": "db-dead-" + id + "-1", "token": "tok-" + id, "dialed_at": FormatTime(time.Now().Add(-10 * time.Second)),
	}
	if pbx != "" {
		h["pbx"] = pbx
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	s.hashes[id] = h
	s.orphans = append(s.orphans, Orphan{Raw: []byte(raw), Owner: "dead-1"})
}

func chID(id string) string { return "db-dead-" + id + "-1" }

func waitResult(t *testing.T, s *fakeStore) *Result {
	t.Helper()
	select {
	case r := <-s.resultC:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no result within 30 s")
		return nil
	}
}

// TestAdoptLiveCalls: each kind of call a dead daemon leaves in doubt, on
// the PBX this daemon talks to, and what its one result must be.
func TestAdoptLiveCalls(t *testing.T) {
	answeredAt := time.Now().Add(-3 * time.Second).UTC().Truncate(time.Millisecond)
	tests := []struct {
		name     string
		state    string
		pbx      string
		extra    []string
		listed   func(ch string) []LiveChannel
		listErr  error
		events   func(ch string) []Event // delivered after adoption
		status   Status
		adopted  bool
		minTalk  time.Duration
		errHas   string
		noWatch  bool
		marksAns bool
	}{
		{
			name: "answered and talking: followed to its hangup, answered_at from the hash", state: "answered", pbx: testPBX,
			extra: []string{"answered_at", FormatTime(answeredAt), "channel", "PJSIP/trunk-0001"},
			listed: func(ch string) []LiveChannel {
				return []LiveChannel{{Channel: "PJSIP/trunk-0001", Uniqueid: ch, State: 6}}
			},
			events: func(ch string) []Event {
				return []Event{{Kind: EventHangup, Leg: 1, Uniqueid: ch, Cause: 16, CauseText: "Normal Clearing"}}
			},
			status: StatusAnswered, adopted: true, minTalk: 3 * time.Second,
		},
		{
			name: "answered while nobody watched: answered_at is the channel's creation", state: "originating", pbx: testPBX,
			listed: func(ch string) []LiveChannel {
				return []LiveChannel{{Channel: "Local/x-1;1", Uniqueid: ch, State: 6, Duration: 4 * time.Second}, {Channel: "Local/x-1;2", Uniqueid: ch + ";2", State: 6}}
			},
			events: func(ch string) []Event {
				return []Event{{Kind: EventHangup, Leg: 2, Cause: 16}, {Kind: EventHangup, Leg: 1, Cause: 16}}
			},
			status: StatusAnswered, adopted: true, minTalk: 4 * time.Second, marksAns: true,
		},
		{
			name: "still ringing: its real outcome from the OriginateResponse", state: "originating", pbx: testPBX,
			listed: func(ch string) []LiveChannel { return []LiveChannel{{Channel: "PJSIP/t-2", Uniqueid: ch, State: 5}} },
			events: func(ch string) []Event {
				return []Event{{Kind: EventOriginateResponse, Response: "Failure", Reason: 5}, {Kind: EventHangup, Leg: 1, Cause: 17, CauseText: "User busy"}}
			},
			status: StatusBusy, adopted: true,
		},
		{
			name: "ringing, OriginateResponse lost: the Hangup cause decides", state: "originating", pbx: testPBX,
			listed: func(ch string) []LiveChannel { return []LiveChannel{{Channel: "PJSIP/t-3", Uniqueid: ch, State: 5}} },
			events: func(ch string) []Event { return []Event{{Kind: EventHangup, Leg: 1, Cause: 19}} },
			status: StatusNoAnswer, adopted: true,
		},
		{
			name: "channel gone: unknown", state: "answered", pbx: testPBX,
			listed: func(string) []LiveChannel { return []LiveChannel{{Channel: "PJSIP/other", Uniqueid: "someone-else"}} },
			status: StatusUnknown, errHas: "gone",
		},
		{
			name: "another PBX: not adopted, unknown", state: "answered", pbx: "10.0.0.9:5038",
			status: StatusUnknown, errHas: "10.0.0.9:5038", noWatch: true,
		},
		{
			name: "hash without PBX (older daemon): unknown", state: "originating",
			status: StatusUnknown, errHas: "does not say which PBX", noWatch: true,
		},
		{
			name: "channels cannot be listed: unknown", state: "answered", pbx: testPBX, listErr: errors.New("permission denied"),
			status: StatusUnknown, errHas: "permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, d := newFakeStore(), newFakeLister()
			st.orphan("a1", tt.state, tt.pbx, tt.extra...)
			ch := chID("a1")
			if tt.listed != nil {
				d.channels = tt.listed(ch)
			}
			d.listErr = tt.listErr
			hook := &fakeHook{}
			c := adoptCell(t, 4, st, d)
			c.SetAdoptHook(hook)
			if _, err := c.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			if w := d.watch(ch); w != nil && tt.events != nil {
				if got := d.actionIDs[ch]; got != "o-"+ch {
					t.Errorf("watched ActionID %q, want the dead daemon's o-%s", got, ch)
				}
				w.deliver(tt.events(ch)...)
			} else if (w == nil) != tt.noWatch {
				t.Errorf("watch made: %v, want %v", w != nil, !tt.noWatch)
			}
			r := waitResult(t, st)
			if r.Status != tt.status || r.Adopted != tt.adopted || r.ID != "a1" || r.CallCode != "cc-a1" || r.Instance != "me" {
				t.Fatalf("result %+v, want status %s adopted %v", r, tt.status, tt.adopted)
			}
			if tt.errHas != "" && !strings.Contains(r.Error, tt.errHas) {
				t.Errorf("error %q, want it to say %q", r.Error, tt.errHas)
			}
			if got := time.Duration(r.TalkMS) * time.Millisecond; got < tt.minTalk || got > tt.minTalk+20*time.Second {
				t.Errorf("talk %s, want at least %s", got, tt.minTalk)
			}
			if tt.adopted {
				if r.Uniqueid != ch || r.AnsweredAt == "" && tt.status == StatusAnswered {
					t.Errorf("uniqueid %q answered_at %q", r.Uniqueid, r.AnsweredAt)
				}
				if tt.state == "answered" && r.AnsweredAt != FormatTime(answeredAt) {
					t.Errorf("answered_at %s, want the hash's %s", r.AnsweredAt, FormatTime(answeredAt))
				}
				waitCond(t, "the adopted call released", func() bool {
					return c.InFlight() == 0 && hook.released.Load() == 1 && d.watch(ch).isClosed()
				})
				if hook.adopted.Load() != 1 {
					t.Errorf("hook told of %d adoptions, want 1", hook.adopted.Load())
				}
			} else if hook.adopted.Load() != 0 {
				t.Errorf("hook told of an adoption for a call not adopted")
			}
			st.mu.Lock()
			marked := len(st.answered)
			if marked > 0 && st.answered[0].Token != "tok-a1" {
				t.Errorf("MarkAnswered with token %q, want the claim's", st.answered[0].Token)
			}
			st.mu.Unlock()
			if tt.marksAns != (marked == 1) {
				t.Errorf("MarkAnswered %d times, want it %v", marked, tt.marksAns)
			}
			if n := d.originates.Load(); n != 0 {
				t.Errorf("%d Originates: a call in doubt must never be dialed again", n)
			}
			if len(st.claimed) != 0 {
				t.Errorf("left claimed: %q", st.claimed)
			}
		})
	}
}

// TestAdoptedCallsTakeSlots: adopted calls count against threads. With
// threads 1 and two live calls, the second is followed only once the first
// has ended (its events wait in its watch meanwhile), and never are two in
// progress at once.
func TestAdoptedCallsTakeSlots(t *testing.T) {
	st, d := newFakeStore(), newFakeLister()
	answeredAt := FormatTime(time.Now().Add(-time.Second))
	st.orphan("s1", "answered", testPBX, "answered_at", answeredAt)
	st.orphan("s2", "answered", testPBX, "answered_at", answeredAt)
	d.channels = []LiveChannel{{Channel: "P/1", Uniqueid: chID("s1"), State: 6}, {Channel: "P/2", Uniqueid: chID("s2"), State: 6}}
	c := adoptCell(t, 1, st, d)
	done := make(chan error, 1)
	go func() { _, err := c.Recover(context.Background()); done <- err }()
	waitCond(t, "both watched and one followed", func() bool {
		return d.watch(chID("s1")) != nil && d.watch(chID("s2")) != nil && c.InFlight() == 1
	})
	// The second call hangs up while it waits for a slot: its result
	// still has its real end.
	first, second := "s1", "s2"
	select {
	case <-done:
		t.Fatal("Recover returned with two adopted calls and one slot")
	default:
	}
	// The event carries its own time, so a loaded machine pausing the test
	// between the two cannot move it from the one checked below.
	hung := time.Now()
	d.watch(chID(second)).deliver(Event{Kind: EventHangup, Leg: 1, Cause: 16, At: hung})
	time.Sleep(200 * time.Millisecond)
	if c.InFlight() != 1 {
		t.Fatalf("in flight %d with threads 1", c.InFlight())
	}
	d.watch(chID(first)).deliver(Event{Kind: EventHangup, Leg: 1, Cause: 16})
	r1, r2 := waitResult(t, st), waitResult(t, st)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r1.ID != first || r2.ID != second || r1.Status != StatusAnswered || r2.Status != StatusAnswered || !r2.Adopted {
		t.Fatalf("results %+v then %+v", r1, r2)
	}
	end, _ := time.Parse(TimeFormat, r2.EndedAt)
	if d := end.Sub(hung); d < -50*time.Millisecond || d > 150*time.Millisecond {
		t.Errorf("ended_at %s is %s from the hangup: it must be when the event came, not when a slot freed", r2.EndedAt, d)
	}
	waitCond(t, "slots free", func() bool { return c.InFlight() == 0 && len(c.slots) == 0 })
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdoptedCallsDrainAtStop: Run adopts at its start, and on stop waits
// for an adopted call like for its own, within ShutdownGrace; one still
// talking when the grace is over stays claimed, without a result, for the
// next daemon.
func TestAdoptedCallsDrainAtStop(t *testing.T) {
	for _, hangsUp := range []bool{true, false} {
		t.Run(fmt.Sprintf("hangs up in the grace: %v", hangsUp), func(t *testing.T) {
			t.Parallel()
			st, d := newFakeStore(), newFakeLister()
			st.orphan("g1", "answered", testPBX, "answered_at", FormatTime(time.Now()))
			d.channels = []LiveChannel{{Channel: "P/1", Uniqueid: chID("g1"), State: 6}}
			// The call that hangs up must do so within the grace even when a
			// loaded machine stalls the test: Run returns at its result, so
			// a long grace costs nothing there.
			grace := 2 * time.Second
			if hangsUp {
				grace = 30 * time.Second
			}
			c := NewCell(Options{
				Cell: "101", Instance: "me", Threads: 2, PBX: testPBX, HangupGrace: 50 * time.Millisecond,
				ShutdownGrace: grace,
			}, st, fakeConfirms{}, d, zerolog.Nop())
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			waitCond(t, "the call adopted", func() bool { return c.InFlight() == 1 })
			stop()
			select {
			case <-done:
				t.Fatal("Run returned with an adopted call in progress and grace left")
			case <-time.After(300 * time.Millisecond):
			}
			if hangsUp {
				d.watch(chID("g1")).deliver(Event{Kind: EventHangup, Leg: 1, Cause: 16})
				if r := waitResult(t, st); r.Status != StatusAnswered || !r.Adopted {
					t.Errorf("result %+v", r)
				}
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if hangsUp != (len(st.results) == 1) || hangsUp != (len(st.claimed) == 0) {
				t.Errorf("%d results, %d left claimed", len(st.results), len(st.claimed))
			}
		})
	}
}
