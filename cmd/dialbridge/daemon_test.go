package main

// End-to-end tests of the call path: the real daemon wiring (redisq, ami,
// bridge) against Redis (miniredis) and the AMI simulator over real TCP,
// driven by a simulated Multcall that speaks only the wire contract.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/testport"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

const testCell = "101"

type harness struct {
	t     *testing.T
	addr  string // Redis under test
	sim   *amisim.Server
	rdb   *redis.Client
	mc    *multcallsim.Sim
	s     *config.Settings
	d     *daemon
	stop  context.CancelFunc
	done  chan error
	mcCtx context.CancelFunc
}

type harnessConfig struct {
	threads   int
	rules     string // amisim rule syntax
	tweak     func(*config.Settings)
	mcOpt     multcallsim.Options
	wrap      func(bridge.Store) bridge.Store
	noDaemon  bool
	redisAddr string // default: testRedis
}

func testSettings(t *testing.T, redisAddr string, amiPort, threads int) *config.Settings {
	host, port, _ := strings.Cut(redisAddr, ":")
	yaml := fmt.Sprintf(`
log: {level: warn, format: console}
redis: {host: %s, port: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 10s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: 2s}
queues: [{name: "%s", threads: %d}]
`, host, port, amiPort, testCell, threads)
	s, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	return s
}

func newHarness(t *testing.T, hc harnessConfig) *harness {
	t.Helper()
	if hc.threads == 0 {
		hc.threads = 50
	}
	h := &harness{t: t, addr: hc.redisAddr}
	if h.addr == "" {
		h.addr = testRedis(t)
	}
	rules, err := amisim.ParseRules(hc.rules)
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	// On a reserved port: tests close the simulator (AMI down) and some
	// start it again there.
	h.sim, err = amisim.New(amisim.Config{Addr: "127.0.0.1:" + strconv.Itoa(testport.Reserve(t)), Rules: rules, AuthDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.sim.Close() })
	h.s = testSettings(t, h.addr, h.sim.Port(), hc.threads)
	h.s.Redis.Prefix = testPrefix(t)
	if hc.tweak != nil {
		hc.tweak(h.s)
	}
	h.rdb = redis.NewClient(&redis.Options{Addr: h.addr, MaxRetries: -1})
	t.Cleanup(func() { h.rdb.Close() })
	h.mc = multcallsim.New(h.rdb, h.s.Redis.Prefix, testCell, hc.mcOpt)
	mcCtx, mcStop := context.WithCancel(context.Background())
	h.mcCtx = mcStop
	mcDone := make(chan struct{})
	go func() { defer close(mcDone); h.mc.RunConfirmer(mcCtx) }()
	t.Cleanup(func() { mcStop(); <-mcDone })
	if !hc.noDaemon {
		var opts []daemonOption
		if hc.wrap != nil {
			opts = append(opts, func(o *daemonOptions) { o.wrapStore = hc.wrap })
		}
		h.start(opts...)
	}
	return h
}

func (h *harness) start(opts ...daemonOption) {
	h.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(h.t)).Level(zerolog.WarnLevel)
	ctx, stop := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, h.s, testCell, log, opts...)
	if err != nil {
		stop()
		h.t.Fatalf("startDaemon: %v", err)
	}
	h.d, h.stop, h.done = d, stop, make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	h.t.Cleanup(func() { h.shutdown(30 * time.Second) })
}

// shutdown stops the daemon and waits for Run to return.
func (h *harness) shutdown(bound time.Duration) error {
	if h.stop == nil {
		return nil
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(bound):
		h.t.Fatalf("daemon did not stop within %s", bound)
		return nil
	}
}

// testRedis is the Redis the end-to-end tests run on: a real redis-server
// when DIALBRIDGE_TEST_REDIS is set (the integration tier), else miniredis.
func testRedis(t *testing.T) string {
	if addr := os.Getenv("DIALBRIDGE_TEST_REDIS"); addr != "" {
		return addr
	}
	return miniredis.RunT(t).Addr()
}

// testPrefix keeps tests sharing one real Redis apart.
func testPrefix(t *testing.T) string {
	return "t" + strconv.FormatInt(time.Now().UnixNano(), 36) + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

func (h *harness) hget(key, field string) string {
	return h.rdb.HGet(context.Background(), key, field).Val()
}

func (h *harness) list(key string) []string {
	return h.rdb.LRange(context.Background(), key, 0, -1).Val()
}

func (h *harness) exists(key string) bool {
	return h.rdb.Exists(context.Background(), key).Val() == 1
}

func (h *harness) push(cmds ...string) {
	h.t.Helper()
	raw := make([][]byte, len(cmds))
	for i, c := range cmds {
		raw[i] = []byte(c)
	}
	if err := h.mc.Push(context.Background(), raw...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) results(n int, within time.Duration) map[string][]bridge.Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rs, err := h.mc.CollectResults(ctx, n)
	if err != nil {
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID+":"+string(r.Status))
		}
		h.t.Fatalf("collect results: %v (got %v)", err, ids)
	}
	byID := map[string][]bridge.Result{}
	for _, r := range rs {
		byID[r.ID] = append(byID[r.ID], r)
	}
	return byID
}

// quiet checks that no further result arrives: exactly one per command.
func (h *harness) quiet(wait time.Duration) {
	h.t.Helper()
	time.Sleep(wait)
	if l := h.list(h.mc.Keys().Results()); len(l) > 0 {
		h.t.Fatalf("unexpected extra results: %v", l)
	}
}

func cmd(id, number string, extra ...string) string {
	s := `{"id":"` + id + `","number":"` + number + `"`
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func (h *harness) originatesByNumber() map[string]int { return originatesByNumber(h.sim) }

// TestEveryStatus produces each status of the contract end to end.
func TestEveryStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{
		rules: "prefix=100:answer,ring=10ms,talk=150ms;prefix=105:busy;prefix=106:noanswer;prefix=107:congestion;" +
			"prefix=108:hangup,cause=21;prefix=109:hangup,cause=1;prefix=110:failed;prefix=111:refuse,message=Originate failed;" +
			"prefix=112:noresponse;prefix=113:doesnotexist;prefix=114:hangup,cause=17;prefix=115:hangup,cause=19",
		mcOpt: multcallsim.Options{Ignore: func(id string) bool { return id == "ackto" }},
	})
	h.push(
		cmd("ans", "1000"), cmd("busy", "1050"), cmd("noans", "1060", `"timeout_s":1`), cmd("cong", "1070"),
		cmd("rej", "1080"), cmd("inv", "1090"), cmd("fail", "1100"), cmd("refused", "1110"),
		cmd("unk", "1120"), cmd("dne", "1130"), cmd("h17", "1140"), cmd("h19", "1150"),
		cmd("ackto", "1000"),
		`{"id":"badnum","number":"1\r\nAction: Command\r\nCommand: core stop now"}`,
		`{"id":"dupe","number":"1001"}`,
		`not json at all`,
		`{"id":"dupe","number":"1001"}`,
	)
	got := h.results(16, 30*time.Second)

	want := []struct {
		id       string
		status   bridge.Status
		reason   int
		cause    int
		attempts int
	}{
		{"ans", bridge.StatusAnswered, 4, 16, 1},
		{"busy", bridge.StatusBusy, 5, 17, 1},
		{"noans", bridge.StatusNoAnswer, 3, 19, 1},
		{"cong", bridge.StatusCongestion, 8, 34, 1},
		{"rej", bridge.StatusRejected, 0, 21, 1},
		{"inv", bridge.StatusInvalidNumber, 0, 1, 1},
		{"fail", bridge.StatusFailed, 0, 0, 1},
		{"refused", bridge.StatusFailed, 0, 0, 3},
		{"unk", bridge.StatusUnknown, 0, 0, 1},
		{"dne", bridge.StatusFailed, 0, 0, 1},
		{"h17", bridge.StatusBusy, 0, 17, 1},
		{"h19", bridge.StatusNoAnswer, 0, 19, 1},
		{"ackto", bridge.StatusAckTimeout, 0, 0, 0},
		{"badnum", bridge.StatusInvalid, 0, 0, 0},
	}
	for _, w := range want {
		rs := got[w.id]
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want 1: %+v", w.id, len(rs), rs)
			continue
		}
		r := rs[0]
		if r.Status != w.status || r.Reason != w.reason || r.Cause != w.cause || r.Attempts != w.attempts {
			t.Errorf("%s: status=%s reason=%d cause=%d attempts=%d, want %s %d %d %d (error %q)",
				w.id, r.Status, r.Reason, r.Cause, r.Attempts, w.status, w.reason, w.cause, w.attempts, r.Error)
		}
		if r.Cell != testCell || r.Instance != h.d.instance || r.ReceivedAt == "" {
			t.Errorf("%s: identity fields missing: %+v", w.id, r)
		}
	}
	// The answered call carries its times and talk time.
	if r := got["ans"][0]; r.AnsweredAt == "" || r.EndedAt == "" || r.TalkMS < 100 || r.CauseText != "Normal Clearing" || r.CallCode == "" || r.Uniqueid == "" || !strings.Contains(r.Channel, "PJSIP/1000@trunk") {
		t.Errorf("answered result incomplete: %+v", r)
	}
	if r := got["refused"][0]; !strings.Contains(r.Error, "Originate failed") {
		t.Errorf("refused: error %q does not carry Asterisk's message", r.Error)
	}
	if r := got["badnum"][0]; !strings.Contains(r.Error, "number may only contain") {
		t.Errorf("badnum: error %q", r.Error)
	}
	// The duplicate pair: one dialed, one refused as duplicate.
	if rs := got["dupe"]; len(rs) != 2 || rs[0].Status == rs[1].Status ||
		(rs[0].Status != bridge.StatusDuplicate && rs[1].Status != bridge.StatusDuplicate) {
		t.Errorf("dupe: want one duplicate and one dialed, got %+v", rs)
	}
	// The unparseable command: no usable id, so only the dead list hears of it.
	if got[""] != nil {
		t.Errorf("a result without id was pushed: %+v", got[""])
	}
	dead := h.list(h.mc.Keys().Dead())
	if len(dead) != 2 {
		t.Errorf("dead list has %d entries, want 2 (badnum, not json): %v", len(dead), dead)
	}

	// What reached Asterisk: each dialed number once, the refused one three
	// times (retries), and nothing for the invalid, ack-timeout or duplicate ones.
	on := h.originatesByNumber()
	for number, n := range map[string]int{"1000": 1, "1001": 1, "1050": 1, "1110": 3, "1120": 1} {
		if on[number] != n {
			t.Errorf("number %s originated %d times, want %d", number, on[number], n)
		}
	}
	for _, o := range h.sim.Originates() {
		if strings.ContainsAny(o.Channel+o.CallerID, "\r\n") || strings.Contains(o.Channel, "Action") {
			t.Errorf("injection reached AMI: %+v", o)
		}
		if o.Headers["Async"] != "true" || o.ChannelID == "" || o.Variables["DIALBRIDGE_ID"] == "" {
			t.Errorf("originate missing required headers: %+v", o.Headers)
		}
	}
	if total := h.sim.OriginateCount(); total != 15 {
		t.Errorf("%d originates in all, want 15", total)
	}
	stats, err := redisq.ReadStats(context.Background(), h.rdb, h.mc.Keys())
	if err != nil {
		t.Fatal(err)
	}
	if stats["retries"] != 2 || stats["results"] != 16 || stats["dead"] != 2 || stats["duplicate"] != 1 || stats["unknown"] != 1 {
		t.Errorf("stats: %v", stats)
	}
	// Nothing left claimed; the status hash of a finished call expires in 24 h.
	if n := h.claimedLeft(); n != 0 {
		t.Errorf("%d commands left claimed", n)
	}
	ttl := h.rdb.TTL(context.Background(), h.mc.Keys().Call("ans")).Val()
	if ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("call hash TTL %s, want 24h", ttl)
	}
	h.quiet(300 * time.Millisecond)
}

func (h *harness) claimedLeft() int {
	n := 0
	ctx := context.Background()
	iter := h.rdb.Scan(ctx, 0, h.mc.Keys().ClaimedPattern(), 100).Iterator()
	for iter.Next(ctx) {
		n += int(h.rdb.LLen(ctx, iter.Val()).Val())
	}
	return n
}

// TestCallStatusHashFollowsTheCall reads call:<id> at each stage.
func TestCallStatusHashFollowsTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{
		rules: "answer,ring=10ms,talk=1500ms",
		mcOpt: multcallsim.Options{ConfirmDelay: 300 * time.Millisecond, CallCode: func(string) string { return "987654" }},
	})
	h.push(cmd("c1", "5511999990000"))
	key := h.mc.Keys().Call("c1")
	waitFor(t, 30*time.Second, "state acked", func() bool { return h.hget(key, "state") == "acked" })
	waitFor(t, 30*time.Second, "state answered", func() bool { return h.hget(key, "state") == "answered" })
	if h.hget(key, "call_code") != "987654" || h.hget(key, "attempts") != "1" || h.hget(key, "dialed_at") == "" || h.hget(key, "answered_at") == "" {
		t.Fatalf("hash while answered: %v", h.rdb.HGetAll(context.Background(), key).Val())
	}
	rs := h.results(1, 10*time.Second)
	if r := rs["c1"]; len(r) != 1 || r[0].Status != bridge.StatusAnswered || r[0].CallCode != "987654" || r[0].TalkMS < 1400 {
		t.Fatalf("result: %+v", r)
	}
	if h.hget(key, "state") != "done" || h.hget(key, "status") != "answered" || h.hget(key, "result") == "" {
		t.Fatalf("final hash state=%q status=%q", h.hget(key, "state"), h.hget(key, "status"))
	}
	// The answered call was handed to the call queue manager, then its end.
	inbox := h.list(redisq.ACDKey(h.s.Redis.Prefix, testCell, "inbox"))
	if strings.Join(inbox, " ") != `{"command":"hangup","id":"c1"} {"command":"call","id":"c1"}` {
		t.Fatalf("queue manager inbox = %v, want call then hangup for c1", inbox)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// concurrencyStore wraps the real store and measures calls in progress
// exactly: from a claim that returned a command to its Finish or Bury.
type concurrencyStore struct {
	bridge.Store
	cur, max atomic.Int64
	batched  atomic.Int64 // commands claimed by ClaimMore
}

func (s *concurrencyStore) ClaimNext(ctx context.Context) ([]byte, error) {
	raw, err := s.Store.ClaimNext(ctx)
	if raw != nil {
		n := s.cur.Add(1)
		for {
			m := s.max.Load()
			if n <= m || s.max.CompareAndSwap(m, n) {
				break
			}
		}
	}
	return raw, err
}

func (s *concurrencyStore) add(n int64) {
	c := s.cur.Add(n)
	for {
		m := s.max.Load()
		if c <= m || s.max.CompareAndSwap(m, c) {
			return
		}
	}
}

// ClaimMore keeps batch claiming on (the real store has it) and measured.
func (s *concurrencyStore) ClaimMore(ctx context.Context, n int) ([][]byte, error) {
	more, err := s.Store.(bridge.BatchClaimer).ClaimMore(ctx, n)
	s.add(int64(len(more)))
	if len(more) > 0 {
		s.batched.Add(int64(len(more)))
	}
	return more, err
}

func (s *concurrencyStore) Finish(ctx context.Context, raw []byte, r *bridge.Result) (bool, error) {
	ok, err := s.Store.Finish(ctx, raw, r)
	if err == nil {
		s.cur.Add(-1)
	}
	return ok, err
}

func (s *concurrencyStore) Bury(ctx context.Context, raw []byte, cause error, r *bridge.Result) (bool, error) {
	ok, err := s.Store.Bury(ctx, raw, cause, r)
	if err == nil {
		s.cur.Add(-1)
	}
	return ok, err
}

// TestThreadsNeverExceeded bursts 10× threads commands at a cell.
func TestThreadsNeverExceeded(t *testing.T) {
	t.Parallel()
	const threads = 5
	cs := &concurrencyStore{}
	h := newHarness(t, harnessConfig{
		threads: threads,
		rules:   "answer,ring=5ms,talk=100ms",
		wrap:    func(s bridge.Store) bridge.Store { cs.Store = s; return cs },
	})
	var cmds []string
	for i := 0; i < 10*threads; i++ {
		cmds = append(cmds, cmd("t"+strconv.Itoa(i), "55"+strconv.Itoa(i)))
	}
	h.push(cmds...)
	got := h.results(10*threads, 60*time.Second)
	if len(got) != 10*threads {
		t.Fatalf("%d distinct results", len(got))
	}
	if m := cs.max.Load(); m > threads {
		t.Fatalf("%d calls in progress at once, threads is %d", m, threads)
	} else if m < threads {
		t.Fatalf("at most %d calls at once: the burst never filled the %d threads, so the bound was not exercised", m, threads)
	}
	if cs.batched.Load() == 0 {
		t.Fatal("no command was claimed in a batch: batch claiming was not exercised")
	}
}

// TestThousandMixedCommands checks results match commands one to one.
func TestThousandMixedCommands(t *testing.T) {
	t.Parallel()
	const n = 1000
	h := newHarness(t, harnessConfig{
		threads: 200,
		rules:   "suffix=5:busy;suffix=6:noanswer;suffix=7:congestion;suffix=8:hangup,cause=21;suffix=9:hangup,cause=1;suffix=4:refuse;answer,ring=5ms,talk=20ms",
		mcOpt:   multcallsim.Options{Ignore: func(id string) bool { return strings.HasSuffix(id, "-3") }},
	})
	want := map[string]bridge.Status{}
	var cmds []string
	for i := 0; i < n; i++ {
		d := i % 10
		id := fmt.Sprintf("m%d-%d", i, d)
		number := fmt.Sprintf("5511%06d%d", i, d)
		c := cmd(id, number, `"timeout_s":1`)
		switch d {
		case 0, 1, 2:
			want[id] = bridge.StatusAnswered
		case 3:
			want[id] = bridge.StatusAckTimeout
		case 4:
			want[id] = bridge.StatusFailed
		case 5:
			want[id] = bridge.StatusBusy
		case 6:
			want[id] = bridge.StatusNoAnswer
		case 7:
			want[id] = bridge.StatusCongestion
		case 8:
			want[id] = bridge.StatusRejected
		case 9:
			want[id] = bridge.StatusInvalidNumber
		}
		if i%100 == 50 { // a sprinkle of invalid commands
			delete(want, id)
			id = fmt.Sprintf("bad%d", i)
			c = `{"id":"` + id + `","number":"12ab"}`
			want[id] = bridge.StatusInvalid
		}
		cmds = append(cmds, c)
	}
	h.push(cmds...)
	got := h.results(n, 120*time.Second)
	if len(got) != n {
		t.Fatalf("%d distinct ids in results, want %d", len(got), n)
	}
	mismatch := 0
	for id, st := range want {
		rs := got[id]
		if len(rs) != 1 || rs[0].Status != st {
			mismatch++
			if mismatch < 10 {
				t.Errorf("%s: %+v, want one %s", id, rs, st)
			}
		}
	}
	if mismatch > 0 {
		t.Fatalf("%d mismatches", mismatch)
	}
	for number, c := range h.originatesByNumber() {
		if strings.HasSuffix(number, "4") {
			if c != 3 {
				t.Errorf("refused number %s originated %d times, want 3", number, c)
			}
		} else if c != 1 {
			t.Errorf("number %s originated %d times", number, c)
		}
	}
	h.quiet(200 * time.Millisecond)
	if left := h.claimedLeft(); left != 0 {
		t.Fatalf("%d left claimed", left)
	}
}

// TestGracefulStop: SIGTERM lets a call in progress finish within the grace
// period; a call that outlasts it stays claimed, without a result.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	t.Run("drains", func(t *testing.T) {
		// Talk long enough that a loaded machine's poll sees the call
		// answered; the drain still ends well inside the 5 s grace.
		h := newHarness(t, harnessConfig{rules: "answer,ring=5ms,talk=2s"})
		h.push(cmd("g1", "100"))
		waitFor(t, 30*time.Second, "answered", func() bool { return h.hget(h.mc.Keys().Call("g1"), "state") == "answered" })
		h.push(cmd("g2", "101")) // arrives after the stop: must stay in dial
		start := time.Now()
		if err := h.shutdown(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 4500*time.Millisecond {
			t.Fatalf("stop took %s: the grace period (5 s) cut the drain short, or nearly", el)
		}
		rs := h.results(1, time.Second)
		if r := rs["g1"]; len(r) != 1 || r[0].Status != bridge.StatusAnswered {
			t.Fatalf("drained call: %+v", rs)
		}
		if left := h.claimedLeft(); left != 0 {
			t.Fatalf("%d left claimed after a drain", left)
		}
	})
	t.Run("grace over", func(t *testing.T) {
		h := newHarness(t, harnessConfig{
			rules: "answer,ring=5ms,talk=forever",
			tweak: func(s *config.Settings) { s.Timeouts.ShutdownGrace = config.Duration(300 * time.Millisecond) },
		})
		h.push(cmd("g3", "100"))
		waitFor(t, 30*time.Second, "answered", func() bool { return h.hget(h.mc.Keys().Call("g3"), "state") == "answered" })
		start := time.Now()
		h.shutdown(10 * time.Second)
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("stop took %s", el)
		}
		if left := h.claimedLeft(); left != 1 {
			t.Fatalf("%d left claimed, want the call cut off by the grace period", left)
		}
		if h.exists(h.mc.Keys().Results()) {
			t.Fatal("a result was pushed for a call cut off")
		}
		if h.exists(h.mc.Keys().Instance(h.d.instance)) {
			t.Fatal("heartbeat left after a clean exit")
		}
	})
}

// TestNoGoroutineLeak runs calls, stops everything, and checks that none of
// our goroutines survive. amigo's own goroutines are ignored: it leaks some
// across Close (see ami package docs).
func TestNoGoroutineLeak(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).reader.func1"),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).pinger"),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.newAMIAdapter.func1"),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*Amigo).Connect.func1"),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).exec.func1"),
	}
	func() {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			t.Fatal(err)
		}
		defer mr.Close()
		sim, err := amisim.New(amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.Outcome("answer"), RingFor: 5 * time.Millisecond, TalkFor: 20 * time.Millisecond}}})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		s := testSettings(t, mr.Addr(), sim.Port(), 10)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
		mc := multcallsim.New(rdb, s.Redis.Prefix, testCell, multcallsim.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); mc.RunConfirmer(ctx) }()
		d, err := startDaemon(ctx, s, testCell, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx) }()
		mc.Push(ctx, multcallsim.Command("l1", "1"), multcallsim.Command("l2", "2"))
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		if _, err := mc.CollectResults(rctx, 2); err != nil {
			t.Fatal(err)
		}
		rcancel()
		cancel()
		wg.Wait()
	}()
	goleak.VerifyNone(t, opts...)
}

// TestStartErrors: each problem a human must fix stops the start with an
// error naming it.
func TestStartErrors(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	sim, err := amisim.New(amisim.Config{AuthDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tests := []struct {
		name  string
		cell  string
		tweak func(*config.Settings)
		want  []string
	}{
		{"unknown cell", "999", nil, []string{`cell "999"`, "101"}},
		{"redis login refused", testCell, func(s *config.Settings) {
			s.Redis.Host, s.Redis.Port = authRedis(t)
			s.Redis.Password = "wrong-secret-xyz"
		}, []string{"WRONGPASS", "redis.password"}},
		{"ami login refused", testCell, func(s *config.Settings) { s.AMI.Secret = "wrong-secret-xyz" }, []string{"login refused", `"dialbridge"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSettings(t, mr.Addr(), sim.Port(), 5)
			if tt.tweak != nil {
				tt.tweak(s)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			d, err := startDaemon(ctx, s, tt.cell, zerolog.Nop())
			if err == nil {
				d.amic.Close()
				t.Fatal("started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "wrong-secret-xyz") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error leaks the secret or is not one line: %q", err)
			}
			if code := startExit(err); code != exitConfig {
				t.Errorf("exit status %d, want %d (a person must fix it)", code, exitConfig)
			}
		})
	}
}

// TestBinaryStartFailureIsOneLine runs the built binary: a bad setting gives
// exactly one line on stderr and exit status 78 (EX_CONFIG: the unit does
// not restart it).
func TestBinaryStartFailureIsOneLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "dialbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(cfg, []byte("ami: {username: u, secret: s}\noriginate: {channel: \"PJSIP/x@t\", context: a, exten: s}\nqueues: [{name: \"101\", threads: 1}]\n"), 0o600)
	for _, args := range [][]string{
		{"run", "--config", cfg, "101"},
		{"run", "--config", filepath.Join(t.TempDir(), "missing.yaml"), "101"},
		{"run", "--config", cfg},
	} {
		c := exec.Command(bin, args...)
		var stderr strings.Builder
		c.Stderr = &stderr
		err := c.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig {
			t.Errorf("%v: exit %v, want status %d", args, err, exitConfig)
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "dialbridge: ") {
			t.Errorf("%v: stderr is not one line: %q", args, stderr.String())
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "dialbridge ") {
		t.Errorf("--version: %q %v", out, err)
	}
}

var _ = json.Marshal

// TestRecoversDeadInstance leaves in Redis what a daemon killed with -9
// leaves behind, starts a daemon, and checks every orphan is settled once:
// requeued at the front when it was never originated, unknown (never
// re-dialed) when an originate may have been sent.
func TestRecoversDeadInstance(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{threads: 1, rules: "answer,ring=5ms,talk=10ms", noDaemon: true})
	ctx := context.Background()
	k := h.mc.Keys()
	dead, alive := "pbx9-111", "pbx9-222"
	hash := func(id string, kv ...any) {
		h.rdb.HSet(ctx, k.Call(id), append([]any{"id", id, "instance", dead, "token", "tok-" + id}, kv...)...)
	}
	// The dead instance's claimed list, newest claim first (LPUSH order).
	orphans := []string{
		cmd("o-noack", "2001"),        // claimed, never ACKed: no hash
		cmd("o-acked", "2002"),        // ACKed, never confirmed
		cmd("o-orig", "2003"),         // originate possibly sent
		cmd("o-ans", "2004"),          // answered, in conversation
		cmd("o-dup", "2005"),          // a duplicate whose original is done
		`{"id":"o-bad","number":"x"}`, // invalid
	}
	for i := len(orphans) - 1; i >= 0; i-- {
		h.rdb.LPush(ctx, k.Claimed(dead), orphans[i])
	}
	hash("o-acked", "state", "acked")
	hash("o-orig", "state", "originating", "attempts", "1", "call_code", "77", "channel_id", "db-x-1", "dialed_at", "2026-11-23T10:00:00.000Z")
	hash("o-ans", "state", "answered", "attempts", "1", "call_code", "78", "channel_id", "db-x-2", "answered_at", "2026-11-23T10:00:01.000Z")
	hash("o-dup", "state", "done", "status", "busy")
	h.rdb.SAdd(ctx, k.InstanceSet(), dead, alive)
	// A live instance's claimed list must not be touched.
	h.rdb.HSet(ctx, k.Instance(alive), "pid", 222)
	h.rdb.Expire(ctx, k.Instance(alive), time.Minute)
	h.rdb.LPush(ctx, k.Claimed(alive), cmd("live-1", "2100"))
	// Commands already waiting in dial: the requeued ones go before them.
	h.push(cmd("later-1", "2201"), cmd("later-2", "2202"))

	h.start()
	got := h.results(8, 30*time.Second)
	want := map[string]bridge.Status{
		"o-noack": bridge.StatusAnswered, "o-acked": bridge.StatusAnswered,
		"o-orig": bridge.StatusUnknown, "o-ans": bridge.StatusUnknown,
		"o-dup": bridge.StatusDuplicate, "o-bad": bridge.StatusInvalid,
		"later-1": bridge.StatusAnswered, "later-2": bridge.StatusAnswered,
	}
	for id, st := range want {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != st {
			t.Errorf("%s: %+v, want one %s", id, rs, st)
		}
	}
	if r := got["o-orig"]; len(r) == 1 && (r[0].CallCode != "77" || r[0].Attempts != 1 || !strings.Contains(r[0].Error, dead)) {
		t.Errorf("unknown result lacks what was known: %+v", r[0])
	}
	// Never re-dialed: the in-doubt numbers reached Asterisk zero times; the
	// requeued ones once, and before the commands that were waiting.
	on := h.originatesByNumber()
	if on["2003"] != 0 || on["2004"] != 0 || on["2005"] != 0 {
		t.Errorf("in-doubt or duplicate orphans were dialed: %v", on)
	}
	var order []string
	for _, o := range h.sim.Originates() {
		order = append(order, o.Number)
	}
	if strings.Join(order, ",") != "2002,2001,2201,2202" {
		t.Errorf("originate order %v, want the requeued commands first, oldest claim first", order)
	}
	if l := h.list(k.Claimed(alive)); len(l) != 1 {
		t.Errorf("a live instance's claimed list was touched: %v", l)
	}
	if h.exists(k.Claimed(dead)) {
		t.Error("the dead instance's claimed list is still there")
	}
	h.quiet(300 * time.Millisecond)
}

// TestReconcileOwnClaimedList: a command in our own claimed list that no
// call holds (Redis made the BLMOVE, the reply was lost in an outage) is
// settled by reconciliation: requeued and dialed once.
func TestReconcileOwnClaimedList(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{rules: "answer,ring=5ms,talk=10ms"})
	ctx := context.Background()
	// A call in progress must not be touched by reconciliation.
	h.push(cmd("held", "3000"))
	waitFor(t, 30*time.Second, "claimed", func() bool { return h.hget(h.mc.Keys().Call("held"), "state") != "" })
	h.rdb.LPush(ctx, h.mc.Keys().Claimed(h.d.instance), cmd("lost-reply", "3001"))
	n, err := h.d.cell.ReconcileOwn(ctx)
	if err != nil || n != 1 {
		t.Fatalf("reconciled %d, %v; want the one unheld entry", n, err)
	}
	got := h.results(2, 15*time.Second)
	for _, id := range []string{"held", "lost-reply"} {
		if rs := got[id]; len(rs) != 1 || rs[0].Status != bridge.StatusAnswered {
			t.Errorf("%s: %+v", id, rs)
		}
	}
	if on := h.originatesByNumber(); on["3000"] != 1 || on["3001"] != 1 {
		t.Errorf("originates %v", on)
	}
	h.quiet(200 * time.Millisecond)
}

// TestAMIDownAfterClaim: AMI goes away while a claimed call waits for its
// confirmation. The call waits for AMI at most its ring time, then fails
// undialed with "AMI unavailable"; nothing new is claimed while AMI is down.
func TestAMIDownAfterClaim(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{
		rules: "answer",
		mcOpt: multcallsim.Options{ConfirmDelay: 700 * time.Millisecond},
	})
	h.push(cmd("w1", "4000", `"timeout_s":1`))
	waitFor(t, 30*time.Second, "acked", func() bool { return h.hget(h.mc.Keys().Call("w1"), "state") == "acked" })
	h.sim.Close()
	waitFor(t, 30*time.Second, "AMI seen down", func() bool { return !h.d.amic.Ready() })
	h.push(cmd("w2", "4001"))
	got := h.results(1, 10*time.Second)
	r := got["w1"]
	if len(r) != 1 || r[0].Status != bridge.StatusFailed || r[0].Attempts != 0 || !strings.Contains(r[0].Error, "AMI unavailable") {
		t.Fatalf("w1: %+v", r)
	}
	if n := h.sim.OriginateCount(); n != 0 {
		t.Fatalf("%d originates", n)
	}
	time.Sleep(1500 * time.Millisecond) // a claim loop that ignored AMI would have taken w2 by now
	if l := h.list(h.mc.Keys().Dial()); len(l) != 1 {
		t.Fatalf("dial list %v: w2 was claimed while AMI was down", l)
	}
}
