package redisq

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// These tests run the limiter's scripts on miniredis with its clock set by
// hand (miniredis's TIME, inside Lua too, follows SetTime), so every
// decision and every wait is checked to the microsecond. The timing
// properties under concurrency are in trunk_real_test.go, on redis-server.

var trT0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

// trClock is a miniredis whose clock the test moves.
type trClock struct {
	t   testing.TB
	m   *miniredis.Miniredis
	rdb *redis.Client
	now time.Time
}

func newTrClock(t testing.TB) *trClock {
	m, rdb := rqRedis(t)
	c := &trClock{t: t, m: m, rdb: rdb, now: trT0}
	m.SetTime(trT0)
	return c
}

func (c *trClock) advance(d time.Duration) {
	c.now = c.now.Add(d)
	c.m.SetTime(c.now)
}

func (c *trClock) limiter(name string, lim TrunkLimits) *TrunkLimiter {
	c.t.Helper()
	l, err := NewTrunkLimiter(c.rdb, rqPrefix, name, lim)
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// trWant acquires lease and checks the answer.
func trWant(t testing.TB, l *TrunkLimiter, lease string, refused TrunkRefusal, wait time.Duration) TrunkGrant {
	t.Helper()
	g, err := l.Acquire(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if g.OK != (refused == TrunkGranted) || g.Refused != refused || g.Wait != wait {
		t.Fatalf("acquire %q: %+v, want %v after %v", lease, g, refused, wait)
	}
	return g
}

func TestTrunkKeysShareOneSlot(t *testing.T) {
	k := NewTrunkKeys("dialbridge", "carrier-a")
	for _, key := range []string{k.TAT(), k.Leases(), k.Stats(), k.Breaker("pbx1")} {
		if want := "dialbridge:{trunk:carrier-a}:"; key[:len(want)] != want {
			t.Errorf("%s does not start with %s", key, want)
		}
	}
	if k.Name() != "carrier-a" || k.Breaker("pbx1") != "dialbridge:{trunk:carrier-a}:breaker:pbx1" {
		t.Fatalf("%+v", k)
	}
}

// cps 4, burst 1: one Originate every 250 ms, and a refusal says exactly
// when the next token is free.
func TestTrunkRateIsEvenlySpaced(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 4, Burst: 1})
	g := trWant(t, l, "", TrunkGranted, 0)
	if !g.At.Equal(trT0) {
		t.Fatalf("At = %v, want Redis's clock %v", g.At, trT0)
	}
	trWant(t, l, "", TrunkNoToken, 250*time.Millisecond)
	c.advance(100 * time.Millisecond)
	trWant(t, l, "", TrunkNoToken, 150*time.Millisecond)
	c.advance(150*time.Millisecond - time.Microsecond)
	trWant(t, l, "", TrunkNoToken, time.Microsecond)
	c.advance(time.Microsecond)
	trWant(t, l, "", TrunkGranted, 0)
	trWant(t, l, "", TrunkNoToken, 250*time.Millisecond)
	// An idle trunk does not save tokens up beyond its burst.
	c.advance(time.Hour)
	trWant(t, l, "", TrunkGranted, 0)
	trWant(t, l, "", TrunkNoToken, 250*time.Millisecond)
	// The schedule is kept in whole microseconds: Lua's default number
	// formatting would have rounded a 16-digit timestamp.
	want := strconv.FormatInt(c.now.UnixMicro()+250000, 10)
	if got, _ := c.m.Get(l.Keys().TAT()); got != want {
		t.Fatalf("tat = %s, want %s", got, want)
	}
}

func TestTrunkBurst(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 2, Burst: 3})
	for i := 0; i < 3; i++ {
		trWant(t, l, "", TrunkGranted, 0)
	}
	trWant(t, l, "", TrunkNoToken, 500*time.Millisecond)
	c.advance(500 * time.Millisecond)
	trWant(t, l, "", TrunkGranted, 0)
	trWant(t, l, "", TrunkNoToken, 500*time.Millisecond)
	c.advance(10 * time.Second)
	for i := 0; i < 3; i++ {
		trWant(t, l, "", TrunkGranted, 0)
	}
	trWant(t, l, "", TrunkNoToken, 500*time.Millisecond)
}

// A rate that does not divide a second rounds the interval up: never
// faster than cps.
func TestTrunkFractionalCPS(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 3})
	trWant(t, l, "", TrunkGranted, 0)
	trWant(t, l, "", TrunkNoToken, 333334*time.Microsecond)
	l = c.limiter("slow", TrunkLimits{CPS: 0.5})
	trWant(t, l, "", TrunkGranted, 0)
	trWant(t, l, "", TrunkNoToken, 2*time.Second)
}

func TestTrunkUnlimited(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{})
	for i := 0; i < 100; i++ {
		trWant(t, l, "", TrunkGranted, 0)
		trWant(t, l, "l"+strconv.Itoa(i), TrunkGranted, 0)
	}
	u, err := l.Usage(context.Background())
	if err != nil || u.Channels != 100 || u.Granted != 200 || u.ThisSecond != 200 || u.Ahead != 0 {
		t.Fatalf("usage %+v %v", u, err)
	}
}

func TestTrunkChannelCap(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{MaxChannels: 2})
	trWant(t, l, "a", TrunkGranted, 0)
	c.advance(time.Second)
	if g := trWant(t, l, "b", TrunkGranted, 0); g.Channels != 2 {
		t.Fatalf("channels %d", g.Channels)
	}
	// Full: the answer says when the oldest lease would expire unrenewed.
	c.advance(time.Second)
	trWant(t, l, "c", TrunkNoChannel, DefaultTrunkLeaseTTL-2*time.Second)
	// A released slot is free at once.
	if err := l.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	trWant(t, l, "c", TrunkGranted, 0)
	trWant(t, l, "d", TrunkNoChannel, DefaultTrunkLeaseTTL-time.Second)
	if err := l.Release(ctx, "a", "b", "c", "never-held"); err != nil {
		t.Fatal(err)
	}
	trWant(t, l, "d", TrunkGranted, 0)
	if _, err := l.Acquire(ctx, ""); err == nil {
		t.Fatal("a trunk with a channel cap accepted an acquire without lease")
	}
}

// A refusal takes nothing: no token when there is no channel, no channel
// when there is no token.
func TestTrunkRefusalTakesNothing(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 1, MaxChannels: 1})
	trWant(t, l, "a", TrunkGranted, 0)
	c.advance(time.Second) // a token is free again
	for i := 0; i < 5; i++ {
		trWant(t, l, "b", TrunkNoChannel, DefaultTrunkLeaseTTL-time.Second)
	}
	if err := l.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	trWant(t, l, "b", TrunkGranted, 0) // the refusals took no token
	if err := l.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		trWant(t, l, "c", TrunkNoToken, time.Second)
	}
	u, err := l.Usage(ctx)
	if err != nil || u.Channels != 0 || u.NoToken != 5 || u.NoChannel != 5 || u.Granted != 2 || u.Ahead != time.Second {
		t.Fatalf("usage %+v %v", u, err)
	}
}

// An Acquire retried after a lost reply (same lease) takes nothing more.
func TestTrunkAcquireRetryTakesNothingMore(t *testing.T) {
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 4, MaxChannels: 1})
	trWant(t, l, "a", TrunkGranted, 0)
	g := trWant(t, l, "a", TrunkGranted, 0)
	if !g.Held || g.Channels != 1 {
		t.Fatalf("retry: %+v", g)
	}
	c.advance(250 * time.Millisecond)
	if err := l.Release(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	trWant(t, l, "b", TrunkGranted, 0) // one token was taken, not two
}

// Leases expire unless renewed; a renewal never brings back one that is
// gone.
func TestTrunkLeasesExpireUnlessRenewed(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{MaxChannels: 2})
	trWant(t, l, "live", TrunkGranted, 0)
	trWant(t, l, "dead", TrunkGranted, 0) // its daemon is killed now
	for i := 0; i < 5; i++ {
		c.advance(DefaultTrunkRenewEvery)
		lost, err := l.Renew(ctx, []string{"live"})
		if err != nil || len(lost) != 0 {
			t.Fatalf("renew: lost %v, %v", lost, err)
		}
		if c.now.Sub(trT0) < DefaultTrunkLeaseTTL {
			trWant(t, l, "new", TrunkNoChannel, trT0.Add(DefaultTrunkLeaseTTL).Sub(c.now))
		}
	}
	// 15 s after the kill the dead daemon's slot is free; the live one's is
	// not.
	if c.now.Sub(trT0) != DefaultTrunkLeaseTTL {
		t.Fatalf("test arithmetic: %v", c.now.Sub(trT0))
	}
	trWant(t, l, "new", TrunkGranted, 0)
	trWant(t, l, "newer", TrunkNoChannel, DefaultTrunkLeaseTTL) // both renewed or taken just now
	lost, err := l.Renew(ctx, []string{"live", "dead", "new"})
	if err != nil || !slices.Equal(lost, []string{"dead"}) {
		t.Fatalf("renew: lost %v, %v", lost, err)
	}
	if pttl := c.m.TTL(l.Keys().Leases()); pttl <= DefaultTrunkLeaseTTL || pttl > DefaultTrunkLeaseTTL+time.Second {
		t.Fatalf("leases key TTL %v: it should outlive its newest lease by at most 1 s", pttl)
	}
	// Nobody renews: everything comes back.
	c.advance(DefaultTrunkLeaseTTL)
	u, err := l.Usage(ctx)
	if err != nil || u.Channels != 0 {
		t.Fatalf("usage %+v %v", u, err)
	}
	if lost, err := l.Renew(ctx, []string{"live", "new"}); err != nil || len(lost) != 2 {
		t.Fatalf("renew after expiry: lost %v, %v", lost, err)
	}
}

func TestTrunkRenewInBatches(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{})
	var leases []string
	for i := 0; i < 2*renewBatch+7; i++ {
		leases = append(leases, fmt.Sprintf("l%d", i))
		trWant(t, l, leases[i], TrunkGranted, 0)
	}
	c.advance(DefaultTrunkLeaseTTL - time.Second)
	lost, err := l.Renew(ctx, append(leases, "x", "y"))
	if err != nil || !slices.Equal(lost, []string{"x", "y"}) {
		t.Fatalf("lost %v, %v", lost, err)
	}
	c.advance(2 * time.Second)
	if u, err := l.Usage(ctx); err != nil || u.Channels != len(leases) {
		t.Fatalf("usage %+v %v", u, err)
	}
}

func TestTrunkUsageCountsSeconds(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{CPS: 4})
	for i := 0; i < 4; i++ { // 0, 250, 500, 750 ms
		trWant(t, l, "", TrunkGranted, 0)
		c.advance(250 * time.Millisecond)
	}
	trWant(t, l, "", TrunkGranted, 0) // at 1.000 s
	u, err := l.Usage(ctx)
	if err != nil || u.LastSecond != 4 || u.ThisSecond != 1 || u.Ahead != 250*time.Millisecond || !u.At.Equal(c.now) {
		t.Fatalf("usage %+v %v", u, err)
	}
	c.advance(time.Second)
	if u, _ = l.Usage(ctx); u.LastSecond != 1 || u.ThisSecond != 0 || u.Ahead != 0 {
		t.Fatalf("a second later: %+v", u)
	}
	c.advance(time.Second)
	if u, _ = l.Usage(ctx); u.LastSecond != 0 || u.Granted != 5 {
		t.Fatalf("two seconds later: %+v", u)
	}
}

func TestTrunksAreIndependent(t *testing.T) {
	c := newTrClock(t)
	a := c.limiter("a", TrunkLimits{CPS: 1, MaxChannels: 1})
	b := c.limiter("b", TrunkLimits{CPS: 1, MaxChannels: 1})
	trWant(t, a, "x", TrunkGranted, 0)
	trWant(t, b, "x", TrunkGranted, 0) // same lease id, other trunk
	trWant(t, a, "y", TrunkNoChannel, DefaultTrunkLeaseTTL)
	trWant(t, b, "y", TrunkNoChannel, DefaultTrunkLeaseTTL)
}

func TestNewTrunkLimiterRefusesNonsense(t *testing.T) {
	_, rdb := rqRedis(t)
	for _, lim := range []TrunkLimits{{CPS: -1}, {MaxChannels: -1}} {
		if _, err := NewTrunkLimiter(rdb, rqPrefix, "t", lim); err == nil {
			t.Errorf("%+v accepted", lim)
		}
	}
	if _, err := NewTrunkLimiter(rdb, rqPrefix, "", TrunkLimits{}); err == nil {
		t.Error("empty name accepted")
	}
}

func TestTrunkRefusalString(t *testing.T) {
	for r, s := range map[TrunkRefusal]string{TrunkGranted: "granted", TrunkNoToken: "no token", TrunkNoChannel: "no channel", 9: "refusal(9)"} {
		if r.String() != s {
			t.Errorf("%d: %q", r, r.String())
		}
	}
}

// Recovery's adopter keeps an adopted call's slot, even one that expired
// and even over the cap: the call is on the carrier.
func TestTrunkAdopt(t *testing.T) {
	ctx := context.Background()
	c := newTrClock(t)
	l := c.limiter("t", TrunkLimits{MaxChannels: 1})
	trWant(t, l, "101:c1", TrunkGranted, 0) // the daemon that dies
	c.advance(DefaultTrunkLeaseTTL)
	trWant(t, l, "101:c2", TrunkGranted, 0) // its slot came back, and was taken
	if err := l.Adopt(ctx, []string{"101:c1"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := l.Usage(ctx); u.Channels != 2 {
		t.Fatalf("channels %d after adopting over the cap", u.Channels)
	}
	trWant(t, l, "101:c3", TrunkNoChannel, DefaultTrunkLeaseTTL)
	c.advance(DefaultTrunkRenewEvery)
	if lost, err := l.Renew(ctx, []string{"101:c1"}); err != nil || len(lost) != 0 {
		t.Fatalf("renew adopted: %v %v", lost, err)
	}
	if err := l.Adopt(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// Random request times against the GCRA bounds, for several rates and
// bursts: in any window of W at most ⌊burst + W·cps⌋ grants, and a refusal's
// Wait is exact (refused a microsecond before, granted at it).
func TestTrunkRateProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2026))
	for _, lim := range []TrunkLimits{{CPS: 1, Burst: 1}, {CPS: 4, Burst: 1}, {CPS: 2.5, Burst: 2}, {CPS: 10, Burst: 5}, {CPS: 50, Burst: 3}} {
		t.Run(fmt.Sprintf("cps%g-burst%d", lim.CPS, lim.Burst), func(t *testing.T) {
			c := newTrClock(t)
			l := c.limiter("p", lim)
			var grants []time.Time
			interval := time.Duration(float64(time.Second) / lim.CPS)
			for len(grants) < 200 {
				// Mostly bursts of requests, sometimes an idle gap.
				c.advance(time.Duration(rng.Int64N(int64(interval))) / time.Duration(1+rng.IntN(4)))
				if rng.IntN(20) == 0 {
					c.advance(time.Duration(rng.Int64N(int64(3 * time.Second))))
				}
				g, err := l.Acquire(context.Background(), "")
				if err != nil {
					t.Fatal(err)
				}
				if g.OK {
					grants = append(grants, g.At)
					continue
				}
				if g.Refused != TrunkNoToken || g.Wait <= 0 || g.Wait > time.Duration(lim.Burst)*interval+time.Microsecond {
					t.Fatalf("refusal %+v", g)
				}
				if rng.IntN(3) == 0 { // check the wait is exact
					c.advance(g.Wait - time.Microsecond)
					trWant(t, l, "", TrunkNoToken, time.Microsecond)
					c.advance(time.Microsecond)
					grants = append(grants, trWant(t, l, "", TrunkGranted, 0).At)
				}
			}
			for _, w := range []time.Duration{0, 100 * time.Millisecond, 970 * time.Millisecond, time.Second, 5 * time.Second} {
				limit := int(math.Floor(float64(lim.Burst) + w.Seconds()*lim.CPS + 1e-9))
				for i := range grants {
					n := 0
					for j := i; j < len(grants) && grants[j].Sub(grants[i]) <= w; j++ {
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
