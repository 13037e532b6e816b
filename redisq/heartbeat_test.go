package redisq

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys(rqPrefix, rqCell)
	var inFlight atomic.Int64
	info := func() HeartbeatInfo {
		return HeartbeatInfo{Version: "1.2.3", Threads: 50, InFlight: int(inFlight.Load())}
	}
	hb := NewHeartbeat(rdb, k, rqInst, info, 10*time.Second, 20*time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- hb.Run(runCtx) }()

	rqEventually(t, 30*time.Second, "first beat", func() bool { return m.Exists(k.Instance(rqInst)) })
	inFlight.Store(7)
	rqEventually(t, 30*time.Second, "in_flight updated", func() bool { return m.HGet(k.Instance(rqInst), "in_flight") == "7" })
	key := k.Instance(rqInst)
	host, _ := os.Hostname()
	for f, want := range map[string]string{
		"instance": rqInst, "cell": rqCell, "host": host, "pid": strconv.Itoa(os.Getpid()),
		"version": "1.2.3", "threads": "50", "in_flight": "7",
	} {
		if got := m.HGet(key, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	for _, f := range []string{"started_at", "beat_at"} {
		if _, err := time.Parse(bridge.TimeFormat, m.HGet(key, f)); err != nil {
			t.Errorf("%s = %q: %v", f, m.HGet(key, f), err)
		}
	}
	if ttl := m.TTL(key); ttl <= 9*time.Second || ttl > 10*time.Second {
		t.Errorf("TTL %s, want 10s", ttl)
	}

	// Another instance, and one of another cell.
	other := NewHeartbeat(rdb, k, "pbx2-9", nil, 0, 0)
	if err := other.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := NewHeartbeat(rdb, NewKeys(rqPrefix, "102"), "pbx3", nil, 0, 0).Beat(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := hb.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Instance != rqInst || list[1].Instance != "pbx2-9" {
		t.Fatalf("instances %+v", list)
	}
	if in := list[0]; in.Threads != 50 || in.InFlight != 7 || in.PID != os.Getpid() || in.Version != "1.2.3" ||
		in.BeatAt.IsZero() || in.StartedAt.IsZero() || in.TTL <= 0 {
		t.Errorf("instance %+v", in)
	}
	if ttl := m.TTL(other.Key()); ttl != DefaultHeartbeatTTL {
		t.Errorf("default TTL %s", ttl)
	}

	if reg, _ := RegisteredInstances(ctx, rdb, k); fmt.Sprint(reg) != "[pbx1-4711 pbx2-9]" {
		t.Fatalf("registered %v", reg)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A clean exit with nothing claimed: gone from everywhere.
	if err := hb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Exists(key) {
		t.Fatal("Delete left the heartbeat")
	}
	if reg, _ := RegisteredInstances(ctx, rdb, k); fmt.Sprint(reg) != "[pbx2-9]" {
		t.Fatalf("registered after Delete %v", reg)
	}
	// A dead instance's heartbeat expires; it stays registered while it
	// has claimed commands (for recovery), and is pruned once they are gone.
	rqClaim(t, m, "pbx2-9", rqRaw("left"))
	m.FastForward(DefaultHeartbeatTTL + time.Second)
	list, err = Instances(ctx, rdb, k)
	if err != nil || len(list) != 0 {
		t.Fatalf("instances after expiry: %+v %v", list, err)
	}
	if reg, _ := RegisteredInstances(ctx, rdb, k); fmt.Sprint(reg) != "[pbx2-9]" {
		t.Fatalf("registered with claimed commands %v", reg)
	}
	m.Del(k.Claimed("pbx2-9"))
	if _, err := Instances(ctx, rdb, k); err != nil {
		t.Fatal(err)
	}
	if reg, _ := RegisteredInstances(ctx, rdb, k); len(reg) != 0 {
		t.Fatalf("registered after pruning %v", reg)
	}
	// Delete with commands left claimed keeps the registration.
	rqClaim(t, m, rqInst, rqRaw("left"))
	if err := hb.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if reg, _ := RegisteredInstances(ctx, rdb, k); fmt.Sprint(reg) != "[pbx1-4711]" {
		t.Fatalf("registered after Delete with claimed commands %v", reg)
	}
}

// TestHeartbeatLastRound: the heartbeat's round (what the systemd watchdog
// watches) moves while beats are written and while Redis is down (an
// outage is not a hang), and stops with Run.
func TestHeartbeatLastRound(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	hb := NewHeartbeat(rdb, NewKeys(rqPrefix, rqCell), rqInst, nil, 10*time.Second, 20*time.Millisecond)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- hb.Run(runCtx) }()
	moves := func(what string) {
		t.Helper()
		since := hb.LastRound()
		rqEventually(t, 20*time.Second, what, func() bool { return hb.LastRound().After(since) })
	}
	moves("a round with Redis up")
	m.SetError("LOADING Redis is loading the dataset in memory")
	moves("a round with Redis refusing")
	m.SetError("")
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	last := hb.LastRound()
	time.Sleep(100 * time.Millisecond) // five periods: a running heartbeat would have gone round
	if !hb.LastRound().Equal(last) {
		t.Error("the round moved after Run returned")
	}
}
