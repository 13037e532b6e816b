package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/redisq"
)

// pacingUpdates waits until the pacing hash has been written n more times
// and returns its last state.
func (h *harness) pacingUpdates(n int, what string) map[string]string {
	h.t.Helper()
	k := redisq.NewKeys(h.s.Redis.Prefix, testCell)
	var st map[string]string
	seen := map[string]bool{}
	waitFor(h.t, 30*time.Second, what, func() bool {
		st, _ = redisq.PacingState(context.Background(), h.rdb, k)
		if u := st["updated_at"]; u != "" {
			seen[u] = true
		}
		return len(seen) > n
	})
	return st
}

// TestPacedDaemons runs two daemons of one progressive cell: with no queue
// manager, and with one whose operators are logged out, nothing is dialed
// (the pacing hash, the log line's source and /healthz say why); once two
// operators log in the two daemons together dial exactly two calls, never
// more, whichever claims.
func TestPacedDaemons(t *testing.T) {
	h := newHarness(t, harnessConfig{
		threads: 10,
		rules:   "answer,ring=25s,talk=1s", // calls stay dialing for the whole test
		tweak: func(s *config.Settings) {
			s.Queues[0].Pacing.Mode = config.PacingProgressive
			s.Queues[0].Operators = []config.Operator{{ID: "A", Tier: "operator"}, {ID: "B", Tier: "operator"}}
			s.ACD.StartLoggedIn = false
			s.Originate.Timeout = config.Duration(30 * time.Second)
		},
	})
	// The second daemon of the cell.
	ctx2, stop2 := context.WithCancel(context.Background())
	d2, err := startDaemon(ctx2, h.s, testCell, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		stop2()
		t.Fatal(err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- d2.Run(ctx2) }()
	t.Cleanup(func() { stop2(); <-done2 })

	var mu sync.Mutex
	var over []string
	for _, d := range []*daemon{h.d, d2} {
		d.pacing.adm.OnAdmit(func(n int, st redisq.PacingStatus) {
			if n > 0 && st.Dialing > st.Budget {
				mu.Lock()
				over = append(over, st.DialsNothing())
				mu.Unlock()
			}
		})
	}
	for i := range 6 {
		h.push(cmd("p"+string(rune('a'+i)), "5511999990000"))
	}

	// No queue manager.
	st := h.pacingUpdates(3, "the pacer to run three times")
	if !strings.Contains(st["nothing"], "queue manager is not running") || st["budget"] != "0" {
		t.Errorf("without a queue manager: %v", st)
	}
	for _, d := range []*daemon{h.d, d2} {
		if hl := d.pacing.health(); !strings.Contains(hl, "dials nothing") {
			t.Errorf("/healthz pacing: %q", hl)
		}
	}
	if n := len(h.sim.Originates()); n != 0 {
		t.Fatalf("%d calls dialed without a queue manager", n)
	}

	// A queue manager whose operators are logged out.
	qctx, qstop := context.WithCancel(context.Background())
	defer qstop()
	qm, err := hostQueueManager(qctx, h.s, &queueFlags{}, testCell, h.addr, 0, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Stop()
	waitFor(t, 30*time.Second, "the pacer to see no operator", func() bool {
		st, _ = redisq.PacingState(context.Background(), h.rdb, redisq.NewKeys(h.s.Redis.Prefix, testCell))
		return strings.Contains(st["nothing"], "no operator logged in")
	})
	h.pacingUpdates(2, "two more rounds")
	if n := len(h.sim.Originates()); n != 0 {
		t.Fatalf("%d calls dialed with no operator logged in", n)
	}

	// Two operators log in: two calls dialing, across both daemons.
	for _, op := range []string{"A", "B"} {
		qm.Engine.Do(acd.Command{Verb: acd.Login, ID: op}, func([]string, error) {})
	}
	waitFor(t, 30*time.Second, "two calls dialed", func() bool { return len(h.sim.Originates()) == 2 })
	st = h.pacingUpdates(3, "three more rounds")
	if n := len(h.sim.Originates()); n != 2 {
		t.Errorf("%d calls dialed for 2 available operators", n)
	}
	if st["budget"] != "2" || st["dialing"] != "2" || st["available"] != "2" || st["nothing"] != "" {
		t.Errorf("pacing state %v, want budget 2, dialing 2", st)
	}
	if held := h.d.pacing.adm.Status().Held + d2.pacing.adm.Status().Held; held > 2 {
		t.Errorf("the daemons hold %d slots", held)
	}
	if l := len(h.list(h.mc.Keys().Dial())); l != 4 {
		t.Errorf("dial list holds %d, want 4 waiting for operators", l)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(over) > 0 {
		t.Errorf("%d starts over the budget", len(over))
	}
}

// TestPacingHardLimit: a predictive cell whose day's abandon rate reached
// max_abandon dials as progressive (hard_limit in the pacing hash), and
// leaves it when the rate is back under.
func TestPacingHardLimit(t *testing.T) {
	h := newHarness(t, harnessConfig{
		threads: 10,
		rules:   "answer,ring=25s,talk=1s",
		tweak: func(s *config.Settings) {
			s.Queues[0].Pacing.Mode = config.PacingPredictive
			s.Queues[0].Operators = []config.Operator{{ID: "A", Tier: "operator"}, {ID: "B", Tier: "operator"}}
		},
	})
	qctx, qstop := context.WithCancel(context.Background())
	defer qstop()
	qm, err := hostQueueManager(qctx, h.s, &queueFlags{}, testCell, h.addr, 0, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Stop()
	k := redisq.NewKeys(h.s.Redis.Prefix, testCell)
	day := time.Now().UTC().Format(time.DateOnly)
	set := func(abandoned int) {
		if err := h.rdb.HSet(context.Background(), redisq.PacingDayKey(k), day+":answered", 100, day+":abandoned", abandoned).Err(); err != nil {
			t.Fatal(err)
		}
	}
	set(3) // 3 % = max_abandon
	waitFor(t, 30*time.Second, "the hard limit", func() bool {
		st, _ := redisq.PacingState(context.Background(), h.rdb, k)
		return st["hard_limit"] == "1" && strings.Contains(st["reason"], "hard limit") && st["abandon_rate_day"] == "0.0300"
	})
	set(2)
	waitFor(t, 30*time.Second, "the hard limit to end", func() bool {
		st, _ := redisq.PacingState(context.Background(), h.rdb, k)
		return st["hard_limit"] == "0" && st["abandon_rate_day"] == "0.0200"
	})
}
