package redisq

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/acd"
)

// TestOperatorFields follows calls through MarkAnswered, the queue
// manager's notes and Finish, and reads the four fields in the pushed
// result (contract section 2), each case on Redis's clock.
func TestOperatorFields(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		paced     bool
		qm        bool          // the queue manager holds its lease
		status    bridge.Status // result status
		ring      time.Duration // after answer: operator rung (<0: never)
		connect   time.Duration // after answer: operator answered (<0: never)
		talk      int64         // talk_ms of the result
		want      *bridge.OperatorFields
		abandoned int // the day's abandoned count after
	}{
		{name: "operator within 2s", qm: true, status: bridge.StatusAnswered, ring: 100 * time.Millisecond, connect: 1500 * time.Millisecond, talk: 60000,
			want: &bridge.OperatorFields{Operator: "A", ConnectedAt: bridge.FormatTime(t0.Add(1500 * time.Millisecond)), WaitMS: 1500}},
		{name: "operator late", qm: true, status: bridge.StatusAnswered, ring: 2 * time.Second, connect: 2500 * time.Millisecond, talk: 60000,
			want: &bridge.OperatorFields{Operator: "A", ConnectedAt: bridge.FormatTime(t0.Add(2500 * time.Millisecond)), WaitMS: 2500, Abandoned: true}, abandoned: 1},
		{name: "nobody, customer stayed", qm: true, status: bridge.StatusAnswered, ring: -1, connect: -1, talk: 4000,
			want: &bridge.OperatorFields{WaitMS: 4000, Abandoned: true}, abandoned: 1},
		{name: "nobody, customer left within 2s", qm: true, status: bridge.StatusAnswered, ring: -1, connect: -1, talk: 1200,
			want: &bridge.OperatorFields{WaitMS: 1200}},
		{name: "paced, queue manager gone", paced: true, status: bridge.StatusAnswered, ring: -1, connect: -1, talk: 3000,
			want: &bridge.OperatorFields{WaitMS: 3000, Abandoned: true}, abandoned: 1},
		{name: "paced, busy", paced: true, status: bridge.StatusBusy, ring: -1, connect: -1,
			want: &bridge.OperatorFields{}},
		{name: "no queue manager", status: bridge.StatusAnswered, ring: -1, connect: -1, talk: 3000},
		{name: "no queue manager, busy", status: bridge.StatusBusy, ring: -1, connect: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, rdb := rqRedis(t)
			ctx := rqCtx(t)
			m.SetTime(t0)
			q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithACDInbox(100),
				WithOperatorFields(OperatorFieldsOptions{AbandonAfter: 2 * time.Second, Paced: tc.paced}),
				WithClock(func() time.Time { return t0 }))
			var store *ACDStore
			if tc.qm {
				var err error
				if store, err = ACDOpen(ctx, rdb, rqPrefix, rqCell, ACDOptions{Instance: "qm"}); err != nil {
					t.Fatal(err)
				}
				q.SetQueueManagerSeen(true)
			}
			raw := rqRaw("c1")
			rqClaim(t, m, rqInst, raw)
			c := rqCall("c1", raw, "tok")
			if dup, err := q.Begin(ctx, c); err != nil || dup {
				t.Fatalf("begin: %v %v", dup, err)
			}
			if tc.status == bridge.StatusAnswered {
				c.AnsweredAt = t0
				if err := q.MarkAnswered(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			note := func(after time.Duration, kind acd.Kind) {
				if after < 0 || store == nil {
					return
				}
				m.SetTime(t0.Add(after))
				if err := store.Save(ctx, acd.Changes{}, []acd.Message{{Kind: kind, Call: "c1", Operator: "A"}}, t0.Add(after), nil); err != nil {
					t.Fatal(err)
				}
			}
			note(tc.ring, acd.MsgRinging)
			note(tc.connect, acd.MsgAnswered)
			r := &bridge.Result{ID: "c1", Cell: rqCell, Status: tc.status, TalkMS: tc.talk, DialedAt: bridge.FormatTime(t0.Add(-10 * time.Second))}
			if tc.status == bridge.StatusAnswered { // only answered results carry these
				r.AnsweredAt, r.EndedAt = bridge.FormatTime(t0), bridge.FormatTime(t0.Add(time.Minute))
			}
			for range 2 { // a retried Finish reads the same seal
				if _, err := q.Finish(ctx, raw, r); err != nil {
					t.Fatal(err)
				}
			}
			got := rqList(t, m, q.Keys().Results())
			if len(got) != 1 {
				t.Fatalf("results: %q", got)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(got[0]), &fields); err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				for _, k := range []string{"operator", "connected_at", "wait_ms", "abandoned"} {
					if _, ok := fields[k]; ok {
						t.Errorf("result has %s without a queue manager: %s", k, got[0])
					}
				}
				return
			}
			var back bridge.Result
			if err := json.Unmarshal([]byte(got[0]), &back); err != nil {
				t.Fatal(err)
			}
			if back.OperatorFields == nil || *back.OperatorFields != *tc.want {
				t.Errorf("operator fields = %+v, want %+v (%s)", back.OperatorFields, tc.want, got[0])
			}
			for _, k := range []string{"operator", "connected_at", "wait_ms", "abandoned"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("result lacks %s: %s", k, got[0])
				}
			}
			day := t0.Format(time.DateOnly)
			if tc.status == bridge.StatusAnswered {
				if n, _ := rdb.HGet(ctx, PacingDayKey(q.Keys()), day+":answered").Int(); n != 1 {
					t.Errorf("day answered = %d, want 1", n)
				}
			}
			if n, _ := rdb.HGet(ctx, PacingDayKey(q.Keys()), day+":abandoned").Int(); n != tc.abandoned {
				t.Errorf("day abandoned = %d, want %d", n, tc.abandoned)
			}
			if tc.paced || tc.qm {
				entries, _ := rdb.XRange(ctx, PacingLogKey(q.Keys()), "-", "+").Result()
				if len(entries) != 1 {
					t.Fatalf("pacing log has %d entries, want 1 (a retried Finish logs nothing again)", len(entries))
				}
				// A dialed attempt has its dial → end time, answered or
				// not (busy results carry no ended_at).
				if d := entries[0].Values["d"]; d == "-1" || d == nil {
					t.Errorf("pacing log entry without its attempt time: %v", entries[0].Values)
				}
			}
		})
	}
}

// TestLateOperatorNote: an operator who answers after the result was
// settled does not write on the call (the customer was gone).
func TestLateOperatorNote(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithACDInbox(100), WithOperatorFields(OperatorFieldsOptions{Paced: true}))
	store, err := ACDOpen(ctx, rdb, rqPrefix, rqCell, ACDOptions{Instance: "qm"})
	if err != nil {
		t.Fatal(err)
	}
	raw := rqRaw("c2")
	rqClaim(t, m, rqInst, raw)
	c := rqCall("c2", raw, "tok")
	if _, err := q.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.AnsweredAt = time.Now()
	if err := q.MarkAnswered(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := &bridge.Result{ID: "c2", Status: bridge.StatusAnswered, TalkMS: 500}
	if _, err := q.Finish(ctx, raw, r); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, acd.Changes{}, []acd.Message{{Kind: acd.MsgAnswered, Call: "c2", Operator: "B"}}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if op := m.HGet(q.Keys().Call("c2"), "operator"); op != "" {
		t.Errorf("a settled call took operator %q", op)
	}
	// A console id that is no call of the bridge gets no hash.
	if err := store.Save(ctx, acd.Changes{}, []acd.Message{{Kind: acd.MsgAnswered, Call: "typed", Operator: "B"}}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if m.Exists(q.Keys().Call("typed")) {
		t.Error("a console call created a call hash")
	}
}

// TestOperatorFieldsRealRedis: the seal and the queue manager's note in
// Redis' own Lua (cjson, TIME), on a real redis-server.
func TestOperatorFieldsRealRedis(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	ctx := rqCtx(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := "oftest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		keys, _ := scanKeys(context.Background(), rdb, globEscape(prefix)+"*")
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	q := NewQueue(rdb, prefix, rqCell, rqInst, WithACDInbox(100), WithOperatorFields(OperatorFieldsOptions{Paced: true}))
	store, err := ACDOpen(ctx, rdb, prefix, rqCell, ACDOptions{Instance: "qm"})
	if err != nil {
		t.Fatal(err)
	}
	for i, withOp := range []bool{true, false} {
		id := "r" + strconv.Itoa(i)
		raw := rqRaw(id)
		if err := rdb.LPush(ctx, q.Keys().Claimed(rqInst), raw).Err(); err != nil {
			t.Fatal(err)
		}
		c := rqCall(id, raw, "tok")
		if _, err := q.Begin(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.AnsweredAt = time.Now()
		if err := q.MarkAnswered(ctx, c); err != nil {
			t.Fatal(err)
		}
		if withOp {
			msgs := []acd.Message{{Kind: acd.MsgRinging, Call: id, Operator: "A"}, {Kind: acd.MsgAnswered, Call: id, Operator: "A"}}
			if err := store.Save(ctx, acd.Changes{}, msgs, time.Now(), nil); err != nil {
				t.Fatal(err)
			}
		}
		r := &bridge.Result{ID: id, Status: bridge.StatusAnswered, TalkMS: 2500}
		for range 2 {
			if _, err := q.Finish(ctx, raw, r); err != nil {
				t.Fatal(err)
			}
		}
		f := r.OperatorFields
		switch {
		case f == nil:
			t.Fatalf("%s: no operator fields", id)
		case withOp && (f.Operator != "A" || f.Abandoned || f.WaitMS > 1000 || parseWire(f.ConnectedAt).IsZero()):
			t.Errorf("%s: %+v, want operator A within 1 s", id, f)
		case !withOp && (f.Operator != "" || !f.Abandoned || f.WaitMS != 2500 || f.ConnectedAt != ""):
			t.Errorf("%s: %+v, want abandoned after 2500 ms", id, f)
		}
	}
	if n := rdb.XLen(ctx, PacingLogKey(q.Keys())).Val(); n != 2 {
		t.Errorf("pacing log has %d entries, want 2", n)
	}
}

// TestAnsweredAtOnRedisClock: with the queue manager in use, answered_at
// and connected_at are both Redis's clock (contract section 2), so that
// connected_at − answered_at is wait_ms on a host whose clock is 3 s off;
// without the queue manager answered_at stays the daemon's.
func TestAnsweredAtOnRedisClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hostAnswer := t0.Add(-3 * time.Second) // this host's clock is 3 s behind Redis's
	for _, qm := range []bool{true, false} {
		t.Run("queue manager "+strconv.FormatBool(qm), func(t *testing.T) {
			m, rdb := rqRedis(t)
			ctx := rqCtx(t)
			m.SetTime(t0)
			q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithACDInbox(100),
				WithOperatorFields(OperatorFieldsOptions{AbandonAfter: 2 * time.Second}),
				WithClock(func() time.Time { return hostAnswer }))
			raw := rqRaw("c1")
			rqClaim(t, m, rqInst, raw)
			c := rqCall("c1", raw, "tok")
			if dup, err := q.Begin(ctx, c); err != nil || dup {
				t.Fatalf("begin: %v %v", dup, err)
			}
			c.AnsweredAt = hostAnswer
			if err := q.MarkAnswered(ctx, c); err != nil {
				t.Fatal(err)
			}
			if qm {
				store, err := ACDOpen(ctx, rdb, rqPrefix, rqCell, ACDOptions{Instance: "qm"})
				if err != nil {
					t.Fatal(err)
				}
				q.SetQueueManagerSeen(true)
				at := t0.Add(1200 * time.Millisecond)
				m.SetTime(at)
				if err := store.Save(ctx, acd.Changes{}, []acd.Message{{Kind: acd.MsgAnswered, Call: "c1", Operator: "A"}}, at, nil); err != nil {
					t.Fatal(err)
				}
			}
			r := &bridge.Result{ID: "c1", Cell: rqCell, Status: bridge.StatusAnswered, TalkMS: 60000,
				DialedAt: bridge.FormatTime(hostAnswer.Add(-10 * time.Second)), AnsweredAt: bridge.FormatTime(hostAnswer),
				EndedAt: bridge.FormatTime(hostAnswer.Add(time.Minute))}
			if _, err := q.Finish(ctx, raw, r); err != nil {
				t.Fatal(err)
			}
			got := rqList(t, m, q.Keys().Results())
			if len(got) != 1 {
				t.Fatalf("results: %q", got)
			}
			var back bridge.Result
			if err := json.Unmarshal([]byte(got[0]), &back); err != nil {
				t.Fatal(err)
			}
			if !qm {
				if back.AnsweredAt != bridge.FormatTime(hostAnswer) {
					t.Errorf("answered_at %s without the queue manager, want the daemon's %s", back.AnsweredAt, bridge.FormatTime(hostAnswer))
				}
				return
			}
			if back.OperatorFields == nil {
				t.Fatalf("no operator fields: %s", got[0])
			}
			ans, conn := parseWire(back.AnsweredAt), parseWire(back.OperatorFields.ConnectedAt)
			if !ans.Equal(t0) || conn.Sub(ans).Milliseconds() != back.OperatorFields.WaitMS || back.OperatorFields.WaitMS != 1200 {
				t.Errorf("answered_at %s connected_at %s wait_ms %d, want answered_at %s and the difference 1200 ms",
					back.AnsweredAt, back.OperatorFields.ConnectedAt, back.OperatorFields.WaitMS, bridge.FormatTime(t0))
			}
		})
	}
}
