package redisq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
)

// TestRealRedis runs the scripts on a real Redis (set DIALBRIDGE_TEST_REDIS
// to its host:port; skipped otherwise): miniredis' Lua is gopher-lua, so
// this is the check that the scripts are right for Redis 7 too. It uses its
// own prefix and deletes nothing else.
func TestRealRedis(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	realRedisSteps(t, rdb, rqCell)
}

// TestScriptStepsKeepOneSlot runs the same steps on miniredis (every
// test run, no server needed) with the slot watcher: no script's keys span
// hash tags.
func TestScriptStepsKeepOneSlot(t *testing.T) {
	_, rdb := rqRedis(t)
	realRedisSteps(t, rdb, rqCell)
}

// TestRealRedisCluster runs the same steps on a real Redis Cluster
// ($DIALBRIDGE_TEST_REDIS_CLUSTER: host:port,…; skipped otherwise), through
// Dial (the daemon's client): a script whose keys span slots is refused
// with CROSSSLOT, a key outside the node's slots with MOVED. Two cells
// whose slots are on different masters run, so a script sent to the wrong
// node would show.
func TestRealRedisCluster(t *testing.T) {
	seeds := os.Getenv("DIALBRIDGE_TEST_REDIS_CLUSTER")
	if seeds == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS_CLUSTER not set")
	}
	rdb, err := Dial(rqCtx(t), DialOptions{ClusterAddrs: strings.Split(seeds, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	cc := rdb.(*redis.ClusterClient)
	masters := map[string]string{}
	for i := 0; len(masters) < 2 && i < 100; i++ {
		cell := "c" + strconv.Itoa(i)
		m, err := cc.MasterForKey(rqCtx(t), NewKeys("x", cell).Dial())
		if err != nil {
			t.Fatal(err)
		}
		if _, seen := masters[m.Options().Addr]; !seen {
			masters[m.Options().Addr] = cell
		}
	}
	if len(masters) < 2 {
		t.Fatalf("every cell on one master: %v", masters)
	}
	for addr, cell := range masters {
		t.Run("cell "+cell+" on "+addr, func(t *testing.T) { realRedisSteps(t, rdb, cell) })
	}
}

// TestRealRedisSentinel runs the same steps through Sentinel
// ($DIALBRIDGE_TEST_REDIS_SENTINEL: <master-name>@host:port,… of the
// sentinels; skipped otherwise), through Dial: the failover client finds
// the master and every script runs there.
func TestRealRedisSentinel(t *testing.T) {
	spec := os.Getenv("DIALBRIDGE_TEST_REDIS_SENTINEL")
	if spec == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS_SENTINEL not set")
	}
	master, addrs, ok := strings.Cut(spec, "@")
	if !ok {
		t.Fatalf("DIALBRIDGE_TEST_REDIS_SENTINEL=%q: want <master-name>@host:port,…", spec)
	}
	rdb, err := Dial(rqCtx(t), DialOptions{SentinelMaster: master, SentinelAddrs: strings.Split(addrs, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	realRedisSteps(t, rdb, rqCell)
}

// realRedisSteps: every script of a call's life, recovery's first pass,
// forwarding between two routers, heartbeats, on rdb under a fresh prefix.
func realRedisSteps(t *testing.T, rdb redis.UniversalClient, cell string) {
	watchScriptSlots(t, rdb)
	ctx := rqCtx(t)
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // EVALSHA must fall back to EVAL
		t.Fatal(err)
	}
	prefix := "rqtest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	k := NewKeys(prefix, cell)
	t.Cleanup(func() {
		keys, _ := scanKeys(context.Background(), rdb, globEscape(prefix)+"*")
		for _, key := range keys { // one by one: on a Cluster, DEL of several keys wants one slot
			rdb.Del(context.Background(), key)
		}
	})
	q := NewQueue(rdb, prefix, cell, rqInst, WithACDInbox(100))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	llen := func(key string) int64 { return rdb.LLen(ctx, key).Val() }

	// Claim, Begin, duplicate, retry.
	raw := rqRaw("r1")
	must(rdb.LPush(ctx, k.Dial(), raw, raw).Err())
	for i := 0; i < 2; i++ {
		got, err := q.ClaimNext(ctx)
		must(err)
		if !bytes.Equal(got, raw) {
			t.Fatalf("claimed %q", got)
		}
	}
	if dup, err := q.Begin(ctx, rqCall("r1", raw, "a")); err != nil || dup {
		t.Fatal(dup, err)
	}
	if dup, err := q.Begin(ctx, rqCall("r1", raw, "a")); err != nil || dup {
		t.Fatal("retry:", dup, err)
	}
	if dup, err := q.Begin(ctx, rqCall("r1", raw, "b")); err != nil || !dup {
		t.Fatal("duplicate:", dup, err)
	}
	if n := llen(k.Ack()); n != 1 {
		t.Fatalf("%d acks", n)
	}
	if ttl := rdb.TTL(ctx, k.Call("r1")).Val(); ttl < DefaultCallTTL-time.Minute {
		t.Fatalf("TTL %s", ttl)
	}
	c := rqCall("r1", raw, "a")
	c.Attempts, c.ChannelID, c.CallCode = 1, "a-1", "42"
	must(q.MarkDialing(ctx, c))
	must(q.MarkDialing(ctx, c))
	c.Channel = "PJSIP/x-1"
	must(q.MarkAnswered(ctx, c))

	// Finish the duplicate (with a retry after a "lost reply"), then the call.
	dupRes := rqResult("r1", bridge.StatusDuplicate)
	q.mu.Lock()
	q.pending[dupRes] = "fixed-nonce"
	q.mu.Unlock()
	if ok, err := q.Finish(ctx, raw, dupRes); err != nil || !ok {
		t.Fatal(ok, err)
	}
	q.mu.Lock()
	q.pending[dupRes] = "fixed-nonce"
	q.mu.Unlock()
	if ok, err := q.Finish(ctx, raw, dupRes); err != nil || ok {
		t.Fatal("dup retry:", ok, err)
	}
	orig := rqResult("r1", bridge.StatusAnswered)
	if ok, err := q.Finish(ctx, raw, orig); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := q.Finish(ctx, raw, orig); err != nil || ok {
		t.Fatal("retry:", ok, err)
	}
	if n := llen(k.Results()); n != 2 {
		t.Fatalf("%d results", n)
	}
	if n := llen(k.Claimed(rqInst)); n != 0 {
		t.Fatalf("%d claimed", n)
	}
	h := rdb.HGetAll(ctx, k.Call("r1")).Val()
	if h["state"] != "done" || h["status"] != "answered" || h["result"] != string(orig.JSON()) || h["channel_id"] != "a-1" {
		t.Fatalf("hash %v", h)
	}
	if ttl := rdb.TTL(ctx, k.Call("r1")).Val(); ttl > 24*time.Hour || ttl < 24*time.Hour-time.Minute {
		t.Fatalf("TTL %s", ttl)
	}
	s, err := ReadStats(ctx, rdb, k)
	must(err)
	if s["claimed"] != 1 || s["dialed"] != 1 || s["answered"] != 1 || s["duplicate"] != 1 || s["results"] != 2 {
		t.Fatalf("stats %v", s)
	}

	// Bury 10 MB of non-UTF-8 with a result.
	big := bytes.Repeat([]byte{0xff}, 10<<20)
	must(rdb.LPush(ctx, k.Claimed(rqInst), big).Err())
	inv := &bridge.Result{ID: "r2", Cell: cell, Status: bridge.StatusInvalid, Error: "bad"}
	if ok, err := q.Bury(ctx, big, errors.New("invalid dial command: bad"), inv); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := q.Bury(ctx, big, errors.New("x"), inv); err != nil || ok {
		t.Fatal("second bury:", ok, err)
	}
	var e deadEntry
	must(json.Unmarshal([]byte(rdb.LIndex(ctx, k.Dead(), 0).Val()), &e))
	if e.RawEncoding != "base64" || !e.Truncated || e.Bytes != 10<<20 || e.ID != "r2" {
		t.Fatalf("dead entry %+v", e)
	}

	// Forwarding between two routers.
	const a, b = "ra", "rb"
	qa := NewQueue(rdb, prefix, cell, a)
	ca := rqCall("r3", rqRaw("r3"), "t3")
	ca.Instance = a
	ra := NewConfirmRouter(rdb, prefix, cell, a, zerolog.Nop())
	ch, cancel := ra.Expect("r3")
	defer cancel()
	if _, err := qa.Begin(ctx, ca); err != nil {
		t.Fatal(err)
	}
	rb := NewConfirmRouter(rdb, prefix, cell, b, zerolog.Nop())
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = rb.Run(runCtx) }()
	must(rdb.LPush(ctx, k.Confirm(), rqConfirm("r3", "3333"), rqConfirm("nobody", "1")).Err())
	rqEventually(t, 30*time.Second, "forwarded", func() bool { return llen(k.ConfirmFor(a)) == 1 })
	go func() { _ = ra.Run(runCtx) }()
	got, ok := rqRecv(t, ch, 30*time.Second)
	if !ok || got.CallCode != "3333" {
		t.Fatalf("got %+v %v", got, ok)
	}
	rqEventually(t, 30*time.Second, "unknown counted", func() bool {
		s, _ := ReadStats(ctx, rdb, k)
		return s["confirm_unknown"] == 1 && s["confirm_forwarded"] == 1
	})

	// Heartbeats and depths.
	must(NewHeartbeat(rdb, k, a, nil, 0, 0).Beat(ctx))
	list, err := Instances(ctx, rdb, k)
	must(err)
	if len(list) != 1 || list[0].Instance != a {
		t.Fatalf("instances %+v", list)
	}
	must(rdb.ScriptFlush(ctx).Err())
	must(NewHeartbeat(rdb, k, a, nil, 0, 0).Delete(ctx)) // pipelined script after a flush
	if reg, _ := RegisteredInstances(ctx, rdb, k); len(reg) != 0 {
		t.Fatalf("registered %v", reg)
	}
	must(rdb.LPush(ctx, k.Claimed("zz"), "x").Err())
	must(rdb.SAdd(ctx, k.InstanceSet(), "zz").Err())
	d, err := ReadDepths(ctx, rdb, k)
	must(err)
	if d.Claimed != 1 || d.Results != 3 || d.Dead != 1 || d.Ack != 2 {
		t.Fatalf("depths %+v", d)
	}

	// The answered call fed the queue manager's inbox in the finishing
	// step ("hangup"; "call" came with MarkAnswered).
	if n := llen(k.Base() + "acd:inbox"); n != 2 {
		t.Fatalf("%d inbox events", n)
	}

	// Recovery finds a dead instance's claimed list (first pass: SCAN of
	// every master) and adopts it.
	must(rdb.LPush(ctx, k.Claimed("dead1"), rqRaw("r9")).Err())
	qc := NewQueue(rdb, prefix, cell, "rc")
	orphans, err := qc.AdoptOrphans(ctx)
	must(err)
	found := false
	for _, o := range orphans {
		found = found || (o.Owner == "dead1" && string(o.Raw) == string(rqRaw("r9")))
	}
	if !found {
		t.Fatalf("orphans %+v: dead1's list not adopted", orphans)
	}
}
