package redisq

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
)

// Test fixtures of this file's tests; names start with rq so they cannot
// collide with other tests of the package.
const (
	rqPrefix = "dialbridge"
	rqCell   = "101"
	rqInst   = "pbx1-4711"
)

var rqT0 = time.Date(2025, 3, 1, 12, 0, 0, 123e6, time.UTC)

// rqRedis starts a miniredis and a client for it; both are closed when the
// test ends.
func rqRedis(t testing.TB) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{
		Addr:            m.Addr(),
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     time.Second,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return m, rdb
}

func rqCtx(t testing.TB) context.Context {
	t.Helper()
	// Generous: the suite runs under the race detector on loaded 2-core
	// machines, where 2,000 concurrent steps take seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rqRaw is a dial command as Multcall would push it.
func rqRaw(id string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "number": "5511999990000"})
	return b
}

// rqCall is a call as the bridge builds it after claiming raw.
func rqCall(id string, raw []byte, token string) *bridge.Call {
	return &bridge.Call{
		Cmd:        &bridge.Command{ID: id, Number: "5511999990000"},
		Raw:        raw,
		Cell:       rqCell,
		Instance:   rqInst,
		Token:      token,
		State:      bridge.StateAcked,
		ReceivedAt: rqT0,
	}
}

// rqClaim puts raw in the instance's claimed list as ClaimNext would.
func rqClaim(t testing.TB, m *miniredis.Miniredis, inst string, raw []byte) {
	t.Helper()
	if _, err := m.Lpush(NewKeys(rqPrefix, rqCell).Claimed(inst), string(raw)); err != nil {
		t.Fatal(err)
	}
}

func rqList(t testing.TB, m *miniredis.Miniredis, key string) []string {
	t.Helper()
	if !m.Exists(key) {
		return nil
	}
	l, err := m.List(key)
	if err != nil {
		t.Fatalf("list %s: %v", key, err)
	}
	return l
}

func rqStats(t testing.TB, rdb *redis.Client) map[string]int64 {
	t.Helper()
	s, err := ReadStats(context.Background(), rdb, NewKeys(rqPrefix, rqCell))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rqLog is a logger whose output the test can read.
type rqLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rqLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rqLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *rqLog) logger() zerolog.Logger { return zerolog.New(l).With().Timestamp().Logger() }

// rqEventually polls cond until it holds or the deadline passes.
func rqEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rqRestart ends a simulated outage (m.Close() before). miniredis v2.40's
// Close cancels m.Ctx for good, and every blocking command (BRPOP, BLMOVE)
// after Restart then returns without writing any reply, so the client hangs
// until its read deadline (block + 10 s in go-redis). A real Redis has no such
// state: give the restarted server a live context, as a fresh one has.
func rqRestart(t testing.TB, m *miniredis.Miniredis) {
	t.Helper()
	m.Lock()
	if m.Ctx.Err() != nil {
		m.Ctx, m.CtxCancel = context.WithCancel(context.Background())
	}
	m.Unlock()
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
}

// eachCommand is a go-redis hook that shows f every command the client
// sends, alone or in a pipeline, before it goes.
type eachCommand func(redis.Cmder)

func (f eachCommand) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f eachCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f(cmd)
		return next(ctx, cmd)
	}
}

func (f eachCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			f(cmd)
		}
		return next(ctx, cmds)
	}
}
