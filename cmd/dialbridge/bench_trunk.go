package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/multcall/dialbridge/benchmark"
)

// runTrunkAccuracyBench is "dialbridge bench --only trunk-accuracy": three
// daemons' trunk limiters (each its own Redis and AMI clients) on one trunk
// at cps 20, saturated for d, runs times, with burst 1 (the default) and
// burst 2 in turn; the table of medians goes to out (docs/PERFORMANCE.md
// explains it).
func runTrunkAccuracyBench(out, progress io.Writer, addr string, runs int, d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("--duration must be at least 1s, got %s", d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(progress, "dialbridge bench: trunk-accuracy on redis %s; %s\n", addr, benchmark.Machine())
	table, err := benchmark.TrunkAccuracyReport(ctx, []benchmark.TrunkAccuracyConfig{
		{RedisAddr: addr, CPS: 20, Burst: 1, Duration: d},
		{RedisAddr: addr, CPS: 20, Burst: 2, Duration: d},
	}, runs, progress)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, table)
	return nil
}

// runTrunkCostBench is "dialbridge bench --only trunk-cost": the paced
// scenario (--rate, 1,000 calls/s) and the e2e scenario (--n commands) with
// and without a trunk of cps 5,000, interleaved, the daemon in its own
// process; the table goes to out (docs/PERFORMANCE.md explains it).
func runTrunkCostBench(ctx context.Context, out io.Writer, cfg benchmark.TrunkCostConfig) error {
	fmt.Fprintf(cfg.Progress, "dialbridge bench: trunk-cost on redis %s; %s\n", cfg.RedisAddr, benchmark.Machine())
	table, err := benchmark.TrunkCostReport(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, table)
	return nil
}
