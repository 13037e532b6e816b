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
	sim, err := amisim.New(amisim.Config{
		Rules: mustRules(t, "suffix=5:busy,ring=20ms;suffix=6:noanswer;suffix=7:congestion,ring=10ms;suffix=8:hangup,cause=21,ring=30ms;"+
			"suffix=9:refuse;answer,ring=20ms,talk=400ms"),
		MaxRecords: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	dir := t.TempDir()
	prefix := testPrefix(t)
	host, port, _ := strings.Cut(addr, ":")
	settings := filepath.Join(dir, "settings.yaml")
	os.WriteFile(settings, []byte(fmt.Sprintf(`
log: {level: info, format: json}
redis: {host: %s, port: %s, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 2s, command_ack: 5s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: 1s}
queues: [{name: "%s", threads: 200}]
`, host, port, prefix, sim.Port(), testCell)), 0o600)

	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	mc := multcallsim.New(rdb, prefix, testCell, multcallsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go mc.RunConfirmer(ctx)

	bin := binary(t)
	logPath := filepath.Join(dir, "daemon.log")
	p1 := startProc(t, bin, settings, logPath)

	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = multcallsim.Command(fmt.Sprintf("k%05d", i), fmt.Sprintf("5511%06d", i))
	}
	if err := mc.Push(ctx, cmds...); err != nil {
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

	// Exactly one result per command.
	unknown := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("k%05d", i)
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
	// No number dialed twice (numbers are unique per command; refused ones
	// are attempted up to retries times, never more).
	for number, c := range originatesByNumber(sim) {
		limit := 1
		if strings.HasSuffix(number, "9") {
			limit = 3
		}
		if c > limit {
			t.Errorf("number %s originated %d times", number, c)
		}
	}
	// unknown only for calls really in doubt: at most the calls in progress
	// at the kill.
	if unknown > int(inFlight.Claimed) {
		t.Errorf("%d unknown results, more than the %d calls in progress at the kill", unknown, inFlight.Claimed)
	}
	d, err := redisq.ReadDepths(context.Background(), rdb, redisq.NewKeys(prefix, testCell))
	if err != nil {
		t.Fatal(err)
	}
	if d.Dial != 0 || d.Claimed != 0 || d.Results != 0 || d.Confirm != 0 {
		t.Errorf("queues not empty at the end: %+v", d)
	}
	t.Logf("commands %d, results %d, unknown %d, duplicates dialed 0, lost %d", n, len(results), unknown, n-len(results))
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
