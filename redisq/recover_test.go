package redisq

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Two daemons adopting the same dead instance's orphans at once: every
// command is adopted by exactly one of them.
func TestAdoptOrphansIsExclusive(t *testing.T) {
	for round := 0; round < 20; round++ {
		m, rdb := rqRedis(t)
		ctx := rqCtx(t)
		k := NewKeys("dialbridge", rqCell)
		const n = 50
		for i := 0; i < n; i++ {
			rdb.LPush(ctx, k.Claimed("dead-1"), fmt.Sprintf(`{"id":"o%d","number":"1"}`, i))
		}
		rdb.SAdd(ctx, k.InstanceSet(), "dead-1", "live-a", "live-b")
		for _, live := range []string{"live-a", "live-b"} { // live daemons beat
			rdb.HSet(ctx, k.Instance(live), "pid", 1)
			rdb.Expire(ctx, k.Instance(live), time.Minute)
		}
		a := NewQueue(rdb, "dialbridge", rqCell, "live-a")
		b := NewQueue(rdb, "dialbridge", rqCell, "live-b")
		var wg sync.WaitGroup
		got := make([]int, 2)
		for i, q := range []*Queue{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, err := q.AdoptOrphans(ctx)
				if err != nil {
					t.Error(err)
				}
				got[i] = len(o)
			}()
		}
		wg.Wait()
		la, _ := m.List(k.Claimed("live-a"))
		lb, _ := m.List(k.Claimed("live-b"))
		if got[0]+got[1] != n || len(la)+len(lb) != n || (got[0] != 0 && got[1] != 0) {
			t.Fatalf("round %d: adopted %v, lists %d+%d, want all %d by one daemon", round, got, len(la), len(lb), n)
		}
		if m.Exists(k.Claimed("dead-1")) {
			t.Fatal("dead list left behind")
		}
	}
}

// A live instance (heartbeat present) is never adopted from.
func TestAdoptOrphansSkipsLiveInstances(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys("dialbridge", rqCell)
	rdb.LPush(ctx, k.Claimed("alive"), `{"id":"x","number":"1"}`)
	rdb.SAdd(ctx, k.InstanceSet(), "alive")
	rdb.HSet(ctx, k.Instance("alive"), "pid", 1)
	rdb.Expire(ctx, k.Instance("alive"), time.Minute)
	q := NewQueue(rdb, "dialbridge", rqCell, "me")
	o, err := q.AdoptOrphans(ctx)
	if err != nil || len(o) != 0 {
		t.Fatalf("adopted %v, %v", o, err)
	}
	if l, _ := m.List(k.Claimed("alive")); len(l) != 1 {
		t.Fatal("live list touched")
	}
	// Once its heartbeat expires, it is an orphan.
	m.FastForward(2 * time.Minute)
	o, err = q.AdoptOrphans(ctx)
	if err != nil || len(o) != 1 || o[0].Owner != "alive" {
		t.Fatalf("adopted %v, %v", o, err)
	}
}

// Requeue puts the command back at the front of dial, drops an "acked" hash
// of the dead owner only, and is a no-op the second time.
func TestRequeue(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys("dialbridge", rqCell)
	q := NewQueue(rdb, "dialbridge", rqCell, "me")
	raw := `{"id":"r1","number":"1"}`
	rdb.LPush(ctx, k.Dial(), "newer")
	rdb.LPush(ctx, k.Claimed("me"), raw)
	rdb.HSet(ctx, k.Call("r1"), "state", "acked", "instance", "dead")
	ok, err := q.Requeue(ctx, []byte(raw), "r1", "dead")
	if err != nil || !ok {
		t.Fatalf("%v %v", ok, err)
	}
	if l, _ := m.List(k.Dial()); len(l) != 2 || l[1] != raw {
		t.Fatalf("dial = %v, want the requeued command at the right end (front)", l)
	}
	if m.Exists(k.Call("r1")) {
		t.Fatal("acked hash of the dead owner not dropped")
	}
	if ok, _ := q.Requeue(ctx, []byte(raw), "r1", "dead"); ok {
		t.Fatal("second requeue succeeded")
	}
	// An originating hash is never dropped.
	rdb.LPush(ctx, k.Claimed("me"), raw)
	rdb.HSet(ctx, k.Call("r1"), "state", "originating", "instance", "dead")
	q.Requeue(ctx, []byte(raw), "r1", "dead")
	if !m.Exists(k.Call("r1")) {
		t.Fatal("originating hash dropped")
	}
}

// WithACDInbox: the queue manager hears "call" once when a call is answered
// (also when MarkAnswered is retried) and "hangup" once with its result.
func TestACDInboxFedInTheSameStep(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys("dialbridge", rqCell)
	q := NewQueue(rdb, "dialbridge", rqCell, rqInst, WithACDInbox(3))
	raw := rqRaw("a1")
	c := rqCall("a1", raw, "tok-a1")
	rdb.LPush(ctx, k.Claimed(rqInst), raw)
	if _, err := q.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := q.MarkAnswered(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	r := rqResult("a1", "answered")
	for i := 0; i < 2; i++ {
		if _, err := q.Finish(ctx, raw, r); err != nil {
			t.Fatal(err)
		}
	}
	inbox, _ := m.List(k.Base() + "acd:inbox")
	want := []string{`{"command":"hangup","id":"a1"}`, `{"command":"call","id":"a1"}`}
	if fmt.Sprint(inbox) != fmt.Sprint(want) {
		t.Fatalf("inbox %v, want %v", inbox, want)
	}
	// The cap keeps the newest events.
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("b%d", i)
		raw := rqRaw(id)
		rdb.LPush(ctx, k.Claimed(rqInst), raw)
		q.Finish(ctx, raw, rqResult(id, "answered"))
	}
	if inbox, _ := m.List(k.Base() + "acd:inbox"); len(inbox) != 3 || inbox[0] != `{"command":"hangup","id":"b4"}` {
		t.Fatalf("capped inbox %v", inbox)
	}
}

// ClaimMore moves the oldest commands first and stops when dial runs dry.
func TestClaimMore(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys("dialbridge", rqCell)
	q := NewQueue(rdb, "dialbridge", rqCell, rqInst)
	for i := 0; i < 3; i++ {
		rdb.LPush(ctx, k.Dial(), fmt.Sprintf("c%d", i)) // c0 is the oldest
	}
	got, err := q.ClaimMore(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0]) != "c0" || string(got[2]) != "c2" {
		t.Fatalf("claimed %q", got)
	}
	if l, _ := m.List(k.Claimed(rqInst)); len(l) != 3 {
		t.Fatalf("claimed list %v", l)
	}
	if m.Exists(k.Dial()) {
		t.Fatal("dial not drained")
	}
	if got, err := q.ClaimMore(ctx, 2); err != nil || len(got) != 0 {
		t.Fatalf("on an empty list: %q %v", got, err)
	}
}

// After ClaimNext, ClaimMore asks only for what the dial list held: a
// command arriving alone costs no second round trip, a backlog of two costs
// two LMOVEs, not n.
func TestClaimMoreAfterClaimNext(t *testing.T) {
	_, rdb := rqRedis(t)
	ctx := rqCtx(t)
	h := countCommands(rdb)
	q := NewQueue(rdb, "dialbridge", rqCell, rqInst)
	k := q.Keys()

	rdb.LPush(ctx, k.Dial(), "alone")
	if got, err := q.ClaimNext(ctx); err != nil || string(got) != "alone" {
		t.Fatalf("ClaimNext: %q %v", got, err)
	}
	before := h.cmds.Load()
	if got, err := q.ClaimMore(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("ClaimMore on an empty backlog: %q %v", got, err)
	}
	if n := h.cmds.Load() - before; n != 0 {
		t.Fatalf("ClaimMore on an empty backlog sent %d commands", n)
	}

	for _, s := range []string{"a", "b", "c"} {
		rdb.LPush(ctx, k.Dial(), s) // a is the oldest
	}
	if got, err := q.ClaimNext(ctx); err != nil || string(got) != "a" {
		t.Fatalf("ClaimNext: %q %v", got, err)
	}
	before = h.cmds.Load()
	got, err := q.ClaimMore(ctx, 10)
	if err != nil || len(got) != 2 || string(got[0]) != "b" || string(got[1]) != "c" {
		t.Fatalf("ClaimMore: %q %v", got, err)
	}
	if n := h.cmds.Load() - before; n != 2 {
		t.Fatalf("ClaimMore of a backlog of 2 sent %d commands, want 2", n)
	}
}
