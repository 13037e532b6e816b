package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/redistest"
	"github.com/multcall/dialbridge/redisq"
)

// notDurableStore answers MarkDialing with bridge.ErrNotDurable (the WAIT
// fell short, the step itself ran) for the ids in fails, as many times as
// their count says (-1: always).
type notDurableStore struct {
	bridge.Store
	mu    sync.Mutex
	fails map[string]int
}

func (s *notDurableStore) MarkDialing(ctx context.Context, c *bridge.Call) error {
	if err := s.Store.MarkDialing(ctx, c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.fails[c.Cmd.ID]; n != 0 {
		s.fails[c.Cmd.ID] = n - 1
		return fmt.Errorf("%w (WAIT 1: 0 acknowledged within 100ms)", bridge.ErrNotDurable)
	}
	return nil
}

// TestNotDurableNeverDialed: a dialing decision no replica acknowledges is
// not dialed; it is tried again within the command's ring time (the budget
// AMI waits share), then the command ends failed, never dialed, with an
// error that says so. One acknowledged late is dialed once.
func TestNotDurableNeverDialed(t *testing.T) {
	t.Parallel()
	st := &notDurableStore{fails: map[string]int{"never": -1, "late": 3}}
	h := newHarness(t, harnessConfig{threads: 4, rules: "answer,ring=5ms,talk=10ms",
		wrap: func(s bridge.Store) bridge.Store { st.Store = s; return st }})
	h.push(cmd("never", "5511000001", `"timeout_s":1`), cmd("late", "5511000002", `"timeout_s":5`))
	rs := h.results(2, 30*time.Second)
	never, late := rs["never"], rs["late"]
	if len(never) != 1 || never[0].Status != bridge.StatusFailed || never[0].Attempts != 0 ||
		!strings.Contains(never[0].Error, "no replica acknowledged") || !strings.Contains(never[0].Error, "never dialed") {
		t.Fatalf("never: %+v", never)
	}
	if len(late) != 1 || late[0].Status != bridge.StatusAnswered || late[0].Attempts != 1 {
		t.Fatalf("late: %+v", late)
	}
	n := h.originatesByNumber()
	if n["5511000001"] != 0 || n["5511000002"] != 1 {
		t.Fatalf("originates by number %v: want none for the unacknowledged one, one for the late one", n)
	}
}

// TestWaitReplicasDaemon: the daemon with redis.wait_replicas 1 on a master
// with one replica answers calls as usual; when the replica stops
// acknowledging it claims nothing and /healthz (the hold reason) and the
// heartbeat say why; when the replica is back, the commands that waited in
// the dial list are dialed.
func TestWaitReplicasDaemon(t *testing.T) {
	if os.Getenv("DIALBRIDGE_TEST_REDIS") == "" || !redistest.Available() {
		t.Skip("needs redis-server: run by make integration")
	}
	t.Parallel()
	master, reps := redistest.Replicated(t, 1)
	h := newHarness(t, harnessConfig{threads: 50, rules: "answer,ring=5ms,talk=20ms", redisAddr: master.Addr(),
		tweak: func(s *config.Settings) { s.Redis.WaitReplicas = 1 }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var cmds []string
	for i := 0; i < 200; i++ {
		cmds = append(cmds, cmd(fmt.Sprintf("w%d", i), fmt.Sprintf("55%04d", i)))
	}
	h.push(cmds...)
	for id, r := range h.results(200, time.Minute) {
		if len(r) != 1 || r[0].Status != bridge.StatusAnswered {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if n, _ := h.rdb.HGet(ctx, redisq.NewKeys(h.s.Redis.Prefix, testCell).Stats(), "durable_waits").Int(); n == 0 {
		t.Fatal("no WAIT was sent")
	}

	// The replica leaves: nothing more is claimed, and the daemon says why.
	repl := reps[0].Client(t)
	if err := repl.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the hold reason", func() bool { return strings.Contains(h.d.holdReason(), "no replica acknowledged") })
	keys := redisq.NewKeys(h.s.Redis.Prefix, testCell)
	beat := keys.Instance(h.d.instance)
	waitFor(t, 30*time.Second, "the heartbeat's hold field", func() bool {
		return strings.Contains(h.rdb.HGet(ctx, beat, "hold").Val(), "no replica acknowledged")
	})
	// Nothing is claimed, and a command a BLMOVE already waiting when the
	// hold began returns goes back to the front of dial (bridge.Holder;
	// bridge's TestClaimDuringHoldGoesBack forces that case). Absence is
	// checked over a while: a slow machine can only make it pass without
	// proving much, never fail.
	h.push(cmd("held1", "5599001", `"timeout_s":30`), cmd("held2", "5599002", `"timeout_s":30`), cmd("held3", "5599003", `"timeout_s":30`))
	time.Sleep(1500 * time.Millisecond) // the BLMOVE in flight returns within 1 s
	waitFor(t, 30*time.Second, "all three commands back in dial, in order", func() bool {
		l := h.rdb.LRange(ctx, keys.Dial(), 0, -1).Val()
		return len(l) == 3 && strings.Contains(l[2], "held1") && strings.Contains(l[0], "held3")
	})
	if n := h.rdb.LLen(ctx, keys.Claimed(h.d.instance)).Val(); n != 0 {
		t.Fatalf("%d commands claimed while no replica acknowledges", n)
	}
	left := h.rdb.LLen(ctx, keys.Dial()).Val()
	time.Sleep(1500 * time.Millisecond)
	if n := h.rdb.LLen(ctx, keys.Dial()).Val(); n != left {
		t.Fatalf("claimed while no replica acknowledges: dial went from %d to %d", left, n)
	}
	if n := h.sim.OriginateCount(); n != 200 {
		t.Fatalf("%d originates, want the first 200 only while no replica acknowledges", n)
	}

	// Back: the waiting commands are claimed and dialed.
	if err := repl.Do(ctx, "REPLICAOF", "127.0.0.1", fmt.Sprint(master.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	rs := h.results(3, time.Minute)
	for _, id := range []string{"held1", "held2", "held3"} {
		if r := rs[id]; len(r) != 1 || r[0].Status != bridge.StatusAnswered {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if h.d.holdReason() != "" {
		t.Fatalf("still holding: %s", h.d.holdReason())
	}
}
