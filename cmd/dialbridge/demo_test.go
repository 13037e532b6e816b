package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/redisq"
)

// TestDemoPlain runs the whole demo with stdout not a terminal until the
// bridge has dialed, answered calls have reached the queue manager and the
// simulated operators have answered and finished some, then stops it: the
// final snapshot shows it all. It waits for those rather than running a
// fixed few seconds, which a loaded machine can spend starting up.
func TestDemoPlain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var log []string
	var stats map[string]string
	readLog := func(rdb redis.UniversalClient) []string {
		var log []string
		msgs, _ := rdb.XRange(context.Background(), redisq.ACDKey("dialbridge", "101", "log"), "-", "+").Result()
		for _, m := range msgs {
			s, _ := m.Values["message"].(string)
			log = append(log, s)
		}
		return log
	}
	wantLog := []string{" received", " answered by operator ", " finished and operator "}
	o := demoOptions{
		cell: "101", threads: 50, rate: 25, operators: "3", ringTimeout: time.Second,
		rules: demoMix(400 * time.Millisecond),
		ops:   opsim.Options{AnswerMin: 20 * time.Millisecond, AnswerMax: 80 * time.Millisecond, Reject: 0.2, Ignore: 0.1, Seed: 7},
		inspect: func(rdb redis.UniversalClient) {
			log = readLog(rdb)
			stats, _ = rdb.HGetAll(context.Background(), redisq.NewKeys("dialbridge", "101").Stats()).Result()
		},
	}
	d, out, done := startDemo(ctx, t, o)
	rdb := redis.NewClient(&redis.Options{Addr: d.settings.Redis.Addr()})
	defer rdb.Close()
	waitFor(t, 60*time.Second, "answered calls finished by the operators", func() bool {
		st, _ := rdb.HGetAll(context.Background(), redisq.NewKeys("dialbridge", "101").Stats()).Result()
		joined := strings.Join(readLog(rdb), "\n")
		for _, want := range wantLog {
			if !strings.Contains(joined, want) {
				return false
			}
		}
		return st["results"] != "" && st["answered"] != ""
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	txt := out.String()
	for _, want := range []string{"redis-cli -p ", "operators A,B,C:operator", "in flight", "operators busy",
		"QUEUE MANAGER — cell 101", "OPERATOR   TIER", "BRIDGES"} {
		if want == "operators A,B,C:operator" {
			want = "operators A,B,C"
		}
		if !strings.Contains(txt, want) {
			t.Errorf("output lacks %q:\n%s", want, txt)
		}
	}
	if stats["results"] == "" || stats["answered"] == "" {
		t.Errorf("no results or no answered calls: %v", stats)
	}
	joined := strings.Join(log, "\n")
	for _, want := range wantLog {
		if !strings.Contains(joined, want) {
			t.Errorf("the queue manager's log has no %q:\n%s", want, joined)
		}
	}
}

func TestDemoOperators(t *testing.T) {
	for in, want := range map[string]string{"1": "A", "3": "A,B,C", "4": "A,B,C,D:supervisor", "A,S:supervisor": "A,S:supervisor"} {
		if got, err := demoOperators(in); err != nil || got != want {
			t.Errorf("demoOperators(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "201", "a b"} {
		if _, err := demoOperators(bad); err == nil {
			t.Errorf("demoOperators(%q) accepted", bad)
		}
	}
}

// startDemo runs the demo with o in the background and returns its daemon
// once it runs, the demo's output, and where the demo's error arrives when
// it returns.
func startDemo(ctx context.Context, t *testing.T, o demoOptions) (*daemon, *queueBuffer, <-chan error) {
	t.Helper()
	daemons := make(chan *daemon, 1)
	o.onDaemon = func(d *daemon) { daemons <- d }
	out := &queueBuffer{}
	done := make(chan error, 1)
	go func() { done <- demo(ctx, out, o) }()
	select {
	case d := <-daemons:
		return d, out, done
	case err := <-done:
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	return nil, out, done
}
