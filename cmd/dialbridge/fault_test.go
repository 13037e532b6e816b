package main

// Fault tests: the real binary as a subprocess, killed with SIGKILL in the
// middle of a load, then restarted. They run on miniredis by default and on
// a real redis-server in the integration tier (DIALBRIDGE_TEST_REDIS).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/testport"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds the dialbridge binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dialbridge-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "dialbridge")
		out, err := exec.Command("go", "build", "-race", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// daemonProc is the binary running one cell.
type daemonProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func startProc(t *testing.T, bin, settings, logPath string) *daemonProc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "run", "--config", settings, testCell)
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: c, log: f, done: make(chan struct{})}
	go func() { c.Wait(); close(p.done) }()
	t.Cleanup(func() {
		c.Process.Kill()
		<-p.done
		f.Close()
	})
	return p
}

func (p *daemonProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

func (p *daemonProc) term(t *testing.T, within time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("daemon did not stop within %s after SIGTERM", within)
	}
}

// TestKill9MidLoad: 5,000 mixed commands, SIGKILL while they are in
// progress, restart; every command gets exactly one result, none is dialed
// twice, and the queues end empty.
func TestKill9MidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	const n = 5000
	// A real server: recovery waits for the dead daemon's heartbeat to
	// expire, and miniredis does not expire keys on the wall clock.
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("needs a real redis-server: run by make integration")
	}
	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, faultRules)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	dir := t.TempDir()
	prefix := testPrefix(t)
	settings := writeFaultSettings(t, dir, addr, prefix, sim.Port(), 200)

	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	mc := multcallsim.New(rdb, prefix, testCell, multcallsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go mc.RunConfirmer(ctx)

	bin := binary(t)
	logPath := filepath.Join(dir, "daemon.log")
	p1 := startProc(t, bin, settings, logPath)

	if err := mc.Push(ctx, faultCommands(n, "k%05d")...); err != nil {
		t.Fatal(err)
	}

	// Kill it while calls are in progress: after some results, with many
	// calls answered and talking.
	results := map[string][]bridge.Result{}
	collect := func(k int) {
		rs, err := mc.CollectResults(ctx, k)
		if err != nil {
			t.Fatalf("collect: %v (have %d results; log %s)", err, len(results), logPath)
		}
		for _, r := range rs {
			results[r.ID] = append(results[r.ID], r)
		}
	}
	collect(800)
	inFlight, _ := redisq.ReadDepths(ctx, rdb, redisq.NewKeys(prefix, testCell))
	p1.kill(t)
	t.Logf("killed with %d results in, %d commands claimed", len(results), inFlight.Claimed)
	if inFlight.Claimed == 0 {
		t.Fatal("nothing was in progress at the kill: the test did not test anything")
	}

	p2 := startProc(t, bin, settings, logPath)
	collect(n - 800)
	p2.term(t, 20*time.Second)

	unknown := checkSettled(t, rdb, prefix, sim, results, n, "k%05d", int(inFlight.Claimed))
	t.Logf("commands %d, results %d, unknown %d, dialed twice 0, lost %d", n, len(results), unknown, n-len(results))
}

// checkSettled asserts the promises after a fault: exactly one result per
// command, no number dialed twice (numbers ending in 9 are refused and may
// be attempted up to retries=3 times), at most maxUnknown results unknown,
// and the cell's queues empty. It returns the number of unknown results.
func checkSettled(t *testing.T, rdb *redis.Client, prefix string, sim *amisim.Server, results map[string][]bridge.Result, n int, idFormat string, maxUnknown int) int {
	t.Helper()
	unknown := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprintf(idFormat, i)
		rs := results[id]
		if len(rs) != 1 {
			t.Errorf("%s: %d results %+v", id, len(rs), rs)
			continue
		}
		if rs[0].Status == bridge.StatusUnknown {
			unknown++
		}
	}
	if len(results) != n {
		t.Errorf("%d ids in results, want %d", len(results), n)
	}
	for number, c := range originatesByNumber(sim) {
		limit := 1
		if strings.HasSuffix(number, "9") {
			limit = 3
		}
		if c > limit {
			t.Errorf("number %s originated %d times", number, c)
		}
	}
	if unknown > maxUnknown {
		t.Errorf("%d unknown results, more than the %d calls that were in doubt", unknown, maxUnknown)
	}
	d, err := redisq.ReadDepths(context.Background(), rdb, redisq.NewKeys(prefix, testCell))
	if err != nil {
		t.Fatal(err)
	}
	if d.Dial != 0 || d.Claimed != 0 || d.Results != 0 || d.Confirm != 0 {
		t.Errorf("queues not empty at the end: %+v", d)
	}
	return unknown
}

const faultRules = "suffix=5:busy,ring=20ms;suffix=6:noanswer;suffix=7:congestion,ring=10ms;suffix=8:hangup,cause=21,ring=30ms;" +
	"suffix=9:refuse;answer,ring=20ms,talk=400ms"

func faultCommands(n int, idFormat string) [][]byte {
	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = multcallsim.Command(fmt.Sprintf(idFormat, i), fmt.Sprintf("5511%06d", i))
	}
	return cmds
}

// TestAMIDropsMidLoad: the AMI simulator drops every connection three times
// while 3,000 commands are in progress. Nothing is dialed twice, every
// command gets one result, and unknown is only for calls whose outcome was
// in flight during a drop.
func TestAMIDropsMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	t.Parallel()
	const n = 3000
	h := newHarness(t, harnessConfig{threads: 200, rules: faultRules,
		tweak: func(s *config.Settings) { s.Originate.Timeout = config.Duration(time.Second) }})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := h.mc.Push(ctx, faultCommands(n, "a%05d")...); err != nil {
		t.Fatal(err)
	}
	results := map[string][]bridge.Result{}
	collect := func(k int) {
		rs, err := h.mc.CollectResults(ctx, k)
		if err != nil {
			t.Fatalf("collect: %v (have %d)", err, len(results))
		}
		for _, r := range rs {
			results[r.ID] = append(results[r.ID], r)
		}
	}
	inDoubt := 0
	for _, at := range []int{400, 400, 400} {
		collect(at)
		inDoubt += h.d.cell.InFlight()
		h.sim.DropConnections()
	}
	collect(n - 1200)
	unknown := checkSettled(t, h.rdb, h.s.Redis.Prefix, h.sim, results, n, "a%05d", inDoubt)
	if st := h.d.amic.State(); st.Reconnects < 3 {
		t.Errorf("%d reconnects, want at least 3", st.Reconnects)
	}
	t.Logf("commands %d, results %d, unknown %d (in doubt at the drops ≤ %d), dialed twice 0", n, len(results), unknown, inDoubt)
}

// redisProc is a redis-server the test owns, so it can stop and restart it
// with its data (AOF).
type redisProc struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, port int, dir string) *redisProc {
	t.Helper()
	c := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", filepath.Join(dir, "redis.log"))
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisProc{port: port, dir: dir, cmd: c}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func (r *redisProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisProc) stop(t *testing.T) {
	r.cmd.Process.Signal(syscall.SIGTERM) // Redis fsyncs the AOF and exits
	r.cmd.Wait()
}

// TestRedisRestartMidLoad: Redis is stopped for a few seconds while 3,000
// commands are in progress, then restarted with its data. The daemon does
// not exit, keeps its calls' results, and pushes them when Redis is back.
func TestRedisRestartMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed: run by make integration")
	}
	t.Parallel()
	const n = 3000
	dir := t.TempDir()
	port := testport.Reserve(t) // kept while Redis is down: restarted on it
	srv := startRedis(t, port, dir)
	h := newHarness(t, harnessConfig{threads: 200, rules: faultRules, redisAddr: srv.addr(),
		tweak: func(s *config.Settings) { s.Originate.Timeout = config.Duration(time.Second) }})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if err := h.mc.Push(ctx, faultCommands(n, "r%05d")...); err != nil {
		t.Fatal(err)
	}
	results := map[string][]bridge.Result{}
	collect := func(k int) {
		for len(results) < k {
			rs, err := h.mc.CollectResults(ctx, 1)
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("collect: %v (have %d)", err, len(results))
				}
				time.Sleep(50 * time.Millisecond) // Redis is down: Multcall waits too
				continue
			}
			results[rs[0].ID] = append(results[rs[0].ID], rs[0])
		}
	}
	collect(1000)
	srv.stop(t)
	time.Sleep(3 * time.Second)
	srv = startRedis(t, port, dir)
	collect(n)
	h.quiet(500 * time.Millisecond)
	unknown := checkSettled(t, h.rdb, h.s.Redis.Prefix, h.sim, results, n, "r%05d", 0)
	select {
	case err := <-h.done:
		t.Fatalf("the daemon exited during the outage: %v", err)
	default:
	}
	t.Logf("commands %d, results %d, unknown %d, dialed twice 0", n, len(results), unknown)
}

// writeFaultSettings writes the settings the fault tests run the binary with.
func writeFaultSettings(t *testing.T, dir, redisAddr, prefix string, amiPort, threads int) string {
	t.Helper()
	host, port, _ := strings.Cut(redisAddr, ":")
	path := filepath.Join(dir, "settings.yaml")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`
log: {level: info, format: json}
redis: {host: %s, port: %s, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 10s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: 1s}
queues: [{name: "%s", threads: %d}]
`, host, port, prefix, amiPort, testCell, threads)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTwoDaemonsOneKilled: two daemons share a cell; one is killed with
// SIGKILL mid-load; the other settles its orphans, once.
func TestTwoDaemonsOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("needs a real redis-server: run by make integration")
	}
	const n = 3000
	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, faultRules)})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	prefix := testPrefix(t)
	settings := writeFaultSettings(t, dir, addr, prefix, sim.Port(), 100)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	mc := multcallsim.New(rdb, prefix, testCell, multcallsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go mc.RunConfirmer(ctx)

	bin := binary(t)
	logPath := filepath.Join(dir, "daemons.log")
	a := startProc(t, bin, settings, logPath)
	b := startProc(t, bin, settings, logPath)
	if err := mc.Push(ctx, faultCommands(n, "d%05d")...); err != nil {
		t.Fatal(err)
	}
	results := map[string][]bridge.Result{}
	rs, err := mc.CollectResults(ctx, 800)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		results[r.ID] = append(results[r.ID], r)
	}
	before, _ := redisq.ReadDepths(ctx, rdb, redisq.NewKeys(prefix, testCell))
	a.kill(t)
	rs, err = mc.CollectResults(ctx, n-800)
	if err != nil {
		t.Fatalf("collect: %v (log %s)", err, logPath)
	}
	for _, r := range rs {
		results[r.ID] = append(results[r.ID], r)
	}
	b.term(t, 20*time.Second)
	unknown := checkSettled(t, rdb, prefix, sim, results, n, "d%05d", int(before.Claimed))
	instances := map[string]int{}
	for _, r := range results {
		instances[r[0].Instance]++
	}
	if len(instances) != 2 {
		t.Errorf("results came from %v, want both daemons", instances)
	}
	t.Logf("commands %d, results %d, unknown %d, by instance %v, dialed twice 0", n, len(results), unknown, instances)
}

func mustRules(t *testing.T, s string) []amisim.Rule {
	t.Helper()
	r, err := amisim.ParseRules(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func originatesByNumber(sim *amisim.Server) map[string]int {
	n := map[string]int{}
	for _, o := range sim.Originates() {
		n[o.Number]++
	}
	return n
}
