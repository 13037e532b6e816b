package benchmark

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestWindowsOver(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		times      []time.Time
		bound      int
		most, over int
	}{
		{"none", nil, 2, 0, 0},
		{"even", at(0, 500, 1000, 1500), 2, 2, 0},
		{"edge is outside", at(0, 485, 970), 2, 2, 0},
		{"three in 0.97 s", at(0, 400, 969, 2000), 2, 3, 1},
		{"two windows over", at(0, 10, 20, 30), 2, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			most, over := windowsOver(tc.times, TrunkWindow, tc.bound)
			if most != tc.most || over != tc.over {
				t.Errorf("windowsOver = %d, %d; want %d, %d", most, over, tc.most, tc.over)
			}
		})
	}
	jit, gap := spacing(at(0, 50, 100, 160, 200), 20)
	if jit != 10*time.Millisecond || gap != 40*time.Millisecond {
		t.Errorf("spacing = %s, %s; want 10ms, 40ms", jit, gap)
	}
}

// TestTrunkAccuracyShort runs the benchmark for a few seconds on the real
// Redis of $DIALBRIDGE_TEST_REDIS. The bound on Redis's clock is the
// limiter's and holds on any machine; the wire figures depend on the
// machine's load and are only printed.
func TestTrunkAccuracyShort(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := TrunkAccuracyConfig{RedisAddr: addr, CPS: 10, Burst: 2, Duration: 3 * time.Second}
	r, err := RunTrunkAccuracy(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.GrantOver != 0 || r.GrantMax > cfg.Bound() {
		t.Errorf("grants: %d windows over %d (most %d)", r.GrantOver, cfg.Bound(), r.GrantMax)
	}
	total := 0
	for i, n := range r.PerDaemon {
		if n == 0 {
			t.Errorf("daemon %d got no token", i)
		}
		total += n
	}
	if total != r.Originates {
		t.Errorf("%d grants but %d Originates at the simulator", total, r.Originates)
	}
	if r.Originates < 10 {
		t.Errorf("only %d Originates in %s at cps 10", r.Originates, cfg.Duration)
	}
	table, err := TrunkAccuracyReport(ctx, []TrunkAccuracyConfig{{RedisAddr: addr, CPS: 50, Duration: time.Second}}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "utilisation") || strings.Count(table, "\n") != 9 {
		t.Errorf("table:\n%s", table)
	}
}
