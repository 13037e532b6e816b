package redisq

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/acd"
)

// pcFloor writes a queue manager's floor: ids available, busy, ringing,
// and waiting calls; qm false leaves no lease (not running).
func pcFloor(t *testing.T, ctx context.Context, rdb *redis.Client, avail, busy, ringing, waiting int, qm bool) {
	t.Helper()
	pcFloorAt(t, ctx, rdb, rqPrefix, avail, busy, ringing, waiting, qm)
}

func pcFloorAt(t *testing.T, ctx context.Context, rdb *redis.Client, prefix string, avail, busy, ringing, waiting int, qm bool) {
	t.Helper()
	s, err := ACDOpen(ctx, rdb, prefix, rqCell, ACDOptions{Instance: "qm"})
	if err != nil {
		t.Fatal(err)
	}
	var snap acd.Snapshot
	add := func(n int, st acd.OperatorState, tag string) {
		for i := range n {
			oi := acd.OperatorInfo{ID: tag + string(rune('A'+i)), State: st, Since: time.Now().Add(-30 * time.Second)}
			if st == acd.Busy || st == acd.Ringing {
				oi.Call = "x" + oi.ID
			}
			snap.Operators = append(snap.Operators, oi)
		}
	}
	add(avail, acd.Available, "a")
	add(busy, acd.Busy, "b")
	add(ringing, acd.Ringing, "r")
	for i := range waiting {
		id := "w" + string(rune('a'+i))
		snap.Calls = append(snap.Calls, acd.CallInfo{ID: id, State: acd.Waiting})
		snap.Queue = append(snap.Queue, id)
	}
	if err := s.SaveAll(ctx, snap, nil, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if !qm {
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func pcSettings(mode bridge.PacingMode) bridge.PacingSettings {
	return bridge.PacingSettings{Mode: mode, Ratio: 2, MaxLevel: 3, MaxAbandon: 0.03, AbandonAfter: 2 * time.Second, Window: 30 * time.Minute}
}

// TestPacerBudgets: the budget the pacer writes for each mode and floor,
// and what the admission lets two daemons take from it.
func TestPacerBudgets(t *testing.T) {
	runPacerBudgets(t, func(t *testing.T) (*redis.Client, string) { _, rdb := rqRedis(t); return rdb, rqPrefix })
}

// TestPacerBudgetsRealRedis runs the same cases on a real redis-server
// (DIALBRIDGE_TEST_REDIS): the scripts' TIME, ZSET and number handling in
// Redis' own Lua.
func TestPacerBudgetsRealRedis(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	runPacerBudgets(t, func(t *testing.T) (*redis.Client, string) {
		rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		t.Cleanup(func() { _ = rdb.Close() })
		prefix := "pctest" + strconv.FormatInt(time.Now().UnixNano(), 36)
		t.Cleanup(func() {
			keys, _ := scanKeys(context.Background(), rdb, globEscape(prefix)+"*")
			if len(keys) > 0 {
				rdb.Del(context.Background(), keys...)
			}
		})
		return rdb, prefix
	})
}

func runPacerBudgets(t *testing.T, client func(t *testing.T) (*redis.Client, string)) {
	cases := []struct {
		name                          string
		mode                          bridge.PacingMode
		avail, busy, ringing, waiting int
		qm                            bool
		dayAnswered, dayAbandoned     int
		want                          int
		nothing                       string // substring of why nothing is dialed
		hard                          bool
	}{
		{name: "progressive", mode: bridge.PacingProgressive, avail: 3, busy: 2, waiting: 1, qm: true, want: 2},
		{name: "progressive all busy", mode: bridge.PacingProgressive, busy: 2, ringing: 1, qm: true, want: 0},
		{name: "ratio", mode: bridge.PacingRatio, avail: 3, busy: 1, waiting: 1, qm: true, want: 5},
		{name: "ratio capped by max_level", mode: bridge.PacingRatio, avail: 1, qm: true, want: 2},
		{name: "no operator logged in", mode: bridge.PacingRatio, qm: true, want: 0, nothing: "no operator logged in"},
		{name: "queue manager not running", mode: bridge.PacingProgressive, avail: 3, qm: false, want: 0, nothing: "queue manager is not running"},
		{name: "predictive measuring", mode: bridge.PacingPredictive, avail: 4, busy: 4, qm: true, want: 4},
		{name: "predictive hard limit", mode: bridge.PacingPredictive, avail: 4, busy: 4, waiting: 1, qm: true, dayAnswered: 100, dayAbandoned: 3, want: 3, hard: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := client(t)
			ctx := rqCtx(t)
			pcFloorAt(t, ctx, rdb, prefix, tc.avail, tc.busy, tc.ringing, tc.waiting, tc.qm)
			k := NewKeys(prefix, rqCell)
			if tc.dayAnswered > 0 {
				day := time.Now().UTC().Format(time.DateOnly)
				rdb.HSet(ctx, PacingDayKey(k), day+":answered", tc.dayAnswered, day+":abandoned", tc.dayAbandoned)
			}
			var changes []string
			p := NewPacer(rdb, k, PacerOptions{Instance: "d1", Settings: pcSettings(tc.mode),
				OnChange: func(leader bool, nothing string) { changes = append(changes, nothing) }})
			if err := p.Step(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := PacingState(ctx, rdb, k)
			if err != nil {
				t.Fatal(err)
			}
			if st["budget"] != itoa(tc.want) {
				t.Errorf("budget %s, want %d (%v)", st["budget"], tc.want, st)
			}
			for _, f := range []string{"mode", "level", "available", "busy", "ringing", "waiting", "dialing", "answer_rate", "abandon_rate_window", "abandon_rate_day", "updated_at"} {
				if _, ok := st[f]; !ok {
					t.Errorf("P:{C}:pacing lacks %s", f)
				}
			}
			if tc.hard != (st["hard_limit"] == "1") {
				t.Errorf("hard_limit %s, want %v", st["hard_limit"], tc.hard)
			}
			if tc.nothing != "" && (len(changes) == 0 || !strings.Contains(changes[len(changes)-1], tc.nothing)) {
				t.Errorf("changes %q, want one saying %q", changes, tc.nothing)
			}
			// Two daemons share the one budget.
			a1 := NewPacingAdmission(rdb, k, "d1", nil)
			a2 := NewPacingAdmission(rdb, k, "d2", nil)
			n1, err := a1.Admit(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			n2, err := a2.Admit(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			if n1+n2 != tc.want || n1 != tc.want {
				t.Errorf("admitted %d + %d, want %d in all", n1, n2, tc.want)
			}
			if got := a2.Status().DialsNothing(); (tc.nothing == "") != (got == "") || !strings.Contains(got, tc.nothing) {
				t.Errorf("DialsNothing = %q, want %q", got, tc.nothing)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPacingSlots: released, unused, answered and dead daemons' slots.
func TestPacingSlots(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	pcFloor(t, ctx, rdb, 2, 0, 0, 0, true)
	k := NewKeys(rqPrefix, rqCell)
	p := NewPacer(rdb, k, PacerOptions{Instance: "d1", Settings: pcSettings(bridge.PacingProgressive)})
	step := func() {
		t.Helper()
		if err := p.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	step()
	a1 := NewPacingAdmission(rdb, k, "d1", nil)
	a2 := NewPacingAdmission(rdb, k, "d2", nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = a1.Run(rctx) }()
	if n, _ := a1.Admit(ctx, 5); n != 2 {
		t.Fatalf("admitted %d, want 2", n)
	}
	// Unused comes back.
	a1.Unused(1)
	waitFor(t, func() bool { n, _ := rdb.ZCard(ctx, NewPacingKeys(k).Slots()).Result(); return n == 1 })
	// An answered call's slot counts against the budget until the pacer
	// has looked at the operators again.
	a1.Release(&bridge.Call{State: bridge.StateAnswered})
	waitFor(t, func() bool { n, _ := rdb.ZCard(ctx, NewPacingKeys(k).Slots()).Result(); return n == 0 })
	if n, _ := a2.Admit(ctx, 5); n != 1 {
		t.Fatalf("after an answer the pacer has not seen: admitted %d, want 1", n)
	}
	m.SetTime(time.Now().Add(time.Second))
	step()
	if n, _ := a2.Admit(ctx, 5); n != 1 {
		t.Fatalf("after the pacer's next look: admitted %d, want 1 (2 available, 1 dialing)", n)
	}
	// d2 dies: its slots (never renewed) come back after PacingSlotTTL.
	if n, _ := a1.Admit(ctx, 5); n != 0 {
		t.Fatalf("budget full: admitted %d", n)
	}
	m.SetTime(time.Now().Add(PacingSlotTTL + 2*time.Second))
	m.FastForward(PacingSlotTTL + 2*time.Second)
	rdb.Set(ctx, ACDKey(rqPrefix, rqCell, "lease"), "qm", 0) // the queue manager renews its lease
	step()
	if n, _ := a1.Admit(ctx, 5); n != 2 {
		t.Fatalf("after the dead daemon's slots expired: admitted %d, want 2", n)
	}
	// The pacer stops: its budget goes stale and nothing is dialed.
	m.SetTime(time.Now().Add(PacingSlotTTL + 2*time.Second + PacingBudgetMaxAge + time.Second))
	if n, _ := a2.Admit(ctx, 5); n != 0 || !strings.Contains(a2.Status().DialsNothing(), "stale") {
		t.Fatalf("stale budget: admitted %d, status %q", n, a2.Status().DialsNothing())
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPacerLeadership: one pacer per cell decides; when its lease expires
// (it died) another takes over and resumes the controller's state.
func TestPacerLeadership(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	pcFloor(t, ctx, rdb, 2, 1, 0, 0, true)
	k := NewKeys(rqPrefix, rqCell)
	p1 := NewPacer(rdb, k, PacerOptions{Instance: "d1", Settings: pcSettings(bridge.PacingPredictive)})
	p2 := NewPacer(rdb, k, PacerOptions{Instance: "d2", Settings: pcSettings(bridge.PacingPredictive)})
	for _, p := range []*Pacer{p1, p2} {
		if err := p.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !p1.View().Leader || p2.View().Leader {
		t.Fatalf("leaders: d1 %v, d2 %v", p1.View().Leader, p2.View().Leader)
	}
	// d1's controller state as a new leader will find it.
	if err := rdb.HSet(ctx, NewPacingKeys(k).State(), "state", `{"Gain":0.5}`).Err(); err != nil {
		t.Fatal(err)
	}
	m.FastForward(PacerLeaseTTL + time.Second) // d1 stopped renewing
	rdb.Set(ctx, ACDKey(rqPrefix, rqCell, "lease"), "qm", 0)
	if err := p2.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if !p2.View().Leader {
		t.Fatal("d2 did not take over")
	}
	if g := p2.state.Gain; g >= 0.75 { // a fresh start is gain 1
		t.Errorf("d2 started at gain %g, not the resumed 0.5", g)
	}
	if st, _ := PacingState(ctx, rdb, k); st["leader"] != "d2" {
		t.Errorf("pacing hash leader %q", st["leader"])
	}
	if err := p1.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if p1.View().Leader {
		t.Error("d1 still decides after losing its lease")
	}
}
