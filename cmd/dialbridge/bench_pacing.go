package main

import (
	"fmt"
	"io"
	"time"

	"github.com/multcall/dialbridge/benchmark/callcenter"
)

// runPacingBench is "dialbridge bench --only pacing": issue 15's matrix
// (operators × answer rate × talk time, 8-hour shifts, 10 seeds, five
// policies) on the simulated call center in virtual time, with the same
// pacer code the daemon runs. It needs no Redis. docs/PACING.md explains
// the model and the bars.
func runPacingBench(out, progress io.Writer, png string) error {
	start := time.Now()
	rep := callcenter.RunMatrix(callcenter.FullMatrix())
	fmt.Fprintln(out, rep.Table())
	fmt.Fprintln(out, rep.BarsTable())
	fmt.Fprintf(progress, "dialbridge bench: pacing matrix in %s\n", time.Since(start).Round(time.Second))
	if png == "" {
		return nil
	}
	if err := rep.WriteChart(png); err != nil {
		return fmt.Errorf("pacing chart: %w", err)
	}
	fmt.Fprintf(progress, "dialbridge bench: pacing chart written to %s\n", png)
	return nil
}
