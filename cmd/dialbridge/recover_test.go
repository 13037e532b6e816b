package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// TestRecoveryAfterAFailedSettle: the first settle of a dead daemon's
// commands fails (here a call key of the wrong type; in life a Redis error,
// a lost reply or an adopter that died), so they stay in the adopter's own
// claimed list while their hashes still name the dead daemon. Reconciling
// that list later must tell the truth: the call that may be talking is
// `unknown` (never `duplicate`, which says "not dialed"), and the command
// that was only ACKed is dialed — not dropped as a duplicate.
func TestRecoveryAfterAFailedSettle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{threads: 4, rules: "answer,ring=5ms,talk=10ms", noDaemon: true})
	ctx := context.Background()
	k := h.mc.Keys()
	dead := "pbx7-4242"
	// One MULTI: the recovery loop reconciles by itself and must never see
	// the keys deleted and not yet written (an empty hash is a command never
	// ACKed, which is requeued — a different, also correct, settlement).
	restore := func() {
		if _, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, k.Call("f-orig"), k.Call("f-acked"))
			p.HSet(ctx, k.Call("f-orig"), "id", "f-orig", "instance", dead, "state", "originating",
				"attempts", "1", "call_code", "91", "channel_id", "db-f-1", "dialed_at", "2026-11-23T10:00:00.000Z")
			p.HSet(ctx, k.Call("f-acked"), "id", "f-acked", "instance", dead, "state", "acked")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// LPUSH order: f-orig is the newest claim, settled first, and fails.
	h.rdb.LPush(ctx, k.Claimed(dead), cmd("f-acked", "4002"), cmd("f-orig", "4001"))
	h.rdb.SAdd(ctx, k.InstanceSet(), dead)
	h.rdb.Set(ctx, k.Call("f-orig"), "not a hash", 0)
	h.rdb.Set(ctx, k.Call("f-acked"), "not a hash", 0)

	h.start()
	mine := k.Claimed(h.d.instance)
	waitFor(t, 30*time.Second, "the dead list adopted into ours", func() bool {
		return !h.exists(k.Claimed(dead)) && len(h.list(mine)) == 2
	})
	restore()
	// The recovery loop reconciles by itself after the failure; asking at
	// once as well must not settle anything twice.
	if _, err := h.d.cell.ReconcileOwn(ctx); err != nil {
		t.Fatal(err)
	}
	got := h.results(2, 30*time.Second)
	if r := got["f-orig"]; len(r) != 1 || r[0].Status != bridge.StatusUnknown || r[0].CallCode != "91" || !strings.Contains(r[0].Error, dead) {
		t.Errorf("f-orig: %+v, want one unknown naming %s with the call code", r, dead)
	}
	if r := got["f-acked"]; len(r) != 1 || r[0].Status != bridge.StatusAnswered {
		t.Errorf("f-acked: %+v, want it dialed and answered", r)
	}
	if on := h.originatesByNumber(); on["4001"] != 0 || on["4002"] != 1 {
		t.Errorf("originates by number %v: the in-doubt call must never be dialed, the acked one once", on)
	}
	h.quiet(300 * time.Millisecond)
}

// TestRecoveryLeavesALiveOwnersCallAlone: an orphan whose id is owned by a
// live daemon (its heartbeat beats) is a second command with the same id:
// `duplicate`, and the live owner's hash is left as it is.
func TestRecoveryLeavesALiveOwnersCallAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{threads: 4, rules: "answer,ring=5ms,talk=10ms", noDaemon: true})
	ctx := context.Background()
	k := h.mc.Keys()
	dead, alive := "pbx7-1", "pbx7-2"
	h.rdb.HSet(ctx, k.Instance(alive), "pid", 2)
	h.rdb.Expire(ctx, k.Instance(alive), time.Minute)
	h.rdb.HSet(ctx, k.Call("l-1"), "id", "l-1", "instance", alive, "state", "acked")
	h.rdb.LPush(ctx, k.Claimed(dead), cmd("l-1", "4100"))
	h.rdb.SAdd(ctx, k.InstanceSet(), dead, alive)

	h.start()
	got := h.results(1, 30*time.Second)
	if r := got["l-1"]; len(r) != 1 || r[0].Status != bridge.StatusDuplicate {
		t.Errorf("l-1: %+v, want duplicate", r)
	}
	if st := h.hget(k.Call("l-1"), "state"); st != "acked" || h.hget(k.Call("l-1"), "instance") != alive {
		t.Errorf("the live owner's hash was changed: state %q", st)
	}
	if on := h.originatesByNumber(); on["4100"] != 0 {
		t.Errorf("dialed: %v", on)
	}
}

// TestRecoveryOfACommandThisVersionRefuses: a daemon of an older version,
// with a more lenient parser, claimed and dialed a command today's rules
// refuse (here a variable value with a parenthesis). Its orphan must be
// reported `unknown` (it may be talking), not `invalid` ("not dialed").
func TestRecoveryOfACommandThisVersionRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{threads: 2, rules: "answer", noDaemon: true})
	ctx := context.Background()
	k := h.mc.Keys()
	dead := "pbx7-old"
	raw := `{"id":"old-1","number":"4200","variables":{"NOTE":"a(b"}}`
	h.rdb.LPush(ctx, k.Claimed(dead), raw)
	h.rdb.HSet(ctx, k.Call("old-1"), "id", "old-1", "instance", dead, "state", "originating", "attempts", "1", "call_code", "55")
	h.rdb.SAdd(ctx, k.InstanceSet(), dead)
	h.start()
	got := h.results(1, 30*time.Second)
	if r := got["old-1"]; len(r) != 1 || r[0].Status != bridge.StatusUnknown || r[0].CallCode != "55" {
		t.Errorf("old-1: %+v, want one unknown", r)
	}
	if on := h.originatesByNumber(); on["4200"] != 0 {
		t.Errorf("dialed again: %v", on)
	}
}
