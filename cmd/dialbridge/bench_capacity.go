package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/multcall/dialbridge/benchmark"
)

// runCapacityBench is "dialbridge bench --only capacity" (issue 16 part 6):
// Redis's and the daemon's CPU per call of each kind, on a Redis nothing
// else uses (it runs CONFIG RESETSTAT). With out, the capacity section of
// that file (docs/PERFORMANCE.md) is rewritten in place; the rest of the
// file is left alone.
func runCapacityBench(ctx context.Context, stdout, progress io.Writer, cfg benchmark.CapacityConfig, out, cmdline string) error {
	fmt.Fprintf(progress, "dialbridge bench: capacity on redis %s; %s\n", cfg.RedisAddr, benchmark.Machine())
	rep, err := benchmark.RunCapacity(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, rep.Table())
	fmt.Fprintln(stdout, rep.ClusterTable())
	fmt.Fprintln(stdout, rep.Breakdown())
	if out == "" {
		return nil
	}
	if err := benchmark.WriteCapacitySection(out, rep.Markdown(cmdline)); err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	fmt.Fprintf(progress, "dialbridge bench: capacity section written to %s\n", out)
	return nil
}

// parseRates reads --capacity-rates: comma-separated positive calls/s.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("%q is not a positive rate", f)
		}
		out = append(out, r)
	}
	return out, nil
}
