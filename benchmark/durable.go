package benchmark

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// runDurable measures what redis.wait_replicas 1 costs (issue 16): the
// same e2e and paced runs with wait_replicas 0 and 1, interleaved run by
// run so that both see the same neighbours, on a Redis with at least one
// replica (scripts/bench.sh --only durable starts one). Bars: calls/s with
// WAIT ≥ 70 % of without, paced push → Originate p99 at most 1 ms more.
func runDurable(ctx context.Context, cfg Config, start StartFunc, rules, events string,
	prefix func(string, int) string, cell string, say func(string, ...any)) ([]Row, error) {
	if start == nil {
		return nil, fmt.Errorf("durable: no daemon to start")
	}
	if err := needReplica(ctx, cfg.RedisAddr); err != nil {
		return nil, err
	}
	var tput [2][]float64
	var paced [2][]E2EResult
	for i := range cfg.Runs {
		for w := range 2 {
			r, err := runE2E(ctx, start, e2eOptions{addr: cfg.RedisAddr, prefix: prefix(fmt.Sprintf("durable-e2e-w%d-", w), i), cell: cell, n: cfg.N,
				threads: cfg.Threads, conns: cfg.AMIConnections, guard: cfg.AMIGuard, events: events, rules: rules,
				logPath: filepath.Join(cfg.Dir, "durable-daemon.log"), waitReplicas: w})
			if err != nil {
				return nil, fmt.Errorf("durable e2e run %d (wait_replicas %d): %w", i+1, w, err)
			}
			say("durable e2e run %d (wait_replicas %d): %d calls in %s: %.0f calls/s; %s", i+1, w, r.Calls, r.Duration.Round(time.Millisecond), r.CallsPS, r.Statuses)
			tput[w] = append(tput[w], r.CallsPS)
		}
		for w := range 2 {
			r, err := runE2E(ctx, start, e2eOptions{addr: cfg.RedisAddr, prefix: prefix(fmt.Sprintf("durable-paced-w%d-", w), i), cell: cell, n: cfg.PacedN,
				threads: cfg.Threads, conns: cfg.AMIConnections, guard: cfg.AMIGuard, events: events, rate: cfg.Rate, rules: rules,
				logPath: filepath.Join(cfg.Dir, "durable-daemon.log"), waitReplicas: w})
			if err != nil {
				return nil, fmt.Errorf("durable paced run %d (wait_replicas %d): %w", i+1, w, err)
			}
			say("durable paced run %d (wait_replicas %d, %.0f calls/s offered): push→Originate %s", i+1, w, cfg.Rate, r.ToOriginate)
			paced[w] = append(paced[w], r)
		}
	}
	ratios := make([]float64, cfg.Runs)
	added := make([]float64, cfg.Runs)
	p99 := [2][]float64{}
	for i := range cfg.Runs {
		ratios[i] = tput[1][i] / tput[0][i]
		for w := range 2 {
			p99[w] = append(p99[w], ms(paced[w][i].ToOriginate.P99))
		}
		added[i] = p99[1][i] - p99[0][i]
	}
	name := fmt.Sprintf("durable (threads %d, one local replica)", cfg.Threads)
	rows := []Row{
		{Scenario: name + ", wait_replicas 0", Metric: "calls/s", Median: fmtNum(Median(tput[0])), Runs: fmtNums(tput[0]), Ratio: "100 %"},
		{Scenario: name + ", wait_replicas 1", Metric: "calls/s", Median: fmtNum(Median(tput[1])), Runs: fmtNums(tput[1]),
			Ratio: fmt.Sprintf("%.0f %% (per run %s)", 100*Median(ratios), fmtPcts(ratios)), Bar: "≥ 70 % of wait_replicas 0", Met: yes(Median(ratios) >= 0.7)},
		{Scenario: fmt.Sprintf("durable paced %.0f/s, wait_replicas 0", cfg.Rate), Metric: "push → Originate p99 (ms)", Median: fmtMS(Median(p99[0])), Runs: fmtMSs(p99[0])},
		{Scenario: fmt.Sprintf("durable paced %.0f/s, wait_replicas 1", cfg.Rate), Metric: "push → Originate p99 (ms)", Median: fmtMS(Median(p99[1])), Runs: fmtMSs(p99[1]),
			Ratio: fmt.Sprintf("+%s ms (per run %s)", fmtMS(Median(added)), fmtMSs(added)), Bar: "≤ 1 ms added", Met: yes(Median(added) <= 1)},
	}
	rows = append(rows, latencyRows(fmt.Sprintf("durable paced %.0f/s, wait_replicas 1", cfg.Rate), paced[1], "")...)
	return rows, nil
}

// needReplica checks that the bench's Redis has a replica online: WAIT 1
// would otherwise hold every call.
func needReplica(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("durable: %s: %w", addr, err)
	}
	if !strings.Contains(info, "state=online") {
		return fmt.Errorf("durable: %s has no replica online (start one: redis-server --port P --replicaof %s; scripts/bench.sh --only durable does)", addr, strings.Replace(addr, ":", " ", 1))
	}
	return nil
}
