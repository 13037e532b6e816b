package redisq

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
)

func TestParseConfirmation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		id, code string
		err      string
	}{
		{`{"id": "c-000123", "call_code": "987654"}`, "c-000123", "987654", ""},
		{`{"id":"c.1:x_y-z","call_code":987654}`, "c.1:x_y-z", "987654", ""},
		{`{"id":"c1","call_code":123456789012345678901234567890}`, "c1", "123456789012345678901234567890", ""},
		{`{"id":"c1","call_code":"Ação 42","extra":[1,2]}`, "c1", "Ação 42", ""},
		{` {"id":"c1","call_code":"x"} `, "c1", "x", ""},
		{`not json`, "", "", "not a JSON object"},
		{`[]`, "", "", "not a JSON object"},
		{`{"id":"c1","call_code":"x"`, "", "", "malformed JSON"},
		{`{"id":5,"call_code":"x"}`, "", "", "id must be a string"},
		{`{"call_code":"x"}`, "", "", "id must be a string"},
		{`{"id":"","call_code":"x"}`, "", "", "is not 1-64"},
		{`{"id":"bad id","call_code":"x"}`, "", "", "is not 1-64"},
		{`{"id":"` + strings.Repeat("a", 65) + `","call_code":"x"}`, "", "", "is not 1-64"},
		{`{"id":"c1"}`, "", "", "call_code is required"},
		{`{"id":"c1","call_code":null}`, "", "", "call_code is required"},
		{`{"id":"c1","call_code":""}`, "", "", "1-64 characters"},
		{`{"id":"c1","call_code":"` + strings.Repeat("9", 65) + `"}`, "", "", "1-64 characters"},
		{`{"id":"c1","call_code":"a\nb"}`, "", "", "control"},
		{`{"id":"c1","call_code":"a\u0000b"}`, "", "", "control"},
		{`{"id":"c1","call_code":"a\u0085b"}`, "", "", "control"},
		{`{"id":"c1","call_code":1.5}`, "", "", "whole non-negative number"},
		{`{"id":"c1","call_code":1e5}`, "", "", "whole non-negative number"},
		{`{"id":"c1","call_code":-3}`, "", "", "string or a number"},
		{`{"id":"c1","call_code":true}`, "", "", "string or a number"},
		{`{"id":"c1","call_code":{"a":1}}`, "", "", "string or a number"},
		{`{"id":"c1","call_code":"x","pad":"` + strings.Repeat("p", MaxConfirmBytes) + `"}`, "", "", "more than the"},
	}
	for _, tt := range tests {
		t.Run(shorten(tt.in, 40), func(t *testing.T) {
			id, code, err := ParseConfirmation([]byte(tt.in))
			if tt.err == "" {
				if err != nil || id != tt.id || code != tt.code {
					t.Fatalf("got %q %q %v, want %q %q", id, code, err, tt.id, tt.code)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

// rqRouter runs a router until the test ends (or stop is called).
func rqRouter(t *testing.T, rdb *redis.Client, inst string, log zerolog.Logger) (*ConfirmRouter, func()) {
	t.Helper()
	r := NewConfirmRouter(rdb, rqPrefix, rqCell, inst, log)
	return r, rqRun(t, r)
}

// rqRun runs r until the test ends or stop is called.
func rqRun(t *testing.T, r *ConfirmRouter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func rqConfirm(id, code string) string { return fmt.Sprintf(`{"id":%q,"call_code":%q}`, id, code) }

func rqRecv(t *testing.T, ch <-chan bridge.Confirmation, d time.Duration) (bridge.Confirmation, bool) {
	t.Helper()
	select {
	case c := <-ch:
		return c, true
	case <-time.After(d):
		return bridge.Confirmation{}, false
	}
}

func TestRouterDeliversToTheRightWaiter(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	r, _ := rqRouter(t, rdb, rqInst, zerolog.Nop())
	k := NewKeys(rqPrefix, rqCell)

	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c-%04d", i)
	}
	// Registration churn alongside: thousands of Expect/cancel that must
	// neither receive anything nor disturb the real waiters.
	churnCtx, stopChurn := context.WithCancel(context.Background())
	var churn sync.WaitGroup
	for g := 0; g < 4; g++ {
		churn.Add(1)
		go func(g int) {
			defer churn.Done()
			for i := 0; churnCtx.Err() == nil; i++ {
				ch, cancel := r.Expect(fmt.Sprintf("churn-%d-%d", g, i))
				select {
				case c := <-ch:
					t.Errorf("churn waiter got %+v", c)
				default:
				}
				cancel()
				cancel() // idempotent
			}
		}(g)
	}

	var wg sync.WaitGroup
	ready := make(chan struct{}, n)
	errs := make(chan string, n)
	for i, id := range ids {
		wg.Add(1)
		go func(i int, id string) {
			defer wg.Done()
			ch, cancel := r.Expect(id)
			defer cancel()
			ready <- struct{}{}
			select {
			case c := <-ch:
				if c.ID != id || c.CallCode != fmt.Sprint(900000+i) || c.At.IsZero() {
					errs <- fmt.Sprintf("%s got %+v", id, c)
				}
			case <-time.After(15 * time.Second):
				errs <- id + ": no confirmation"
			}
			select {
			case c := <-ch:
				errs <- fmt.Sprintf("%s got a second value %+v", id, c)
			default:
			}
		}(i, id)
	}
	for range ids {
		<-ready
	}
	stranger, cancelStranger := r.Expect("nobody-confirms-me")
	defer cancelStranger()

	perm := rand.Perm(n)
	msgs := make([]string, n)
	for j, i := range perm {
		msgs[j] = rqConfirm(ids[i], fmt.Sprint(900000+i))
	}
	if _, err := m.Lpush(k.Confirm(), msgs[0]); err != nil { // wakes the blocked BRPOP
		t.Fatal(err)
	}
	if _, err := m.Push(k.Confirm(), msgs[1:]...); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	stopChurn()
	churn.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if _, ok := rqRecv(t, stranger, 50*time.Millisecond); ok {
		t.Error("a waiter for another id received a confirmation")
	}
	cancelStranger()
	if w := r.Waiting(); w != 0 {
		t.Errorf("%d registrations left", w)
	}
	if m.Exists(k.Confirm()) {
		t.Error("confirm list not drained")
	}
	if s := rqStats(t, rdb); s["confirm_unknown"] != 0 || s["confirm_invalid"] != 0 {
		t.Errorf("stats %v", s)
	}
}

func TestRouterDropsMalformed(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	var logs rqLog
	r, _ := rqRouter(t, rdb, rqInst, logs.logger())
	k := NewKeys(rqPrefix, rqCell)
	ch, cancel := r.Expect("ok1")
	defer cancel()

	bad := []string{
		`not json`, `[]`, `{"id":5,"call_code":"1"}`, `{"id":"bad id","call_code":"1"}`,
		`{"id":"ok1"}`, `{"id":"ok1","call_code":""}`, `{"id":"ok1","call_code":"a\u0001b"}`,
		`{"id":"ok1","call_code":1.5}`, `{"id":"ok1","call_code":-3}`, `{"id":"ok1","call_code":true}`,
		`{"id":"ok1","call_code":"` + strings.Repeat("1", 65) + `"}`, "\x00\xff\r\nforged log line",
		`{"id":"ok1","call_code":"x","pad":"` + strings.Repeat("p", 5000) + `"}`,
	}
	// Oldest at the right: the bad ones are read first.
	for _, b := range bad {
		if _, err := m.Lpush(k.Confirm(), b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Lpush(k.Confirm(), `{"id":"ok1","call_code":12345678901234567890123}`); err != nil {
		t.Fatal(err)
	}
	c, ok := rqRecv(t, ch, 10*time.Second)
	if !ok || c.ID != "ok1" || c.CallCode != "12345678901234567890123" {
		t.Fatalf("got %+v %v", c, ok)
	}
	rqEventually(t, 30*time.Second, "confirm_invalid counted", func() bool {
		return rqStats(t, rdb)["confirm_invalid"] == int64(len(bad))
	})
	out := logs.String()
	lines := strings.Count(out, "malformed confirmation ignored")
	if lines == 0 || lines > routerLogBurst {
		t.Errorf("%d malformed-confirmation log lines for %d messages, want 1..%d", lines, len(bad), routerLogBurst)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "{") || !strings.HasSuffix(l, "}") {
			t.Errorf("log line is not one JSON object: %q", l)
		}
	}
	if s := rqStats(t, rdb); s["confirm_unknown"] != 0 {
		t.Errorf("stats %v", s)
	}
}

func TestRouterCountsUnknown(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	// late: its call ended (ack_timeout) before the confirmation came.
	if _, err := q.Begin(ctx, rqCall("late", rqRaw("late"), "t1")); err != nil {
		t.Fatal(err)
	}
	rqClaim(t, m, rqInst, rqRaw("late"))
	if ok, err := q.Finish(ctx, rqRaw("late"), rqResult("late", bridge.StatusAckTimeout)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// mine-no-waiter: acked by this instance, nobody waits (any more).
	if _, err := q.Begin(ctx, rqCall("mine", rqRaw("mine"), "t2")); err != nil {
		t.Fatal(err)
	}
	// wrong-type: its call key is not a hash: the script fails for good,
	// which must not wedge the router.
	if err := m.Set(k.Call("wrong-type"), "x"); err != nil {
		t.Fatal(err)
	}
	var logs rqLog
	r, _ := rqRouter(t, rdb, rqInst, logs.logger())
	for _, id := range []string{"never-seen", "late", "mine", "wrong-type"} {
		if _, err := m.Lpush(k.Confirm(), rqConfirm(id, "1")); err != nil {
			t.Fatal(err)
		}
	}
	rqEventually(t, 30*time.Second, "confirm_unknown = 4", func() bool {
		return rqStats(t, rdb)["confirm_unknown"] == 4
	})
	time.Sleep(100 * time.Millisecond)
	if s := rqStats(t, rdb); s["confirm_unknown"] != 4 || s["confirm_forwarded"] != 0 {
		t.Errorf("stats %v", s)
	}
	if n := strings.Count(logs.String(), "nobody waits for"); n != 4 {
		t.Errorf("%d unknown-confirmation log lines, want 4:\n%s", n, logs.String())
	}
	// Still routing.
	ch, cancel := r.Expect("next")
	defer cancel()
	if _, err := m.Lpush(k.Confirm(), rqConfirm("next", "2")); err != nil {
		t.Fatal(err)
	}
	if _, ok := rqRecv(t, ch, 30*time.Second); !ok {
		t.Fatal("router stuck after a failed script")
	}
	for _, key := range m.Keys() {
		if strings.Contains(key, ":confirm") {
			t.Errorf("left %s", key)
		}
	}
}

// TestRouterForwards: two instances serve one cell and share its confirm
// list. A confirmation read by the instance that did not ack the call goes
// to the other's private list, and the other's router delivers it.
func TestRouterForwards(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	const a, b = "pbx1-1", "pbx2-2"
	qa := NewQueue(rdb, rqPrefix, rqCell, a)
	k := qa.Keys()
	ca := rqCall("x1", rqRaw("x1"), "ta")
	ca.Instance = a
	ra := NewConfirmRouter(rdb, rqPrefix, rqCell, a, zerolog.Nop()) // not running yet
	ch, cancel := ra.Expect("x1")
	defer cancel()
	if _, err := qa.Begin(ctx, ca); err != nil {
		t.Fatal(err)
	}

	_, stopB := rqRouter(t, rdb, b, zerolog.Nop())
	msg := rqConfirm("x1", "777")
	if _, err := m.Lpush(k.Confirm(), msg); err != nil {
		t.Fatal(err)
	}
	rqEventually(t, 30*time.Second, "forward to a's private list", func() bool {
		l := rqList(t, m, k.ConfirmFor(a))
		return len(l) == 1 && l[0] == msg
	})
	if ttl := m.TTL(k.ConfirmFor(a)); ttl <= 0 || ttl > forwardListTTL {
		t.Errorf("private list TTL %s", ttl)
	}
	stopB()

	rqRun(t, ra)
	c, ok := rqRecv(t, ch, 30*time.Second)
	if !ok || c.ID != "x1" || c.CallCode != "777" {
		t.Fatalf("a got %+v %v", c, ok)
	}
	if s := rqStats(t, rdb); s["confirm_forwarded"] != 1 || s["confirm_unknown"] != 0 {
		t.Errorf("stats %v", s)
	}
	if m.Exists(k.ConfirmFor(a)) || m.Exists(k.ConfirmFor(b)) {
		t.Error("private lists left")
	}
}

// TestRouterNeverPingPongs: a message read from a private list is never
// forwarded again, even when the call hash names another instance.
func TestRouterNeverPingPongs(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	const a, b = "pbx1-1", "pbx2-2"
	qa := NewQueue(rdb, rqPrefix, rqCell, a)
	k := qa.Keys()
	for _, id := range []string{"y1", "y2"} {
		c := rqCall(id, rqRaw(id), "t-"+id)
		c.Instance = a
		if _, err := qa.Begin(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	rqRouter(t, rdb, a, zerolog.Nop())
	rqRouter(t, rdb, b, zerolog.Nop())
	// y1: owned by a, nobody waits there. Whoever reads it, it ends unknown
	// after at most one forward.
	if _, err := m.Lpush(k.Confirm(), rqConfirm("y1", "1")); err != nil {
		t.Fatal(err)
	}
	// y2: sits in b's private list (say a third instance forwarded it by
	// mistake); b must not send it on to a.
	if _, err := m.Lpush(k.ConfirmFor(b), rqConfirm("y2", "2")); err != nil {
		t.Fatal(err)
	}
	rqEventually(t, 30*time.Second, "both counted unknown", func() bool {
		return rqStats(t, rdb)["confirm_unknown"] == 2
	})
	time.Sleep(600 * time.Millisecond) // a ping-pong would show by now
	s := rqStats(t, rdb)
	if s["confirm_unknown"] != 2 || s["confirm_forwarded"] > 1 {
		t.Errorf("stats %v", s)
	}
	for _, key := range []string{k.Confirm(), k.ConfirmFor(a), k.ConfirmFor(b)} {
		if l := rqList(t, m, key); len(l) != 0 {
			t.Errorf("%s still holds %q", key, l)
		}
	}
}

// TestRouterHandsBackUnread: a confirmation delivered to a registration
// whose caller stops waiting without reading it (a duplicate that was
// waiting for the same id) is routed again: to the instance that acked.
func TestRouterHandsBackUnread(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	const a, b = "pbx1-1", "pbx2-2"
	qa := NewQueue(rdb, rqPrefix, rqCell, a)
	k := qa.Keys()
	c := rqCall("z1", rqRaw("z1"), "tz")
	c.Instance = a
	if _, err := qa.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	rb, _ := rqRouter(t, rdb, b, zerolog.Nop())
	// b claimed two duplicates of z1, and a command y1 with a duplicate.
	chB1, cancelB1 := rb.Expect("z1")
	chB2, cancelB2 := rb.Expect("z1")
	chY, cancelY := rb.Expect("y1")
	chYdup, cancelYdup := rb.Expect("y1")
	for _, msg := range []string{rqConfirm("z1", "55"), rqConfirm("y1", "66")} {
		if _, err := m.Lpush(k.Confirm(), msg); err != nil {
			t.Fatal(err)
		}
	}
	rqEventually(t, 30*time.Second, "delivery to b's registrations", func() bool {
		return len(chB1) == 1 && len(chB2) == 1 && len(chY) == 1 && len(chYdup) == 1
	})
	// y1's call reads it; its duplicate gives it back unread: nothing more.
	if c := <-chY; c.CallCode != "66" {
		t.Fatalf("y1 got %+v", c)
	}
	cancelY()
	cancelYdup()
	// z1's duplicates are done: they never read the confirmation. Once the
	// last one gives it back, it is routed again.
	cancelB1()
	time.Sleep(50 * time.Millisecond)
	if m.Exists(k.ConfirmFor(a)) {
		t.Fatal("handed back while another registration could still read it")
	}
	cancelB2()
	rqEventually(t, 30*time.Second, "forward to a", func() bool {
		return len(rqList(t, m, k.ConfirmFor(a))) == 1
	})
	ra := NewConfirmRouter(rdb, rqPrefix, rqCell, a, zerolog.Nop())
	chA, cancelA := ra.Expect("z1")
	defer cancelA()
	rqRun(t, ra)
	got, ok := rqRecv(t, chA, 30*time.Second)
	if !ok || got.CallCode != "55" {
		t.Fatalf("a got %+v %v", got, ok)
	}
	if s := rqStats(t, rdb); s["confirm_forwarded"] != 1 || s["confirm_unknown"] != 0 {
		t.Errorf("stats %v", s)
	}
}

func TestRouterSurvivesOutage(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	var logs rqLog
	r, stop := rqRouter(t, rdb, rqInst, logs.logger())
	k := NewKeys(rqPrefix, rqCell)

	ch1, cancel1 := r.Expect("before")
	defer cancel1()
	if _, err := m.Lpush(k.Confirm(), rqConfirm("before", "1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := rqRecv(t, ch1, 30*time.Second); !ok {
		t.Fatal("no delivery before the outage")
	}

	// The first message of a BRPOP is delivered before the drain's round
	// trip: let the router get back to its BRPOP, so the outage breaks an
	// open connection (a dial in progress would retry across it, unseen).
	time.Sleep(100 * time.Millisecond)
	m.Close()
	time.Sleep(700 * time.Millisecond)
	rqRestart(t, m)
	ch2, cancel2 := r.Expect("after")
	defer cancel2()
	if _, err := m.Lpush(k.Confirm(), `garbage`); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lpush(k.Confirm(), rqConfirm("after", "2")); err != nil {
		t.Fatal(err)
	}
	c, ok := rqRecv(t, ch2, 10*time.Second)
	if !ok || c.CallCode != "2" {
		t.Fatalf("after the outage: %+v %v\n%s", c, ok, logs.String())
	}
	rqEventually(t, 30*time.Second, "counter after the outage", func() bool {
		return rqStats(t, rdb)["confirm_invalid"] == 1
	})
	stop()
	out := logs.String()
	if n := strings.Count(out, "redis unavailable"); n != 1 {
		t.Errorf("%d 'unavailable' lines for one outage, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "redis available again"); n != 1 {
		t.Errorf("%d 'available again' lines, want 1:\n%s", n, out)
	}
}

// TestRouterKeepsPoppedMessagesAcrossErrors: messages popped before Redis
// failed are handled once it is back (white box: the backlog).
func TestRouterKeepsPoppedMessagesAcrossErrors(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	const a, b = "pbx1-1", "pbx2-2"
	qa := NewQueue(rdb, rqPrefix, rqCell, a)
	k := qa.Keys()
	c := rqCall("w1", rqRaw("w1"), "tw")
	c.Instance = a
	if _, err := qa.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	rb := NewConfirmRouter(rdb, rqPrefix, rqCell, b, zerolog.Nop())
	rb.handle([]confirmMsg{
		{raw: []byte(rqConfirm("w1", "9")), at: time.Now()},
		{raw: []byte("junk"), at: time.Now()},
	})
	m.Close()
	if err := rb.settle(ctx); err == nil {
		t.Fatal("settle succeeded with Redis down")
	}
	if len(rb.backlog) != 1 || rb.invalid.Load() != 1 {
		t.Fatalf("backlog %d, invalid %d", len(rb.backlog), rb.invalid.Load())
	}
	rqRestart(t, m)
	if err := rb.settle(ctx); err != nil {
		t.Fatal(err)
	}
	if l := rqList(t, m, k.ConfirmFor(a)); len(l) != 1 {
		t.Fatalf("a's private list %q", l)
	}
	if s := rqStats(t, rdb); s["confirm_invalid"] != 1 || s["confirm_forwarded"] != 1 {
		t.Fatalf("stats %v", s)
	}
}

// TestRouterExpectChurn measures registration cost (not a benchmark
// figure: a guard against a pathological slowdown).
func TestRouterExpectChurn(t *testing.T) {
	t.Parallel()
	r := NewConfirmRouter(nil, rqPrefix, rqCell, rqInst, zerolog.Nop())
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				_, cancel := r.Expect(fmt.Sprintf("c-%d-%d", g, i))
				cancel()
			}
		}(g)
	}
	wg.Wait()
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("80,000 Expect/cancel took %s", el)
	}
	if r.Waiting() != 0 {
		t.Error("registrations left")
	}
}
