package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/benchmark"
)

// TestBenchCapacity runs "dialbridge bench --only capacity" at tiny scale on
// the integration tier's real redis-server (miniredis has no INFO
// commandstats or MONITOR): every kind gets all its results with the right
// status (the bench fails otherwise), the table has a row per kind, --out
// rewrites only its own section, and no key is left behind.
func TestBenchCapacity(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set (the integration tier sets it)")
	}
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "PERFORMANCE.md")
	const before = "# Performance\n\nthe main table\n"
	if err := os.WriteFile(out, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "bench", "--redis", addr, "--only", "capacity", "--capacity-n", "300", "--capacity-rates", "300",
		"--runs", "1", "--threads", "50", "--out", out)
	var stderr strings.Builder
	c.Stderr = &stderr
	stdout, err := c.Output()
	t.Log(stderr.String())
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stdout)
	}
	for _, kind := range []string{"answered", "busy", "no_answer", "ack_timeout", "duplicate", "invalid", "answered, paced 300/s",
		"answered, paced 300/s, 4s talk (≈ 1,200 in flight)", "idle daemon (no calls), per second"} {
		if !strings.Contains(string(stdout), "| "+kind+" | ") {
			t.Errorf("no row for %s:\n%s", kind, stdout)
		}
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(doc), before) || !strings.Contains(string(doc), benchmark.CapacityBegin) ||
		!strings.Contains(string(doc), "| answered | ") || !strings.HasSuffix(string(doc), benchmark.CapacityEnd+"\n") {
		t.Errorf("--out did not append the capacity section to the file:\n%s", doc)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if keys, err := rdb.Keys(context.Background(), "cap-*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left behind: %v %v", keys[:min(len(keys), 5)], err)
	}
}
