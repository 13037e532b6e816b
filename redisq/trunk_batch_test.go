package redisq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The batch acquire (acquireN) on miniredis with the test's clock: its
// answers are checked to the microsecond against what the same requests
// one script each, at the same instant, answer.

// trBatch runs acquireN and fails the test on an error.
func trBatch(t testing.TB, l *TrunkLimiter, leases []string, breaker string, ahead time.Duration) []TrunkGrant {
	t.Helper()
	gs, err := l.acquireN(context.Background(), leases, breaker, ahead)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// A batch grants in order, each reserved token one interval after the
// previous, and stops at the first token beyond the reserve-ahead window:
// that refusal, and the leases after it, take nothing.
func TestTrunkBatchGrantsInOrderAndStops(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("b", TrunkLimits{CPS: 1000, Burst: 2})
	leases := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	gs := trBatch(t, l, leases, "", 5*time.Millisecond)
	// interval 1 ms, tolerance 1 ms: a and b are free, c..g reserved 1..5
	// ms ahead, h would be 6 ms ahead: refused, 1 ms before it fits.
	if len(gs) != 8 {
		t.Fatalf("%d answers, want 7 grants and a refusal: %+v", len(gs), gs)
	}
	for i, g := range gs[:7] {
		want := time.Duration(max(i-1, 0)) * time.Millisecond
		if !g.OK || g.Held || g.Delay != want || !g.At.Equal(trT0) {
			t.Fatalf("grant %d (%s): %+v, want delay %v", i, leases[i], g, want)
		}
	}
	if g := gs[7]; g.OK || g.Refused != TrunkNoToken || g.Wait != time.Millisecond {
		t.Fatalf("refusal %+v", g)
	}
	ctx := context.Background()
	u, err := l.Usage(ctx)
	if err != nil || u.Granted != 7 || u.NoToken != 1 || u.ThisSecond != 7 || u.Ahead != 7*time.Millisecond {
		t.Fatalf("usage %+v %v", u, err)
	}
	// Exactly when the refusal said, h gets the next token, reserved as
	// far ahead as the window allows.
	c.advance(time.Millisecond)
	if g := trBatch(t, l, []string{"h"}, "", 5*time.Millisecond); len(g) != 1 || !g[0].OK || g[0].Delay != 5*time.Millisecond {
		t.Fatalf("h after the wait: %+v", g)
	}
}

// Property: a batch answers exactly what its leases asked one by one at
// the same instant would, and the grants' turns (At + Delay) obey the
// GCRA bound n ≤ burst + W·cps in every window.
func TestTrunkBatchRateProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 2026))
	for _, lim := range []TrunkLimits{{CPS: 1, Burst: 1}, {CPS: 50, Burst: 3}, {CPS: 1000, Burst: 1}, {CPS: 5000, Burst: 10}, {CPS: 333, Burst: 4, MaxChannels: 40}} {
		t.Run(fmt.Sprintf("cps%g-burst%d-max%d", lim.CPS, lim.Burst, lim.MaxChannels), func(t *testing.T) {
			c := newTrClock(t)
			batch, single := c.limiter("batch", lim), c.limiter("single", lim)
			interval := time.Duration(float64(time.Second) / lim.CPS)
			var turns []time.Time
			id := 0
			for round := 0; len(turns) < 400 && round < 5000; round++ {
				c.advance(time.Duration(rng.Int64N(int64(3*interval) + 1)))
				if rng.IntN(30) == 0 {
					c.advance(time.Duration(rng.Int64N(int64(2 * time.Second))))
				}
				ahead := []time.Duration{0, time.Millisecond, 20 * time.Millisecond, 3 * interval}[rng.IntN(4)]
				leases := make([]string, 1+rng.IntN(gateBatch))
				for i := range leases {
					id++
					leases[i] = fmt.Sprint("l", id)
				}
				gs := trBatch(t, batch, leases, "", ahead)
				var want []TrunkGrant
				for _, lease := range leases {
					g, err := single.acquire(context.Background(), lease, "", ahead)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, g)
					if !g.OK {
						break
					}
				}
				if !slices.Equal(gs, want) {
					t.Fatalf("round %d: batch %+v\nsingles %+v", round, gs, want)
				}
				for _, g := range gs {
					if g.OK {
						turns = append(turns, g.At.Add(g.Delay))
					}
				}
				// Calls end now and then, on both trunks alike.
				if lim.MaxChannels > 0 && rng.IntN(2) == 0 {
					end := leases[:rng.IntN(len(leases)+1)]
					if err := errors.Join(batch.Release(context.Background(), end...), single.Release(context.Background(), end...)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(turns) < 100 {
				t.Fatalf("only %d grants", len(turns))
			}
			slices.SortFunc(turns, func(a, b time.Time) int { return a.Compare(b) })
			for _, w := range []time.Duration{0, time.Millisecond, 100 * time.Millisecond, 970 * time.Millisecond, time.Second} {
				limit := int(math.Floor(float64(max(lim.Burst, 1)) + w.Seconds()*lim.CPS + 1e-9))
				for i := range turns {
					n := 0
					for j := i; j < len(turns) && turns[j].Sub(turns[i]) <= w; j++ {
						n++
					}
					if n > limit {
						t.Fatalf("%d grants within %v from grant %d, limit %d", n, w, i, limit)
					}
				}
			}
		})
	}
}

// The channel cap stops a batch: the first lease without a slot is told
// when the oldest lease expires, and it and the rest take nothing, not
// even a token.
func TestTrunkBatchChannelCap(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("b", TrunkLimits{CPS: 100, Burst: 10, MaxChannels: 3})
	l.SetLeaseTTL(10 * time.Second)
	gs := trBatch(t, l, []string{"a", "b", "c", "d", "e"}, "", 0)
	if len(gs) != 4 {
		t.Fatalf("answers %+v", gs)
	}
	for i, g := range gs[:3] {
		if !g.OK || g.Channels != i+1 {
			t.Fatalf("grant %d: %+v", i, g)
		}
	}
	if g := gs[3]; g.Refused != TrunkNoChannel || g.Wait != 10*time.Second || g.Channels != 3 {
		t.Fatalf("refusal %+v", g)
	}
	ctx := context.Background()
	u, _ := l.Usage(ctx)
	if u.Granted != 3 || u.NoChannel != 1 || u.Channels != 3 || u.Ahead != 30*time.Millisecond {
		t.Fatalf("usage %+v", u)
	}
	if lost, _ := l.Renew(ctx, []string{"a", "b", "c", "d", "e"}); !slices.Equal(lost, []string{"d", "e"}) {
		t.Fatalf("lost %v", lost)
	}
	if err := l.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	gs = trBatch(t, l, []string{"d", "e"}, "", 0)
	if len(gs) != 2 || !gs[0].OK || gs[1].Refused != TrunkNoChannel {
		t.Fatalf("after a release: %+v", gs)
	}
}

// A lease already held inside a batch is answered Held and takes neither
// a token nor a slot; the leases after it are served as usual.
func TestTrunkBatchHeld(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("b", TrunkLimits{CPS: 1000, Burst: 1, MaxChannels: 10})
	trWant(t, l, "a", TrunkGranted, 0)
	c.advance(time.Second)
	gs := trBatch(t, l, []string{"b", "a", "c"}, "", 5*time.Millisecond)
	if len(gs) != 3 || !gs[0].OK || gs[0].Delay != 0 || !gs[1].OK || !gs[1].Held ||
		!gs[2].OK || gs[2].Held || gs[2].Delay != time.Millisecond || gs[2].Channels != 3 {
		t.Fatalf("answers %+v", gs)
	}
	if u, _ := l.Usage(context.Background()); u.Granted != 3 || u.Channels != 3 {
		t.Fatalf("usage %+v", u)
	}
}

// A breaker stored open refuses every lease of the batch but a held one,
// taking nothing; closed, the batch is granted.
func TestTrunkBatchBreakerPeek(t *testing.T) {
	c := newTrClock(t)
	ctx := context.Background()
	l := c.limiter("gw1", TrunkLimits{CPS: 10, Burst: 5, MaxChannels: 5})
	trWant(t, l, "held", TrunkGranted, 0)
	br := BreakerKey(rqPrefix, "gw1", "h1")
	for _, mode := range []string{"open", "half_open"} {
		c.rdb.HSet(ctx, br, "mode", mode)
		gs := trBatch(t, l, []string{"x", "held", "y"}, br, 20*time.Millisecond)
		if len(gs) != 3 || gs[0].Refused != TrunkBreaker || !gs[1].Held || gs[2].Refused != TrunkBreaker {
			t.Fatalf("%s breaker: %+v", mode, gs)
		}
		if u, _ := l.Usage(ctx); u.Channels != 1 || u.Granted != 1 || u.NoToken != 0 {
			t.Fatalf("%s breaker took something: %+v", mode, u)
		}
	}
	c.rdb.HSet(ctx, br, "mode", "closed")
	gs := trBatch(t, l, []string{"x", "held", "y"}, br, 0)
	if len(gs) != 3 || !gs[0].OK || !gs[1].Held || !gs[2].OK {
		t.Fatalf("closed breaker: %+v", gs)
	}
}

// trScripts counts the acquire scripts a client sends, and their leases.
type trScripts struct {
	mu      sync.Mutex
	scripts int
	most    int // leases in the biggest
}

func (h *trScripts) count(cmd redis.Cmder) {
	a := cmd.Args()
	if len(a) < 3 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return
	}
	if a[1] != trunkAcquireScript.Hash() {
		if s, ok := a[1].(string); !ok || s != trunkAcquireScript.Hash() {
			return
		}
	}
	nk, _ := a[2].(int)
	h.mu.Lock()
	h.scripts++
	h.most = max(h.most, len(a)-3-nk-5)
	h.mu.Unlock()
}

func (h *trScripts) get() (scripts, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.scripts, h.most
}

// Through the gate: calls queued behind a saturated trunk are served many
// to a script, each still at its own turn; calls peeking an open breaker
// are refused while the others in the queue are granted; callers that
// leave hold nothing.
func TestTrunkGateServesTheQueueInBatches(t *testing.T) {
	_, rdb := rqRedis(t)
	hook := &trScripts{}
	rdb.AddHook(eachCommand(hook.count))
	const calls = 120
	g, _ := trGate(t, rdb, TrunkLimits{CPS: 1000, Burst: 1, MaxChannels: calls})
	ctx := rqCtx(t)
	br := BreakerKey(rqPrefix, "g", "h1")
	rdb.HSet(ctx, br, "mode", "open")
	// Book the trunk's schedule 500 ms ahead, so that every call queues.
	if err := rdb.Set(ctx, g.Limiter().Keys().TAT(), time.Now().Add(500*time.Millisecond).UnixMicro(), 0).Err(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		turns []time.Time
		wg    sync.WaitGroup
	)
	left, cancelLeft := context.WithCancel(ctx)
	call := func(i int) {
		defer wg.Done()
		lease := fmt.Sprint("c", i)
		switch {
		case i%10 == 3:
			if _, err := g.AcquireUnlessOpen(ctx, lease, br); !errors.Is(err, ErrBreakerNotClosed) {
				t.Errorf("%s behind an open breaker: %v", lease, err)
			}
		case i%10 == 7:
			if _, err := g.Acquire(left, lease); !errors.Is(err, context.Canceled) {
				t.Errorf("%s left: %v", lease, err)
			}
		default:
			gr, err := g.Acquire(ctx, lease)
			if err != nil || !gr.OK {
				t.Errorf("%s: %+v %v", lease, gr, err)
				return
			}
			mu.Lock()
			turns = append(turns, gr.At)
			mu.Unlock()
		}
	}
	trWaitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	// The first call is refused and queues; the others find a queue and
	// join it without asking Redis.
	wg.Add(1)
	go call(0)
	trWaitFor("the first call to queue", func() bool { return g.Queued() == 1 })
	direct, _ := hook.get()
	for i := 1; i < calls; i++ {
		wg.Add(1)
		go call(i)
	}
	trWaitFor("every call to queue", func() bool { return g.Queued() == calls })
	cancelLeft()
	wg.Wait()
	want := calls - 2*calls/10
	if len(turns) != want {
		t.Fatalf("%d grants, want %d", len(turns), want)
	}
	slices.SortFunc(turns, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(turns); i++ {
		if gap := turns[i].Sub(turns[i-1]); gap < time.Millisecond {
			t.Fatalf("turns %v apart at cps 1000", gap)
		}
	}
	// One script per call would be at least 96 more; batches grant up to
	// half a reserve-ahead window's worth (11 tokens at cps 1000) each,
	// less where a call peeking the breaker splits the queue.
	if scripts, most := hook.get(); scripts-direct > want/2 || most < 2 {
		t.Errorf("%d scripts for %d grants, the biggest with %d leases", scripts-direct, want, most)
	} else {
		t.Logf("%d scripts for %d grants, the biggest with %d leases", scripts-direct, want, most)
	}
	trWaitFor("the trunk to hold just the granted calls", func() bool {
		u, err := g.Limiter().Usage(ctx)
		return err == nil && u.Channels == want && g.Held() == want
	})
}
