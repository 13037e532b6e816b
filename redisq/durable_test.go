package redisq

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/redistest"
)

// durableServers starts a master with one replica of its own (the shared
// server of the integration tier has none, and this test kills its
// master); skipped outside the integration tier.
func durableServers(t *testing.T) (*redistest.Server, *redistest.Server) {
	t.Helper()
	if os.Getenv("DIALBRIDGE_TEST_REDIS") == "" || !redistest.Available() {
		t.Skip("needs redis-server: run by make integration")
	}
	m, reps := redistest.Replicated(t, 1)
	return m, reps[0]
}

// TestDurableWaitAndFailover: with wait_replicas 1, MarkDialing returns only
// once the replica holds "originating"; a replica that stops acknowledging
// makes MarkDialing fail with bridge.ErrNotDurable and the admission claim
// nothing; a result pushed meanwhile is held in memory and, when the master
// is killed and its replica (which never saw the result) takes over, pushed
// again from memory, identical, once; then the admission opens again.
func TestDurableWaitAndFailover(t *testing.T) {
	master, replica := durableServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The client follows "the master" as Sentinel's client would: every
	// new connection goes to target.
	var target atomic.Value
	target.Store(master.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr: "master", DisableIdentity: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, target.Load().(string))
		},
	})
	t.Cleanup(func() { _ = rdb.Close() })
	var logs rqLog
	k := NewKeys(rqPrefix, rqCell)
	d := NewDurable(rdb, k, 1, 100*time.Millisecond, logs.logger())
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithDurable(d))
	runDone := make(chan struct{})
	runCtx, stopRun := context.WithCancel(ctx)
	go func() { defer close(runDone); _ = d.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()

	admits := func() bool { n, _ := d.Admit(ctx, 5); return n >= 5 }
	rqEventually(t, 30*time.Second, "the first probe to find the replica", admits)

	repl := replica.Client(t)
	begin := func(id string) (*bridge.Call, []byte) {
		t.Helper()
		raw := rqRaw(id)
		if err := rdb.LPush(ctx, k.Claimed(rqInst), raw).Err(); err != nil {
			t.Fatal(err)
		}
		c := rqCall(id, raw, "tok-"+id)
		if dup, err := q.Begin(ctx, c); err != nil || dup {
			t.Fatalf("begin %s: dup=%v err=%v", id, dup, err)
		}
		c.Attempts, c.ChannelID, c.CallCode, c.State = 1, "tok-"+id+"-1", "42", bridge.StateOriginating
		return c, raw
	}

	// Acknowledged: the replica has "originating" the moment MarkDialing
	// returns, and a result pushed now is not held.
	c1, raw1 := begin("d1")
	if err := q.MarkDialing(ctx, c1); err != nil {
		t.Fatal(err)
	}
	if st := repl.HGet(ctx, k.Call("d1"), "state").Val(); st != "originating" {
		t.Fatalf("replica state %q right after MarkDialing, want originating", st)
	}
	if settled, err := q.Finish(ctx, raw1, c1.Result(bridge.StatusAnswered)); err != nil || !settled {
		t.Fatal(settled, err)
	}
	if n := d.Held(); n != 0 {
		t.Fatalf("%d results held after an acknowledged push", n)
	}

	// The replica stops acknowledging (it leaves replication: from now on
	// it misses every write, as a replica cut off before a failover does).
	c2, raw2 := begin("d2")
	if err := repl.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	err := q.MarkDialing(ctx, c2)
	if !errors.Is(err, bridge.ErrNotDurable) || !strings.Contains(err.Error(), "WAIT 1: 0 acknowledged") {
		t.Fatalf("MarkDialing without a replica: %v, want ErrNotDurable", err)
	}
	if n, _ := d.Admit(ctx, 5); n != 0 {
		t.Fatalf("admitted %d while no replica acknowledges", n)
	}
	if d.Err() == nil || !errors.Is(d.Err(), bridge.ErrNotDurable) {
		t.Fatalf("Err() = %v, want why nothing is claimed", d.Err())
	}
	r2 := c2.Result(bridge.StatusAnswered)
	r2.TalkMS = 1234
	if settled, err := q.Finish(ctx, raw2, r2); err != nil || !settled {
		t.Fatal(settled, err)
	}
	if n := d.Held(); n != 1 {
		t.Fatalf("%d results held, want the unacknowledged one", n)
	}

	// Failover: the master dies (kill -9); the replica, which has d2's
	// "originating" and claim but not its result, is the master now.
	master.Kill()
	target.Store(replica.Addr())
	wake := d.Wake()
	// Its own replica: the old master, back empty.
	master.Restart(t, "--replicaof", "127.0.0.1", strconv.Itoa(replica.Port))
	rqEventually(t, 30*time.Second, "the held result to be acknowledged", func() bool { return d.Held() == 0 })
	rqEventually(t, 30*time.Second, "the admission to open again", admits)
	select {
	case <-wake:
	case <-time.After(30 * time.Second):
		t.Fatal("Wake not signalled when the replicas came back")
	}

	res := repl.LRange(ctx, k.Results(), 0, -1).Val()
	var d2 []string
	for _, s := range res {
		if strings.Contains(s, `"id":"d2"`) {
			d2 = append(d2, s)
		}
	}
	if len(d2) != 1 || d2[0] != string(r2.JSON()) {
		t.Fatalf("d2 results on the new master %q, want exactly %s", d2, r2.JSON())
	}
	if n := repl.LLen(ctx, k.Claimed(rqInst)).Val(); n != 0 {
		t.Fatalf("%d commands still claimed on the new master", n)
	}
	if st := repl.HGet(ctx, k.Call("d2"), "state").Val(); st != "done" {
		t.Fatalf("d2 state %q on the new master, want done", st)
	}
	rqEventually(t, 30*time.Second, "results_repushed = 1", func() bool {
		n, _ := repl.HGet(ctx, k.Stats(), "results_repushed").Int()
		return n == 1
	})
	if !strings.Contains(logs.String(), "pushed again from memory") {
		t.Fatalf("no log line for the result pushed again:\n%s", logs.String())
	}
}

// TestDurableOff: without WithDurable every step behaves as before and
// nothing is held.
func TestDurableOff(t *testing.T) {
	_, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	raw := rqRaw("o1")
	k := NewKeys(rqPrefix, rqCell)
	rdb.LPush(ctx, k.Claimed(rqInst), raw)
	c := rqCall("o1", raw, "t")
	if _, err := q.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.Attempts, c.ChannelID, c.CallCode = 1, "t-1", "42"
	if err := q.MarkDialing(ctx, c); err != nil {
		t.Fatal(err)
	}
	if settled, err := q.Finish(ctx, raw, c.Result(bridge.StatusAnswered)); err != nil || !settled {
		t.Fatal(settled, err)
	}
	if _, ok := rqStats(t, rdb)["durable_waits"]; ok {
		t.Fatal("durable_waits counted without durability")
	}
}

// TestDurableOnClusterAndSentinel runs a durable call's steps through the
// integration tier's Redis Cluster ($DIALBRIDGE_TEST_REDIS_CLUSTER: two
// cells on two masters: WAIT must go to the master that owns each cell's
// slot, on a connection of that node) and Sentinel set
// ($DIALBRIDGE_TEST_REDIS_SENTINEL: <master>@sentinels: the failover
// client's dedicated connection to the master of the moment). Each has
// replicas, so every step is acknowledged; nothing is killed (the servers
// are shared).
func TestDurableOnClusterAndSentinel(t *testing.T) {
	type target struct {
		name  string
		rdb   redis.UniversalClient
		cells []string
	}
	var targets []target
	if seeds := os.Getenv("DIALBRIDGE_TEST_REDIS_CLUSTER"); seeds != "" {
		rdb, err := Dial(rqCtx(t), DialOptions{ClusterAddrs: strings.Split(seeds, ",")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rdb.Close() })
		masters := map[string]string{}
		for i := 0; len(masters) < 2 && i < 100; i++ {
			cell := "d" + strconv.Itoa(i)
			m, err := rdb.(*redis.ClusterClient).MasterForKey(rqCtx(t), NewKeys("x", cell).Stats())
			if err != nil {
				t.Fatal(err)
			}
			if _, seen := masters[m.Options().Addr]; !seen {
				masters[m.Options().Addr] = cell
			}
		}
		var cells []string
		for _, c := range masters {
			cells = append(cells, c)
		}
		targets = append(targets, target{"cluster", rdb, cells})
	}
	if spec := os.Getenv("DIALBRIDGE_TEST_REDIS_SENTINEL"); strings.Contains(spec, "@") {
		master, addrs, _ := strings.Cut(spec, "@")
		rdb, err := Dial(rqCtx(t), DialOptions{SentinelMaster: master, SentinelAddrs: strings.Split(addrs, ",")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rdb.Close() })
		targets = append(targets, target{"sentinel", rdb, []string{rqCell}})
	}
	if len(targets) == 0 {
		t.Skip("neither DIALBRIDGE_TEST_REDIS_CLUSTER nor DIALBRIDGE_TEST_REDIS_SENTINEL set")
	}
	for _, tg := range targets {
		for _, cell := range tg.cells {
			t.Run(tg.name+" cell "+cell, func(t *testing.T) {
				ctx := rqCtx(t)
				prefix := "rqdur" + strconv.FormatInt(time.Now().UnixNano(), 36)
				k := NewKeys(prefix, cell)
				t.Cleanup(func() {
					for _, key := range []string{k.Claimed(rqInst), k.Results(), k.Call("x1"), k.Ack(), k.Stats()} {
						tg.rdb.Del(context.Background(), key)
					}
				})
				var logs rqLog
				d := NewDurable(tg.rdb, k, 1, time.Second, logs.logger())
				q := NewQueue(tg.rdb, prefix, cell, rqInst, WithDurable(d))
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); _ = d.Run(runCtx) }()
				defer func() { stop(); <-done }()
				for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					if n, _ := d.Admit(ctx, 1); n == 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the first probe did not find the replicas within 30 s: %v", d.Err())
					}
				}

				raw := rqRaw("x1")
				if err := tg.rdb.LPush(ctx, k.Claimed(rqInst), raw).Err(); err != nil {
					t.Fatal(err)
				}
				c := rqCall("x1", raw, "tok")
				c.Cell = cell
				if dup, err := q.Begin(ctx, c); err != nil || dup {
					t.Fatal(dup, err)
				}
				c.Attempts, c.ChannelID, c.CallCode = 1, "tok-1", "42"
				if err := q.MarkDialing(ctx, c); err != nil {
					t.Fatalf("MarkDialing with replicas: %v\n%s", err, logs.String())
				}
				if settled, err := q.Finish(ctx, raw, c.Result(bridge.StatusAnswered)); err != nil || !settled {
					t.Fatal(settled, err)
				}
				if n := d.Held(); n != 0 || d.Err() != nil {
					t.Fatalf("held %d, err %v", n, d.Err())
				}
				if n, _ := tg.rdb.HGet(ctx, k.Stats(), "durable_waits").Int(); n < 3 {
					t.Fatalf("durable_waits %d, want one per step at least", n)
				}
			})
		}
	}
}
