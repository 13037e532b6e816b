// Command pacing-matrix runs issue 15's pacing matrix (18 scenarios × 5
// policies × 10 seeds, 8-hour shifts, virtual time) and prints the table and
// the bars.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/multcall/dialbridge/benchmark/callcenter"
)

func main() {
	seeds := flag.Int("seeds", 10, "seeds per scenario and policy")
	shift := flag.Duration("shift", 8*time.Hour, "shift length")
	png := flag.String("png", "", "write the chart (occupancy and abandon rate per policy and scenario) to this PNG")
	flag.Parse()
	cfg := callcenter.FullMatrix()
	cfg.Seeds, cfg.Shift = *seeds, *shift
	start := time.Now()
	rep := callcenter.RunMatrix(cfg)
	fmt.Println(rep.Table())
	fmt.Println(rep.BarsTable())
	fmt.Fprintf(os.Stderr, "matrix in %s\n", time.Since(start).Round(time.Second))
	if *png != "" {
		if err := rep.WriteChart(*png); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
	}
}
