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
