package main

// Adoption after kill -9 (issue 16 parts 3 and 4): the binary in its own
// process, killed with SIGKILL while calls are talking and ringing on the
// simulator, then restarted on the same host.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// Calls of the adoption tests: numbers ending in 1 are answered at once and
// talk adoptTalk; in 2 ring adoptRing and are busy; in 3 ring out
// (no_answer after the Originate's Timeout, adoptRingOut).
const (
	adoptTalk    = 12 * time.Second
	adoptRing    = 8 * time.Second
	adoptRingOut = 9 * time.Second
)

var adoptRules = fmt.Sprintf("suffix=1:answer,ring=10ms,talk=%s;suffix=2:busy,ring=%s;suffix=3:noanswer",
	adoptTalk, adoptRing)

// writeAdoptSettings: the fault tests' settings with a ring time long
// enough for calls to be ringing at the kill.
func writeAdoptSettings(t *testing.T, dir, redisAddr, prefix string, amiPort, threads int) string {
	t.Helper()
	host, port, _ := strings.Cut(redisAddr, ":")
	path := filepath.Join(dir, "settings.yaml")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`
log: {level: info, format: json}
redis: {host: %s, port: %s, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 10s, shutdown_grace: 15s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: %s}
queues: [{name: "%s", threads: %d}]
`, host, port, prefix, amiPort, adoptRingOut, testCell, threads)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// adoptRedis is a real redis-server in the integration tier, else
// miniredis: there a dead daemon's heartbeat never expires, so only the
// same-host fast path can recover it — the test proves that path.
func adoptRedis(t *testing.T) string {
	if addr := os.Getenv("DIALBRIDGE_TEST_REDIS"); addr != "" {
		return addr
	}
	return miniredis.RunT(t).Addr()
}

// instanceOf is the instance of the daemon process p (its heartbeat names
// its pid).
func instanceOf(t *testing.T, ctx context.Context, rdb *redis.Client, k redisq.Keys, p *daemonProc) string {
	t.Helper()
	var inst string
	waitFor(t, 30*time.Second, "the daemon's heartbeat", func() bool {
		names, _ := rdb.SMembers(ctx, k.InstanceSet()).Result()
		for _, n := range names {
			if rdb.HGet(ctx, k.Instance(n), "pid").Val() == fmt.Sprint(p.cmd.Process.Pid) {
				inst = n
				return true
			}
		}
		return false
	})
	return inst
}

// TestKill9AdoptsLiveCalls: two daemons share a cell; B is killed with -9
// while its calls talk (answered) and ring on the simulator; C starts on
// the same host. B's list is settled at once — on miniredis B's heartbeat
// never expires, so only the same-host check can do it; C at its start
// does it, or A if its recovery pass comes first — and B's calls are
// followed to their end: answered ones `answered` with their real talk time
// and adopted: true, ringing ones their real outcome (busy, no_answer).
// Nothing is dialed twice, every command gets exactly one result, and A's
// claimed list is never touched: A settles its own calls.
func TestKill9AdoptsLiveCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, adoptRules)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	addr := adoptRedis(t)
	dir := t.TempDir()
	prefix := testPrefix(t)
	settings := writeAdoptSettings(t, dir, addr, prefix, sim.Port(), 50)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	k := redisq.NewKeys(prefix, testCell)
	mc := multcallsim.New(rdb, prefix, testCell, multcallsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go mc.RunConfirmer(ctx)

	bin := binary(t)
	logPath := filepath.Join(dir, "daemons.log")
	b := startProc(t, bin, settings, logPath)
	instB := instanceOf(t, ctx, rdb, k, b)

	// 12 answered calls, all B's; then 8 busy and 8 ringing out, spread
	// over both daemons by the shared dial list.
	var cmds [][]byte
	kind := map[string]string{}
	for i := 0; i < 28; i++ {
		suffix := "1"
		switch {
		case i >= 20:
			suffix = "3"
		case i >= 12:
			suffix = "2"
		}
		id := fmt.Sprintf("ad%02d", i)
		kind[id] = suffix
		cmds = append(cmds, multcallsim.Command(id, fmt.Sprintf("55119%04d%s", i, suffix)))
	}
	if err := mc.Push(ctx, cmds[:12]...); err != nil {
		t.Fatal(err)
	}
	// The answered ones are talking (their hash says so: the daemon saw the
	// answer) before the ringing ones are pushed.
	waitFor(t, 30*time.Second, "12 calls answered", func() bool {
		for i := 0; i < 12; i++ {
			if rdb.HGet(ctx, k.Call(fmt.Sprintf("ad%02d", i)), "state").Val() != "answered" {
				return false
			}
		}
		return true
	})
	a := startProc(t, bin, settings, logPath)
	instA := instanceOf(t, ctx, rdb, k, a)
	// One at a time, each claimed before the next: both daemons wait in
	// BLMOVE and Redis serves them in turn.
	for i, cmd := range cmds[12:] {
		if err := mc.Push(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the call dialed", func() bool { return sim.OriginateCount() == 13+i })
	}
	heldA, _ := rdb.LRange(ctx, k.Claimed(instA), 0, -1).Result()
	heldB, _ := rdb.LRange(ctx, k.Claimed(instB), 0, -1).Result()
	if len(heldB) <= 12 || len(heldA) == 0 || len(heldA)+len(heldB) != 28 {
		t.Fatalf("claimed: A %d, B %d; want the 12 answered and some ringing calls on B, some ringing on A", len(heldA), len(heldB))
	}
	b.kill(t)
	killedAt := time.Now()

	c := startProc(t, bin, settings, logPath)
	waitFor(t, 30*time.Second, "B's list adopted", func() bool { return rdb.Exists(ctx, k.Claimed(instB)).Val() == 0 })
	settledIn := time.Since(killedAt)
	if settledIn > redisq.DefaultHeartbeatTTL {
		t.Errorf("B's list settled %s after the kill: that is the heartbeat's expiry, not the same-host path", settledIn)
	}
	instC := instanceOf(t, ctx, rdb, k, c)
	if os.Getenv("ADOPT_DEBUG") != "" {
		defer func() {
			b, _ := os.ReadFile(logPath)
			t.Logf("kill at %s\n%s", killedAt.UTC().Format(time.RFC3339Nano), b)
		}()
	}

	rs, err := mc.CollectResults(ctx, 28)
	if err != nil {
		t.Fatalf("collect: %v (log %s)", err, logPath)
	}
	results := map[string][]bridge.Result{}
	for _, r := range rs {
		results[r.ID] = append(results[r.ID], r)
	}
	ofA, ofB := map[string]bool{}, map[string]bool{}
	for _, raw := range heldA {
		ofA[idOf(t, raw)] = true
	}
	answeredOfB := 0
	for _, raw := range heldB {
		id := idOf(t, raw)
		ofB[id] = true
		if kind[id] == "1" {
			answeredOfB++
		}
	}
	adopters := map[string]int{}
	var talks []string
	for id, want := range kind {
		r := results[id]
		if len(r) != 1 {
			t.Errorf("%s: %d results %+v", id, len(r), r)
			continue
		}
		res := r[0]
		status := map[string]bridge.Status{"1": bridge.StatusAnswered, "2": bridge.StatusBusy, "3": bridge.StatusNoAnswer}[want]
		if res.Status != status {
			t.Errorf("%s: %s (%s), want %s", id, res.Status, res.Error, status)
		}
		if !ofB[id] {
			// A's (or B's, ended before the kill): settled by its daemon.
			if res.Adopted || (ofA[id] && res.Instance != instA) {
				t.Errorf("%s: settled by %s, adopted %v; a live daemon's calls are its own", id, res.Instance, res.Adopted)
			}
			continue
		}
		// C at its start, or A's recovery pass if it came first: either
		// is on this host and sees B's process gone.
		if (res.Instance != instC && res.Instance != instA) || !res.Adopted {
			t.Errorf("%s was B's: settled by %s, adopted %v; want adopted by %s or %s", id, res.Instance, res.Adopted, instC, instA)
			continue
		}
		adopters[res.Instance]++
		if want == "1" {
			talks = append(talks, fmt.Sprint(res.TalkMS))
			if d := time.Duration(res.TalkMS)*time.Millisecond - adoptTalk; d < -time.Second || d > time.Second {
				t.Errorf("%s: talk_ms %d, want the simulator's %s", id, res.TalkMS, adoptTalk)
			}
			if res.AnsweredAt == "" || res.Uniqueid == "" || res.Cause != 16 {
				t.Errorf("%s: answered_at %q uniqueid %q cause %d", id, res.AnsweredAt, res.Uniqueid, res.Cause)
			}
		}
	}
	for number, n := range originatesByNumber(sim) {
		if n != 1 {
			t.Errorf("number %s originated %d times", number, n)
		}
	}
	a.term(t, 30*time.Second)
	c.term(t, 30*time.Second)
	d, _ := redisq.ReadDepths(ctx, rdb, k)
	if d.Dial != 0 || d.Claimed != 0 {
		t.Errorf("queues not empty at the end: %+v", d)
	}
	if answeredOfB == 0 || len(talks) != answeredOfB {
		t.Errorf("%d answered calls adopted; B held %d talking at the kill (want some, all adopted)", len(talks), answeredOfB)
	}
	t.Logf("A held %d, B %d calls at the kill; B's list settled %s after the kill; adopted by %v (C is %s); answered talk_ms %s (simulator: %s)",
		len(heldA), len(heldB), settledIn.Round(time.Millisecond), adopters, instC, strings.Join(talks, ","), adoptTalk)
}

func idOf(t *testing.T, raw string) string {
	t.Helper()
	cmd, err := bridge.ParseCommand([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cmd.ID
}
