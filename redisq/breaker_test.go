package redisq

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

var brT0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

// brClock is a virtual clock shared by the stores of one test.
type brClock struct{ ms atomic.Int64 }

func (c *brClock) now() time.Time      { return brT0.Add(time.Duration(c.ms.Load()) * time.Millisecond) }
func (c *brClock) set(d time.Duration) { c.ms.Store(d.Milliseconds()) }
func (c *brClock) add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// brStore is a daemon's view of the one breaker of the tests.
func brStore(rdb redis.Scripter, prefix string, cfg bridge.BreakerConfig, clk *brClock) *BreakerStore {
	b := NewBreakerStore(rdb, prefix, "carrier1", "pbx1", cfg)
	b.SetClock(clk.now)
	return b
}

// brFlat is a state in the script's terms, comparable with ==.
type brFlat struct {
	mode                        bridge.BreakerMode
	failures                    int
	openedAt, until, probeUntil int64
	probe, last                 string
}

func brFlatOf(s bridge.BreakerState) brFlat {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return brFlat{s.Mode, s.Failures, ms(s.OpenedAt), ms(s.Until), ms(s.ProbeUntil), s.Probe, s.LastEvent}
}

// brStored reads the hash as it is in Redis; a missing hash is the zero
// (closed) state.
func brStored(t testing.TB, ctx context.Context, rdb redis.Cmdable, key string) brFlat {
	t.Helper()
	h, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(h) == 0 {
		return brFlat{mode: bridge.BreakerClosed}
	}
	n := func(f string) int64 {
		v, err := strconv.ParseInt(h[f], 10, 64)
		if err != nil {
			t.Fatalf("field %s = %q: %v", f, h[f], err)
		}
		return v
	}
	return brFlat{bridge.BreakerMode(h["mode"]), int(n("failures")), n("opened_at"), n("until"), n("probe_until"), h["probe"], h["last"]}
}

// brOp is one step of a sequence run through both implementations.
type brOp struct {
	kind    string // "acquire", "record", "view"
	at      time.Duration
	token   string
	verdict bridge.BreakerVerdict
	id      string
}

// brCompare runs ops through the Go rules and through the script, and fails
// at the first step where the decision, the resulting state or the stored
// hash differ. It tallies the Go transitions (from → to mode) it went
// through, so callers can check that a sequence exercised what it meant to.
func brCompare(t *testing.T, ctx context.Context, rdb redis.UniversalClient, prefix string, cfg bridge.BreakerConfig, ops []brOp) map[string]int {
	t.Helper()
	tally := map[string]int{}
	clk := &brClock{}
	b := brStore(rdb, prefix, cfg, clk)
	if err := rdb.Del(ctx, b.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	var s bridge.BreakerState
	for i, op := range ops {
		clk.set(op.at)
		now := clk.now()
		from := cfg.View(s, now).Mode
		var want, got bridge.BreakerState
		switch op.kind {
		case "acquire":
			var d bridge.BreakerDecision
			s, d = cfg.Acquire(s, now, op.token)
			want = s
			a, err := b.Allow(ctx, op.token)
			if err != nil {
				t.Fatal(err)
			}
			if d.Probe {
				tally["probe"]++
			}
			if a.Allow != d.Allow || a.Probe != d.Probe || !a.RetryAt.Equal(d.RetryAt) {
				t.Fatalf("step %d %+v (cfg %+v): script allow %v probe %v retry %s, Go %v %v %s\nops %+v",
					i, op, cfg, a.Allow, a.Probe, a.RetryAt, d.Allow, d.Probe, d.RetryAt, ops[:i+1])
			}
			got = a.To
		case "record":
			s = cfg.Record(s, now, bridge.BreakerEvent{Verdict: op.verdict, Token: op.token, ID: op.id})
			want = s
			tr, err := b.Record(ctx, bridge.BreakerEvent{Verdict: op.verdict, Token: op.token, ID: op.id})
			if err != nil {
				t.Fatal(err)
			}
			got = tr.To
		case "view":
			want = cfg.View(s, now)
			var err error
			if got, err = b.State(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if brFlatOf(got) != brFlatOf(want) {
			t.Fatalf("step %d %+v (cfg %+v): script state %+v, Go %+v\nops %+v", i, op, cfg, brFlatOf(got), brFlatOf(want), ops[:i+1])
		}
		if op.kind != "view" {
			if st := brStored(t, ctx, rdb, b.Key()); st != brFlatOf(want) {
				t.Fatalf("step %d %+v: stored %+v, want %+v", i, op, st, brFlatOf(want))
			}
		}
		if op.kind == "record" && from != want.Mode {
			tally[string(from)+"→"+string(want.Mode)]++
		}
	}
	return tally
}

// brSequences are the hand-written cases: every rule of bridge/breaker.go.
func brSequences() map[string][]brOp {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	acq := func(at int, tok string) brOp { return brOp{kind: "acquire", at: ms(at), token: tok} }
	rec := func(at int, v bridge.BreakerVerdict, tok, id string) brOp {
		return brOp{kind: "record", at: ms(at), verdict: v, token: tok, id: id}
	}
	view := func(at int) brOp { return brOp{kind: "view", at: ms(at)} }
	F, S, N := bridge.BreakerFailure, bridge.BreakerSuccess, bridge.BreakerNeutral
	opened := []brOp{rec(0, F, "a", "a"), rec(1, F, "b", "b"), rec(2, F, "c", "c")} // failures 3
	seq := func(ops ...brOp) []brOp { return append(append([]brOp(nil), opened...), ops...) }
	return map[string][]brOp{
		"count, neutral, reset": {acq(0, "a"), rec(1, F, "a", "a"), rec(2, N, "b", "b"), view(3),
			rec(4, S, "c", "c"), view(5), rec(6, F, "d", "d"), rec(7, F, "e", "e"), rec(8, F, "f", "f"), view(9)},
		"retried record":        {rec(0, F, "a", "a"), rec(0, F, "a", "a"), rec(1, F, "b", ""), rec(2, F, "c", ""), view(3)},
		"open denies":           seq(acq(3, "x"), acq(999, ""), view(1001)),
		"open ignores outcomes": seq(rec(100, F, "x", "x"), rec(200, S, "y", "y"), acq(300, "z"), view(1001)),
		"probe success": seq(acq(1002, ""), acq(1002, "p"), acq(1003, "q"), acq(1004, "p"), rec(1100, S, "x", "x"),
			rec(1101, F, "y", "y"), view(1102), rec(1200, S, "p", "p"), acq(1201, "r"), view(1202)),
		"probe failure": seq(acq(1002, "p"), rec(1100, F, "p", "p"), acq(2099, "q"), acq(2100, "q"), view(2101)),
		"probe neutral": seq(acq(1002, "p"), rec(1100, N, "p", "p"), view(1101), acq(1102, "q"), acq(1103, "r")),
		"lease runs out": seq(acq(1002, "p"), acq(3001, "q"), acq(3002, "q"), rec(3003, S, "p", "p"), view(3004),
			rec(3005, F, "q", "q"), view(3006)),
		"clock steps back": seq(acq(5000, "x"), acq(-60000, "x"), view(-59500), acq(-59000, "p"), acq(-120000, "q"),
			view(-118001), acq(-118000, "q")),
	}
}

var brCfg = bridge.BreakerConfig{Failures: 3, Cooldown: time.Second, ProbeLease: 2 * time.Second}

// brCtx bounds a breaker test generously: they make thousands of round trips
// to miniredis, which under -race on a busy 2-core machine takes a while.
func brCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestBreakerLuaMatchesGo(t *testing.T) {
	ctx := brCtx(t)
	_, rdb := rqRedis(t)
	for name, ops := range brSequences() {
		t.Run(name, func(t *testing.T) { brCompare(t, ctx, rdb, rqPrefix, brCfg, ops) })
	}
	t.Run("random", func(t *testing.T) { brRandom(t, ctx, rdb, rqPrefix, 120) })
}

// brRandom compares n random sequences: few tokens and ids, so probes are
// matched and records retried; time mostly forward, sometimes stepped back.
func brRandom(t *testing.T, ctx context.Context, rdb redis.UniversalClient, prefix string, n int) {
	r := rand.New(rand.NewPCG(14, 7))
	tally := map[string]int{}
	tokens := []string{"", "a", "b", "c", "d"}
	verdicts := []bridge.BreakerVerdict{bridge.BreakerFailure, bridge.BreakerFailure, bridge.BreakerSuccess, bridge.BreakerNeutral}
	for range n {
		cfg := bridge.BreakerConfig{
			Failures:   r.IntN(4), // 0 counts as 1
			Cooldown:   time.Duration(r.IntN(3)) * 500 * time.Millisecond,
			ProbeLease: time.Duration(1+r.IntN(4)) * 300 * time.Millisecond,
		}
		var ops []brOp
		at := time.Duration(0)
		for range 40 {
			switch x := r.IntN(20); {
			case x == 0:
				at -= time.Duration(r.IntN(5000)) * time.Millisecond
			default:
				at += time.Duration(r.IntN(700)) * time.Millisecond
			}
			op := brOp{at: at, token: tokens[r.IntN(len(tokens))]}
			switch r.IntN(5) {
			case 0:
				op.kind = "view"
			case 1, 2:
				op.kind = "acquire"
			default:
				op.kind = "record"
				op.verdict = verdicts[r.IntN(len(verdicts))]
				op.id = tokens[r.IntN(len(tokens))]
			}
			ops = append(ops, op)
		}
		for k, v := range brCompare(t, ctx, rdb, prefix, cfg, ops) {
			tally[k] += v
		}
	}
	// Every rule was exercised, many times.
	for _, k := range []string{"probe", "closed→open", "half_open→open", "half_open→closed"} {
		if tally[k] < n/20 {
			t.Errorf("random sequences went through %q %d times, want ≥ %d (tally %v)", k, tally[k], n/20, tally)
		}
	}
	t.Logf("tally %v", tally)
}

// TestBreakerLuaMatchesGoRealRedis runs the comparison on a real Redis
// (DIALBRIDGE_TEST_REDIS): miniredis' Lua is gopher-lua.
func TestBreakerLuaMatchesGoRealRedis(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	ctx := brCtx(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := "brtest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { rdb.Del(context.Background(), BreakerKey(prefix, "carrier1", "pbx1")) })
	for name, ops := range brSequences() {
		t.Run(name, func(t *testing.T) { brCompare(t, ctx, rdb, prefix, brCfg, ops) })
	}
	t.Run("random", func(t *testing.T) { brRandom(t, ctx, rdb, prefix, 100) })
	// As the daemon's ACL user (DaemonCommands): Redis checks the commands
	// inside the script against it.
	t.Run("acl user", func(t *testing.T) {
		user := prefix + "acl"
		const pass = "breaker-acl-test-password"
		args := []any{"ACL", "SETUSER", user, ">" + pass}
		for _, r := range ACLSetUser(prefix) {
			args = append(args, r)
		}
		if err := rdb.Do(ctx, args...).Err(); err != nil {
			t.Skipf("ACL SETUSER refused (not an admin here?): %v", err)
		}
		t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })
		u := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pass, DisableIdentity: true})
		t.Cleanup(func() { _ = u.Close() })
		ops := brSequences()["probe success"]
		brCompare(t, ctx, u, prefix, brCfg, append(ops, brSequences()["probe failure"]...))
	})
	// The TTL is set on a real server's terms too.
	clk := &brClock{}
	b := brStore(rdb, prefix, brCfg, clk)
	if _, err := b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerFailure, Token: "t"}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, b.Key()).Val(); ttl <= 24*time.Hour || ttl > 24*time.Hour+brCfg.Cooldown+brCfg.ProbeLease {
		t.Fatalf("PTTL %s", ttl)
	}
}

func TestBreakerStoreKeyAndLifetime(t *testing.T) {
	ctx := rqCtx(t)
	m, rdb := rqRedis(t)
	if got, want := BreakerKey("dialbridge", "carrier1", "pbx1"), "dialbridge:{trunk:carrier1}:breaker:pbx1"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	clk := &brClock{}
	b := brStore(rdb, rqPrefix, brCfg, clk)
	// Closed and clean: no key at all, and Allow writes nothing.
	a, err := b.Allow(ctx, "a")
	if err != nil || !a.Allow || a.Probe || a.Changed() {
		t.Fatalf("closed: %+v %v", a, err)
	}
	if m.Exists(b.Key()) {
		t.Fatal("a clean closed breaker left a key")
	}
	// A failure is remembered, with a TTL.
	if _, err := b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerFailure, Token: "a", ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if ttl := m.TTL(b.Key()); ttl <= 24*time.Hour || ttl > 24*time.Hour+brCfg.Cooldown+brCfg.ProbeLease {
		t.Fatalf("TTL %s", ttl)
	}
	// A success forgets everything.
	if _, err := b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerSuccess, Token: "b", ID: "b"}); err != nil {
		t.Fatal(err)
	}
	if m.Exists(b.Key()) {
		t.Fatal("a success left the key")
	}
	// Open, then the transitions a daemon logs: closed → open (once),
	// open → half_open (by whoever takes the probe), half_open → closed.
	var changes []string
	note := func(tr bridge.BreakerTransition) {
		if tr.Changed() {
			changes = append(changes, string(tr.From.Mode)+"→"+string(tr.To.Mode))
		}
	}
	for i := range 3 {
		tr, err := b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerFailure, Token: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		note(tr)
	}
	st, err := b.State(ctx)
	if err != nil || st.Mode != bridge.BreakerOpen || !st.RetryAt().Equal(clk.now().Add(time.Second)) {
		t.Fatalf("state %+v %v", st, err)
	}
	clk.add(time.Second)
	if st, _ := b.State(ctx); st.Mode != bridge.BreakerHalfOpen {
		t.Fatalf("after the cooldown: %s", st.Mode)
	}
	a, err = b.Allow(ctx, "p")
	if err != nil || !a.Allow || !a.Probe {
		t.Fatalf("probe: %+v %v", a, err)
	}
	note(a.BreakerTransition)
	tr, err := b.Release(ctx, "p")
	if err != nil || tr.To.Probe != "" {
		t.Fatalf("release: %+v %v", tr, err)
	}
	note(tr)
	if a, _ = b.Allow(ctx, "q"); !a.Probe {
		t.Fatalf("after the release: %+v", a)
	}
	tr, _ = b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerSuccess, Token: "q", ID: "q"})
	note(tr)
	if want := fmt.Sprint([]string{"closed→open", "open→half_open", "half_open→closed"}); fmt.Sprint(changes) != want {
		t.Fatalf("changes %v, want %s", changes, want)
	}
}

// Several daemons of the host recording and asking at once: one of them
// opens the breaker, one takes the probe.
func TestBreakerConcurrentDaemons(t *testing.T) {
	ctx := brCtx(t)
	_, rdb := rqRedis(t)
	clk := &brClock{}
	cfg := bridge.BreakerConfig{Failures: 5, Cooldown: time.Second, ProbeLease: time.Minute}
	const daemons = 8
	stores := make([]*BreakerStore, daemons)
	for i := range stores {
		stores[i] = brStore(rdb, rqPrefix, cfg, clk)
	}
	for round := range 5 {
		var opened, probes atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, 10*daemons)
		for i, b := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 4 { // 32 failures for a threshold of 5
					tr, err := b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerFailure, Token: fmt.Sprint(round, i, j), ID: fmt.Sprint(round, i, j)})
					if err != nil {
						errs <- err
						return
					}
					if tr.Changed() && tr.To.Mode == bridge.BreakerOpen {
						opened.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		clk.add(time.Second)
		tokens := make([]string, daemons)
		for i, b := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok := fmt.Sprint("probe", round, i)
				for range 3 {
					a, err := b.Allow(ctx, tok)
					if err != nil {
						errs <- err
						return
					}
					if a.Allow && !a.Probe {
						errs <- fmt.Errorf("daemon %d let through a call that is not the probe", i)
					}
					if a.Probe {
						tokens[i] = tok
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var holder string
		for _, tok := range tokens {
			if tok != "" {
				probes.Add(1)
				holder = tok
			}
		}
		if opened.Load() != 1 || probes.Load() != 1 {
			t.Fatalf("round %d: %d transitions to open, %d probes; want 1 and 1", round, opened.Load(), probes.Load())
		}
		// The probe closes it (even rounds), or fails and opens it again
		// (odd rounds), after which a later probe closes it: every round
		// starts closed.
		v := bridge.BreakerSuccess
		if round%2 == 1 {
			v = bridge.BreakerFailure
		}
		tr, err := stores[0].Record(ctx, bridge.BreakerEvent{Verdict: v, Token: holder, ID: holder})
		if err != nil {
			t.Fatal(err)
		}
		if v == bridge.BreakerFailure {
			if tr.To.Mode != bridge.BreakerOpen {
				t.Fatalf("round %d: probe failure left %s", round, tr.To.Mode)
			}
			// Back to closed for the next round, through a probe.
			clk.add(time.Second)
			a, _ := stores[1].Allow(ctx, "closer")
			if _, err := stores[1].Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerSuccess, Token: "closer"}); err != nil || !a.Probe {
				t.Fatalf("round %d: closing probe %+v %v", round, a, err)
			}
		}
		if st, _ := stores[2].State(ctx); st.Mode != bridge.BreakerClosed {
			t.Fatalf("round %d: %s after a probe success", round, st.Mode)
		}
	}
}

// A dead trunk with failures 3 and cooldown 1 s, four daemons of the host
// dialing through it in virtual time (ticks of 20 ms; within a tick the
// daemons run at once on Redis): at most failures + the calls already
// dialing when it opened reach the carrier, then one call (the probe) per
// cooldown; once the trunk comes back, the next probe closes it and every
// daemon dials again.
func TestBreakerDeadTrunkScenario(t *testing.T) {
	for _, failAfter := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run("fails after "+failAfter.String(), func(t *testing.T) {
			brScenario(t, failAfter)
		})
	}
}

func brScenario(t *testing.T, failAfter time.Duration) {
	ctx := brCtx(t)
	_, rdb := rqRedis(t)
	clk := &brClock{}
	cfg := bridge.BreakerConfig{Failures: 3, Cooldown: time.Second, ProbeLease: time.Minute}
	const daemons = 4
	const tick = 20 * time.Millisecond
	const dead = 10 * time.Second // the trunk is dead until then
	type call struct {
		token string
		end   time.Duration
	}
	var (
		mu        sync.Mutex
		dialing   []call
		dialed    []time.Duration // when each call reached the carrier
		probes    []time.Duration
		firstOpen = time.Duration(-1)
		inflight  int // calls dialed and not yet settled
		atOpen    int // calls dialing when it first opened
		closedAt  = time.Duration(-1)
		seq       int
	)
	stores := make([]*BreakerStore, daemons)
	for i := range stores {
		stores[i] = brStore(rdb, rqPrefix, cfg, clk)
	}
	for now := time.Duration(0); now < dead+2*time.Second; now += tick {
		clk.set(now)
		mu.Lock()
		var due []call
		rest := dialing[:0]
		for _, c := range dialing {
			if c.end <= now {
				due = append(due, c)
			} else {
				rest = append(rest, c)
			}
		}
		dialing = rest
		mu.Unlock()
		verdict := bridge.BreakerFailure
		if now >= dead {
			verdict = bridge.BreakerSuccess
		}
		var wg sync.WaitGroup
		errs := make(chan error, daemons+len(due))
		record := func(b *BreakerStore, c call) {
			tr, err := b.Record(ctx, bridge.BreakerEvent{Verdict: verdict, Token: c.token, ID: c.token})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			inflight--
			if tr.Changed() && tr.To.Mode == bridge.BreakerOpen && firstOpen < 0 {
				firstOpen = now
				atOpen = inflight
			}
			if tr.Changed() && tr.To.Mode == bridge.BreakerClosed && closedAt < 0 {
				closedAt = now
			}
		}
		for i, c := range due {
			wg.Add(1)
			go func() { defer wg.Done(); record(stores[i%daemons], c) }()
		}
		for _, b := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mu.Lock()
				seq++
				tok := "c" + strconv.Itoa(seq)
				mu.Unlock()
				a, err := b.Allow(ctx, tok)
				if err != nil {
					errs <- err
					return
				}
				if !a.Allow {
					return
				}
				c := call{token: tok, end: now + failAfter}
				mu.Lock()
				inflight++
				dialed = append(dialed, now)
				if a.Probe {
					probes = append(probes, now)
				}
				if failAfter > 0 {
					dialing = append(dialing, c)
					mu.Unlock()
					return
				}
				mu.Unlock()
				record(b, c)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if firstOpen < 0 {
		t.Fatal("the breaker never opened")
	}
	// Until it opened (its tick included): failures + the calls dialing.
	before := 0
	for _, at := range dialed {
		if at <= firstOpen {
			before++
		}
	}
	if limit := cfg.Failures + atOpen + daemons; before > limit {
		t.Fatalf("%d calls reached the dead trunk by its opening, want ≤ failures %d + %d dialing (+ %d asking in that tick)",
			before, cfg.Failures, atOpen, daemons)
	}
	// While dead, after the opening tick: only probes, a cooldown apart.
	var deadProbes []time.Duration
	for _, at := range dialed {
		if at > firstOpen && at < dead {
			deadProbes = append(deadProbes, at)
		}
	}
	for i := 1; i < len(deadProbes); i++ {
		if gap := deadProbes[i] - deadProbes[i-1]; gap < cfg.Cooldown {
			t.Fatalf("calls at %s and %s reached the dead trunk %s apart (cooldown %s)", deadProbes[i-1], deadProbes[i], gap, cfg.Cooldown)
		}
	}
	cycle := cfg.Cooldown + failAfter
	if want := int((dead - firstOpen) / cycle); len(deadProbes) < want-1 || len(deadProbes) > want+1 {
		t.Fatalf("%d probes in %s of dead trunk, want about %d (one per cooldown)", len(deadProbes), dead-firstOpen, want)
	}
	for _, at := range deadProbes {
		if !brContains(probes, at) {
			t.Fatalf("a call at %s reached the dead trunk without being the probe", at)
		}
	}
	// Revived: the first probe after it closes the breaker, then every
	// daemon dials each tick.
	if closedAt < 0 || closedAt > dead+cycle+tick {
		t.Fatalf("closed at %s, want by %s", closedAt, dead+cycle+tick)
	}
	after := 0
	for _, at := range dialed {
		if at > closedAt+failAfter {
			after++
		}
	}
	if ticks := int((dead + 2*time.Second - closedAt - failAfter) / tick); after < (ticks-2)*daemons {
		t.Fatalf("%d calls in the %d ticks after it closed, want every daemon every tick", after, ticks)
	}
}

func brContains(s []time.Duration, v time.Duration) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
