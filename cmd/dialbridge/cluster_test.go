package main

// The daemon on a real Redis Cluster (issue 16 part 5): cells on different
// masters, a slot resharded under load, a master killed (kill -9) and its
// replica promoted. Runs when DIALBRIDGE_TEST_REDIS_CLUSTER names the
// cluster (scripts/integration.sh starts one: 3 masters + 3 replicas,
// cluster-node-timeout 1000 ms) and kills one of its masters, so its name
// holds "Failover": integration.sh runs those after every other test.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// TestClusterFailover checks, on a real Redis Cluster, the promise of
// contract §2 without redis.wait_replicas: every command exactly one
// result with its true status (all answered: the PBX is healthy), none
// dialed twice, none lost — across
//
//   - a live resharding of cell A's slot to another master (CLUSTER SETSLOT
//     IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while A is under load:
//     go-redis follows ASK and MOVED, nothing is lost;
//   - a kill -9 of cell B's master while cell A is still under load, and
//     the promotion of B's replica.
//
// Which promise the kill checks, honestly: replication is asynchronous, so
// a write acknowledged to the daemon just before the kill can be missing
// on the promoted replica (a claim, a result, an ACK), and then a command
// may be lost or dialed twice — that is what redis.wait_replicas is for
// (contract §2 "Durability"; its mid-load kill is TestSentinelFailover's,
// with a Multcall that follows its own writes with WAIT too; this test runs
// without it). So B is killed at a
// quiet moment for B: its first batch is finished and the test has seen
// its writes reach the replica (WAIT 1 on B's master) right before the
// kill. B's second batch is pushed at the kill: the daemon must ride the
// failover and dial it once it can. The test prints the dialing gap (kill
// → B's first Originate after it) and the promotion time.
func TestClusterFailover(t *testing.T) {
	seeds := os.Getenv("DIALBRIDGE_TEST_REDIS_CLUSTER")
	if seeds == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS_CLUSTER not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	addrs := strings.Split(seeds, ",")
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DisableIdentity: true, ClusterStateReloadInterval: time.Second})
	defer admin.Close()
	if err := admin.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	prefix := testPrefix(t)

	// Cells: A and B on different masters; C, A's destination, a third.
	masterOf := func(cell string) string {
		m, err := admin.MasterForKey(ctx, redisq.NewKeys(prefix, cell).Dial())
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	var cellA, cellB string
	for i := 0; cellB == "" && i < 200; i++ {
		c := "k" + strconv.Itoa(i)
		switch {
		case cellA == "":
			cellA = c
		case masterOf(c) != masterOf(cellA):
			cellB = c
		}
	}
	if cellB == "" {
		t.Fatal("no two cells on different masters")
	}
	srcA, mB := masterOf(cellA), masterOf(cellB)
	var dstA string
	for _, m := range clusterMasters(ctx, t, admin) {
		if m != srcA && m != mB {
			dstA = m
		}
	}
	if dstA == "" {
		t.Fatal("the cluster has fewer than 3 masters")
	}
	t.Logf("cell %s on %s (migrates to %s), cell %s on %s (killed)", cellA, srcA, dstA, cellB, mB)

	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, "prefix=1:answer,ring=20ms,talk=100ms"), AuthDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	s := clusterSettings(t, addrs, prefix, sim.Port(), cellA, cellB)

	const nA, nB1, nB2 = 600, 150, 150
	type cellRun struct {
		name string
		mc   *multcallsim.Sim
		col  *resultCollector
	}
	cells := map[string]*cellRun{}
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	defer func() { stopBG(); bg.Wait() }()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	for _, c := range []string{cellA, cellB} {
		cr := &cellRun{name: c, mc: multcallsim.New(admin, prefix, c, multcallsim.Options{}), col: newResultCollector(admin, redisq.NewKeys(prefix, c))}
		cells[c] = cr
		bg.Add(2)
		go func() { defer bg.Done(); _ = cr.mc.RunConfirmer(bgCtx) }()
		go func() { defer bg.Done(); cr.col.run(bgCtx) }()
		dctx, dstop := context.WithCancel(ctx)
		d, err := startDaemon(dctx, s, c, log)
		if err != nil {
			dstop()
			t.Fatalf("start %s: %v", c, err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(dctx) }()
		defer func() {
			dstop()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("daemon %s did not stop", c)
			}
		}()
	}
	a, b := cells[cellA], cells[cellB]
	ids := func(cell string, from, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = multcallsim.Command(fmt.Sprintf("%s-%04d", cell, from+i), "1"+strconv.Itoa(1000000+from+i))
		}
		return out
	}
	push := func(mc *multcallsim.Sim, cmds [][]byte) {
		for {
			if err := mc.Push(ctx, cmds...); err == nil {
				return
			} else if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // Redis failing over: like Multcall, push again
		}
	}

	// A: 600 commands, 40 every 400 ms (~6 s of load); B: its first batch.
	bg.Add(1)
	go func() {
		defer bg.Done()
		for i := 0; i < nA; i += 40 {
			push(a.mc, ids(cellA, i, 40))
			select {
			case <-time.After(400 * time.Millisecond):
			case <-bgCtx.Done():
				return
			}
		}
	}()
	push(b.mc, ids(cellB, 0, nB1))

	// Reshard A's slot under load.
	waitFor(t, 60*time.Second, "A under way", func() bool { return a.col.count() >= nA/5 })
	t0 := time.Now()
	slot := migrateSlot(ctx, t, admin, redisq.NewKeys(prefix, cellA).Dial(), srcA, dstA)
	t.Logf("slot %d of cell %s moved %s → %s in %s, %d of %d results in", slot, cellA, srcA, dstA, time.Since(t0).Round(time.Millisecond), a.col.count(), nA)
	waitFor(t, 30*time.Second, "the slot map to show A's new master", func() bool {
		admin.ReloadState(ctx) // asynchronous: ask again until it shows
		return masterOf(cellA) == dstA
	})

	// A keeps going on its new master (go-redis followed MOVED) ...
	waitFor(t, 60*time.Second, "A after the migration", func() bool { return a.col.count() >= 2*nA/5 })
	// ... then, B quiet and replicated, kill -9 B's master, A still loaded.
	waitFor(t, 60*time.Second, "B's first batch", func() bool { return b.col.count() >= nB1 })
	if a.col.count() >= nA {
		t.Logf("note: A finished before the kill (%d results)", a.col.count())
	}
	pid, replicas := masterPIDAndWait(ctx, t, mB, redisq.NewKeys(prefix, cellB).Base()+"waitprobe")
	tKill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (%s): %v", pid, mB, err)
	}
	t.Logf("kill -9 master %s (pid %d) after WAIT saw %d replica(s); A at %d of %d results", mB, pid, replicas, a.col.count(), nA)
	bFirst := time.Now()
	push(b.mc, ids(cellB, nB1, nB2))
	newB := waitNewMaster(ctx, t, addrs, mB, redisq.NewKeys(prefix, cellB).Dial())
	t.Logf("replica %s promoted %s after the kill", newB, time.Since(tKill).Round(time.Millisecond))

	// Every command: one result, answered; each dialed once.
	waitFor(t, 180*time.Second, "every result", func() bool { return a.col.count() >= nA && b.col.count() >= nB1+nB2 })
	time.Sleep(2 * time.Second) // a second result would arrive by now
	stopBG()
	bg.Wait()
	originates := map[string]int{}
	var firstB time.Time
	for _, o := range sim.Originates() {
		id := o.Variables["DIALBRIDGE_ID"]
		originates[id]++
		if n, ok := strings.CutPrefix(id, cellB+"-"); ok {
			if i, _ := strconv.Atoi(n); i >= nB1 && (firstB.IsZero() || o.At.Before(firstB)) {
				firstB = o.At
			}
		}
	}
	for _, cr := range []*cellRun{a, b} {
		n := nA
		if cr == b {
			n = nB1 + nB2
		}
		byID := cr.col.byID()
		if len(byID) != n {
			t.Errorf("cell %s: results for %d ids, want %d", cr.name, len(byID), n)
		}
		var bad []string
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%04d", cr.name, i)
			rs := byID[id]
			if len(rs) != 1 || rs[0].Status != bridge.StatusAnswered || originates[id] != 1 {
				sts := make([]string, len(rs))
				for j, r := range rs {
					sts[j] = string(r.Status) + " " + r.Error
				}
				bad = append(bad, fmt.Sprintf("%s: %d results %v, dialed %d times", id, len(rs), sts, originates[id]))
			}
		}
		if len(bad) > 0 {
			t.Errorf("cell %s: %d of %d commands broke the promise, e.g. %v", cr.name, len(bad), n, bad[:min(len(bad), 10)])
		}
	}
	if firstB.IsZero() {
		t.Fatal("no Originate of B's second batch")
	}
	t.Logf("dialing gap of cell %s: %s from the kill to its first Originate (its commands were pushed %s after the kill)",
		cellB, firstB.Sub(tKill).Round(time.Millisecond), bFirst.Sub(tKill).Round(time.Millisecond))
}

func clusterSettings(t *testing.T, addrs []string, prefix string, amiPort int, cells ...string) *config.Settings {
	t.Helper()
	q := make([]string, len(cells))
	for i, c := range cells {
		q[i] = fmt.Sprintf(`{name: "%s", threads: 40}`, c)
	}
	y := fmt.Sprintf(`
log: {level: warn, format: console}
redis: {cluster: {addrs: ["%s"]}, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 20s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: 5s}
queues: [%s]
`, strings.Join(addrs, `", "`), prefix, amiPort, strings.Join(q, ", "))
	s, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	return s
}

// resultCollector pops a cell's results until stopped, riding Redis
// errors the way Multcall's response workers would.
type resultCollector struct {
	rdb  redis.UniversalClient
	keys redisq.Keys
	mu   sync.Mutex
	got  []bridge.Result
}

func newResultCollector(rdb redis.UniversalClient, k redisq.Keys) *resultCollector {
	return &resultCollector{rdb: rdb, keys: k}
}

func (c *resultCollector) run(ctx context.Context) {
	for ctx.Err() == nil {
		res, err := c.rdb.BRPop(ctx, time.Second, c.keys.Results()).Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		var r bridge.Result
		if json.Unmarshal([]byte(res[1]), &r) == nil {
			c.mu.Lock()
			c.got = append(c.got, r)
			c.mu.Unlock()
		}
	}
}

func (c *resultCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *resultCollector) byID() map[string][]bridge.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string][]bridge.Result{}
	for _, r := range c.got {
		m[r.ID] = append(m[r.ID], r)
	}
	return m
}

func clusterMasters(ctx context.Context, t *testing.T, cc *redis.ClusterClient) []string {
	t.Helper()
	var mu sync.Mutex
	var out []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		out = append(out, m.Options().Addr)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, PoolSize: 1, MaxRetries: -1})
}

// migrateSlot moves key's slot from src to dst the way redis-cli --cluster
// reshard does: IMPORTING on dst, MIGRATING on src, MIGRATE the keys in
// batches, then SETSLOT NODE on dst, src and the other masters.
func migrateSlot(ctx context.Context, t *testing.T, cc *redis.ClusterClient, key, src, dst string) int {
	t.Helper()
	s, d := nodeClient(src), nodeClient(dst)
	defer s.Close()
	defer d.Close()
	slot, err := s.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	srcID, err1 := s.Do(ctx, "CLUSTER", "MYID").Text()
	dstID, err2 := d.Do(ctx, "CLUSTER", "MYID").Text()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must(d.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(), "SETSLOT IMPORTING")
	must(s.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(), "SETSLOT MIGRATING")
	host, port, _ := net.SplitHostPort(dst)
	moved := 0
	for {
		keys, err := s.ClusterGetKeysInSlot(ctx, int(slot), 50).Result()
		must(err, "GETKEYSINSLOT")
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(s.Do(ctx, args...).Err(), "MIGRATE")
		moved += len(keys)
	}
	must(d.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(), "SETSLOT NODE on dst")
	must(s.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(), "SETSLOT NODE on src")
	for _, m := range clusterMasters(ctx, t, cc) {
		if m != src && m != dst {
			c := nodeClient(m)
			_ = c.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err() // gossip would tell it too
			c.Close()
		}
	}
	t.Logf("migrated %d keys of slot %d", moved, slot)
	return int(slot) // go-redis learns the new owner from MOVED
}

// masterPIDAndWait writes probe on master addr, WAITs until a replica has
// it (and so every write before it), and returns the master's pid and how
// many replicas acknowledged.
func masterPIDAndWait(ctx context.Context, t *testing.T, addr, probe string) (int, int64) {
	t.Helper()
	c := nodeClient(addr) // one connection: WAIT counts this connection's writes
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 {
		t.Fatalf("no process_id in INFO of %s", addr)
	}
	if err := c.Set(ctx, probe, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := c.Wait(ctx, 1, 5*time.Second).Result()
	if err != nil || n < 1 {
		t.Fatalf("WAIT 1 on %s: %d, %v: no replica has B's writes, the kill would lose them", addr, n, err)
	}
	return pid, n
}

// waitNewMaster waits until a node other than dead serves key's slot as
// master with the cluster state ok, and returns it.
func waitNewMaster(ctx context.Context, t *testing.T, seeds []string, dead, key string) string {
	t.Helper()
	var found string
	waitFor(t, 60*time.Second, "a replica promoted", func() bool {
		for _, a := range seeds {
			if a == dead {
				continue
			}
			c := nodeClient(a)
			slot, err := c.ClusterKeySlot(ctx, key).Result()
			info, err2 := c.ClusterInfo(ctx).Result()
			slots, err3 := c.ClusterSlots(ctx).Result()
			c.Close()
			if err != nil || err2 != nil || err3 != nil || !strings.Contains(info, "cluster_state:ok") {
				continue
			}
			for _, r := range slots {
				if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 && r.Nodes[0].Addr != dead {
					found = r.Nodes[0].Addr
					return true
				}
			}
		}
		return false
	})
	return found
}
