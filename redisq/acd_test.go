package redisq

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
)

const (
	acdTestPrefix = "dialbridge"
	acdTestCell   = "101"
)

var acdT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// ACDStore is the queue manager's store and inbox.
var (
	_ acdserver.Store = (*ACDStore)(nil)
	_ acdserver.Inbox = (*ACDStore)(nil)
)

func acdTestRedis(t testing.TB) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return m, rdb
}

// acdNoLeaks checks, after the test's other cleanups (Redis closed), that
// the test left no goroutine behind.
func acdNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func acdOpen(t testing.TB, rdb redis.Cmdable, instance string) *ACDStore {
	t.Helper()
	s, err := ACDOpen(context.Background(), rdb, acdTestPrefix, acdTestCell, ACDOptions{Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func acdOps(ids ...string) []acd.Operator {
	var out []acd.Operator
	for i, id := range ids {
		out = append(out, acd.Operator{ID: id, Tier: acd.Tier(i % 3)})
	}
	return out
}

// TestACDSaveMirrorsMachine: after every event of random sequences, the
// floor loaded from Redis restores to exactly the machine's floor.
func TestACDSaveMirrorsMachine(t *testing.T) {
	_, rdb := acdTestRedis(t)
	ctx := context.Background()
	s := acdOpen(t, rdb, "me")
	cfg := acdOps("A", "B", "S", "D")
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		m, _ := acd.New(cfg, 10*time.Second)
		if err := s.SaveAll(ctx, m.Snapshot(), nil, acdT0, nil); err != nil {
			t.Fatal(err)
		}
		now := acdT0
		for step := range 120 {
			now = now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
			var msgs []acd.Message
			var err error
			id := strconv.Itoa(r.IntN(8))
			op := cfg[r.IntN(len(cfg))].ID
			switch p := r.IntN(10); {
			case p < 3:
				msgs, err = m.Call(id, now)
			case p < 5:
				msgs, err = m.Hangup(id, now)
			case p < 6:
				msgs, err = m.Answer(op, now)
			case p < 7:
				msgs, err = m.Reject(op, now)
			case p < 8:
				msgs, err = m.Logout(op, now)
			case p < 9:
				msgs, err = m.Login(op, now)
			default:
				now = now.Add(8 * time.Second)
				msgs = m.Tick(now)
			}
			if err != nil {
				continue
			}
			if err := s.Save(ctx, m.Changes(), msgs, now, nil); err != nil {
				t.Fatal(err)
			}
			snap, found, err := s.Load(ctx)
			if err != nil || !found {
				t.Fatal(err, found)
			}
			r2, rmsgs, err := acd.Restore(cfg, 10*time.Second, snap, now)
			if err != nil || len(rmsgs) > 0 {
				t.Fatalf("seed %d step %d: restore: %v %v", seed, step, err, rmsgs)
			}
			if got, want := r2.Snapshot(), m.Snapshot(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d:\nredis   %+v\nmachine %+v", seed, step, got, want)
			}
		}
	}
	// The log has one entry per message, with its time.
	entries, err := rdb.XRange(ctx, ACDKey(acdTestPrefix, acdTestCell, "log"), "-", "+").Result()
	if err != nil || len(entries) == 0 {
		t.Fatal(err, len(entries))
	}
	e := entries[0].Values
	if e["time"] == "" || !strings.HasPrefix(e["message"].(string), "Call ") || e["kind"] != "received" {
		t.Fatalf("log entry %v", e)
	}
}

func TestACDSaveAllLargeQueue(t *testing.T) {
	_, rdb := acdTestRedis(t)
	ctx := context.Background()
	s := acdOpen(t, rdb, "me")
	m, _ := acd.New(acdOps("A"), time.Minute)
	for i := range 2500 {
		if _, err := m.Call("c"+strconv.Itoa(i), acdT0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveAll(ctx, m.Snapshot(), nil, acdT0, nil); err != nil {
		t.Fatal(err)
	}
	snap, _, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := acd.Restore(acdOps("A"), time.Minute, snap, acdT0)
	if err != nil || !reflect.DeepEqual(r.Snapshot(), m.Snapshot()) {
		t.Fatalf("%v", err)
	}
	if n := rdb.LLen(ctx, ACDKey(acdTestPrefix, acdTestCell, "queue")).Val(); n != 2499 {
		t.Fatalf("queue %d", n)
	}
}

func TestACDLease(t *testing.T) {
	mr, rdb := acdTestRedis(t)
	ctx := context.Background()
	first := acdOpen(t, rdb, "first")
	_, err := ACDOpen(ctx, rdb, acdTestPrefix, acdTestCell, ACDOptions{Instance: "second"})
	var le *ACDLeaseError
	if !errors.As(err, &le) || le.Holder != "first" || le.TTL <= 0 || le.Key != "dialbridge:{101}:acd:lease" {
		t.Fatalf("second open: %v", err)
	}
	if !strings.Contains(err.Error(), "another queue manager (first) is running this cell") {
		t.Fatalf("message: %v", err)
	}
	// Another cell is independent.
	if _, err := ACDOpen(ctx, rdb, acdTestPrefix, "102", ACDOptions{Instance: "second"}); err != nil {
		t.Fatal(err)
	}
	if err := first.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	// Clean stop: the next one starts at once.
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := acdOpen(t, rdb, "second")
	// The first one, still around, can no longer write nor renew.
	if err := first.Save(ctx, acd.Changes{Queue: []acd.QueueOp{{Kind: acd.QueuePushBack, Call: "x"}}}, nil, acdT0, nil); !errors.Is(err, ErrACDLeaseLost) {
		t.Fatalf("save without lease: %v", err)
	}
	if err := first.RenewLease(ctx); !errors.Is(err, ErrACDLeaseLost) {
		t.Fatalf("renew: %v", err)
	}
	if err := first.Close(ctx); err != nil || !mr.Exists("dialbridge:{101}:acd:lease") {
		t.Fatal("close released someone else's lease")
	}
	// A dead queue manager's lease expires; then another may start.
	mr.FastForward(ACDLeaseTTL + time.Second)
	third := acdOpen(t, rdb, "third")
	if err := second.RenewLease(ctx); !errors.Is(err, ErrACDLeaseLost) {
		t.Fatalf("renew after takeover: %v", err)
	}
	// An expired lease nobody took is taken again by its holder.
	mr.FastForward(ACDLeaseTTL + time.Second)
	if err := third.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := mr.Get("dialbridge:{101}:acd:lease"); v != "third" {
		t.Fatalf("lease %q", v)
	}
}

func TestACDKeepLease(t *testing.T) {
	acdNoLeaks(t)
	mr, rdb := acdTestRedis(t)
	s, err := ACDOpen(context.Background(), rdb, acdTestPrefix, acdTestCell, ACDOptions{Instance: "me", LeaseTTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.KeepLease(ctx) }()
	time.Sleep(350 * time.Millisecond)
	if ttl := mr.TTL("dialbridge:{101}:acd:lease"); ttl <= 0 {
		t.Fatalf("lease not renewed: ttl %v", ttl)
	}
	mr.Set("dialbridge:{101}:acd:lease", "intruder")
	select {
	case err := <-done:
		if !errors.Is(err, ErrACDLeaseLost) {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("KeepLease did not notice")
	}
	cancel()
}

// acdFeed runs lines through an engine and returns what it printed.
func acdFeed(t *testing.T, e *acdserver.Engine, lines string) string {
	t.Helper()
	var out, errOut strings.Builder
	if err := acdserver.RunBasic(context.Background(), e, strings.NewReader(lines), &out, &errOut, false); err != nil {
		t.Fatal(err)
	}
	if errOut.Len() > 0 {
		t.Fatalf("stderr %q", errOut.String())
	}
	return out.String()
}

// acdStart opens the store, restores the floor and makes an engine, as
// "dialbridge queue --cell" does.
func acdStart(t *testing.T, rdb redis.Cmdable, instance string, cfg []acd.Operator) (*ACDStore, *acdserver.Engine, []acd.Message) {
	t.Helper()
	ctx := context.Background()
	s := acdOpen(t, rdb, instance)
	snap, found, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m *acd.Machine
	var msgs []acd.Message
	if found {
		m, msgs, err = acd.Restore(cfg, 10*time.Second, snap, time.Now())
	} else {
		m, err = acd.New(cfg, 10*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAll(ctx, m.Snapshot(), msgs, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	return s, acdserver.NewEngine(m, acdserver.Options{Store: s, Logf: t.Logf}), msgs
}

// TestACDResume: the reference transcript, with the queue manager killed
// (no Close) and restarted in the middle: the second half is unchanged.
func TestACDResume(t *testing.T) {
	mr, rdb := acdTestRedis(t)
	cmds, _ := os.ReadFile("../monitor/acdserver/testdata/commands.txt")
	want, _ := os.ReadFile("../monitor/acdserver/testdata/expected.txt")
	lines := strings.SplitAfter(string(cmds), "\n")
	// Stop after "hangup 2": call 4 rings for B, call 5 for A.
	half := 11
	cfg := []acd.Operator{{ID: "A"}, {ID: "B"}}
	_, e1, _ := acdStart(t, rdb, "first", cfg)
	out := acdFeed(t, e1, strings.Join(lines[:half], ""))

	// "kill -9": no Close; the lease expires.
	if _, err := ACDOpen(context.Background(), rdb, acdTestPrefix, acdTestCell, ACDOptions{Instance: "early"}); err == nil {
		t.Fatal("second queue manager started while the first holds the lease")
	}
	mr.FastForward(ACDLeaseTTL + time.Second)
	_, e2, msgs := acdStart(t, rdb, "second", cfg)
	if len(msgs) > 0 {
		t.Fatalf("restart produced %v", msgs)
	}
	out += acdFeed(t, e2, strings.Join(lines[half:], ""))
	if out != string(want) {
		t.Fatalf("resumed transcript:\n%s\nwant:\n%s", out, want)
	}
	// Everything ended: the floor is empty, the operators available.
	snap, _, _ := ACDLoad(context.Background(), rdb, acdTestPrefix, acdTestCell)
	if len(snap.Calls) != 0 || len(snap.Queue) != 0 || len(snap.Operators) != 2 {
		t.Fatalf("floor %+v", snap)
	}
	for _, o := range snap.Operators {
		if o.State != acd.Available {
			t.Fatalf("operator %+v", o)
		}
	}
	n, _ := rdb.XLen(context.Background(), ACDKey(acdTestPrefix, acdTestCell, "log")).Result()
	if n != int64(strings.Count(string(want), "\n")) {
		t.Fatalf("log has %d entries", n)
	}
}

func TestACDPushEvent(t *testing.T) {
	_, rdb := acdTestRedis(t)
	ctx := context.Background()
	if err := ACDPushEvent(ctx, rdb, acdTestPrefix, acdTestCell, "call", "c-1"); err != nil {
		t.Fatal(err)
	}
	if err := ACDPushEvent(ctx, rdb, acdTestPrefix, acdTestCell, "answer", "A"); err == nil {
		t.Fatal("answer accepted")
	}
	if err := ACDPushEvent(ctx, rdb, acdTestPrefix, acdTestCell, "hangup", "a b"); err == nil {
		t.Fatal("bad id accepted")
	}
	got, _ := rdb.LRange(ctx, "dialbridge:{101}:acd:inbox", 0, -1).Result()
	if !reflect.DeepEqual(got, []string{`{"command":"call","id":"c-1"}`}) {
		t.Fatalf("%q", got)
	}
}

// TestACDInbox: events pushed by the bridge are applied in order, their
// messages broadcast, and acknowledged with the save of their effect; an
// event taken but never saved (crash) is applied by the next run.
func TestACDInbox(t *testing.T) {
	acdNoLeaks(t)
	mr, rdb := acdTestRedis(t)
	ctx := context.Background()
	taken := ACDKey(acdTestPrefix, acdTestCell, "inbox:taken")
	// A previous run took an event and died before saving it.
	mr.Lpush(taken, `{"command":"call","id":"old"}`)
	for _, ev := range [][2]string{{"call", "b1"}, {"call", "b2"}, {"hangup", "old"}, {"hangup", "nobody"}} {
		if err := ACDPushEvent(ctx, rdb, acdTestPrefix, acdTestCell, ev[0], ev[1]); err != nil {
			t.Fatal(err)
		}
	}
	s, e, _ := acdStart(t, rdb, "me", acdOps("A"))
	var mu sync.Mutex
	var seen []string
	cancelSub := e.Subscribe(func(lines []string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, lines...)
	})
	defer cancelSub()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.RunInbox(runCtx, s) }()
	want := []string{
		"Call old received", "Call old ringing for operator A",
		"Call b1 received", "Call b1 waiting in queue",
		"Call b2 received", "Call b2 waiting in queue",
		"Call old missed", "Call b1 ringing for operator A",
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= len(want) && !mr.Exists(taken) && len(acdList(mr, ACDKey(acdTestPrefix, acdTestCell, "inbox"))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seen %q", seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("seen %q\nwant %q", seen, want)
	}
	snap, _, _ := s.Load(ctx)
	if !reflect.DeepEqual(snap.Queue, []string{"b2"}) {
		t.Fatalf("queue %v", snap.Queue)
	}
}

func acdList(m *miniredis.Miniredis, key string) []string {
	l, err := m.List(key)
	if err != nil {
		return nil
	}
	return l
}

// TestACDOutage: Redis goes away while the queue manager runs; commands go
// on in memory, and the whole floor is written once Redis is back.
func TestACDOutage(t *testing.T) {
	acdNoLeaks(t)
	mr, rdb := acdTestRedis(t)
	_, e, _ := acdStart(t, rdb, "me", acdOps("A", "B"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	acdFeed(t, e, "call 1\ncall 2\nanswer A\n")
	mr.Close()
	start := time.Now()
	acdFeed(t, e, "hangup 1\ncall 3\ncall 4\nhangup 2\nanswer A\n")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("commands waited %v for Redis", d)
	}
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, _, err := ACDLoad(context.Background(), rdb, acdTestPrefix, acdTestCell)
		if err == nil {
			r, _, rerr := acd.Restore(acdOps("A", "B"), 10*time.Second, snap, time.Now())
			if rerr == nil && acdSame(r.Snapshot(), e.Snapshot()) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("floor not written back: %+v (%v)", snap, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// acdSame compares floors as saved (times without monotonic readings).
func acdSame(a, b acd.Snapshot) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
