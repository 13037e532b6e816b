package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/redisq"
)

// TestDemoPlain runs the whole demo for a few seconds with stdout not a
// terminal: the bridge dials, answered calls reach the queue manager, the
// simulated operators answer them, and the final snapshot shows it all.
func TestDemoPlain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var log []string
	var stats map[string]string
	o := demoOptions{
		cell: "101", threads: 50, rate: 25, operators: "3", ringTimeout: time.Second,
		rules: demoMix(400 * time.Millisecond),
		ops:   opsim.Options{AnswerMin: 20 * time.Millisecond, AnswerMax: 80 * time.Millisecond, Reject: 0.2, Ignore: 0.1, Seed: 7},
		inspect: func(rdb redis.UniversalClient) {
			c := context.Background()
			msgs, _ := rdb.XRange(c, redisq.ACDKey("dialbridge", "101", "log"), "-", "+").Result()
			for _, m := range msgs {
				s, _ := m.Values["message"].(string)
				log = append(log, s)
			}
			stats, _ = rdb.HGetAll(c, redisq.NewKeys("dialbridge", "101").Stats()).Result()
		},
	}
	var out bytes.Buffer
	if err := demo(ctx, &out, o); err != nil {
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
	for _, want := range []string{" received", " answered by operator ", " finished and operator "} {
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
