package callcenter

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Run plays one shift.
func Run(sc Scenario, p Policy, seed uint64) Result {
	s := newSim(sc, seed)
	r := s.run(newPacer(p, sc))
	r.Policy, r.Seed = p, seed
	return r
}

// Config is a matrix to run.
type Config struct {
	Operators   []int
	AnswerRates []float64
	Talks       []time.Duration
	Shift       time.Duration
	Seeds       int
	Policies    []Policy
	Workers     int // 0: every core
}

// FullMatrix is issue 15's matrix: 18 scenarios, an 8-hour shift, 10 seeds.
func FullMatrix() Config {
	return Config{
		Operators:   []int{5, 20, 100},
		AnswerRates: []float64{0.15, 0.35, 0.60},
		Talks:       []time.Duration{60 * time.Second, 180 * time.Second},
		Shift:       8 * time.Hour,
		Seeds:       10,
		Policies:    Policies,
	}
}

// Cell is one scenario × policy over every seed.
type Cell struct {
	Scenario Scenario
	Policy   Policy
	Runs     []Result // by seed

	MedianOccupancy, MedianAbandon, MaxAbandon, MedianWorstWindow float64
	MeanLevel                                                     float64
}

// Report is a matrix's cells, by scenario then policy, and the bars.
type Report struct {
	Config Config
	Cells  []Cell
	Bars   []Bar
}

// Bar is one bar of issue 15 in one scenario.
type Bar struct {
	Scenario Scenario
	Name     string
	Met      bool
	Detail   string
}

// RunMatrix runs every scenario × policy × seed on a worker pool.
func RunMatrix(cfg Config) Report {
	if cfg.Policies == nil {
		cfg.Policies = Policies
	}
	var scs []Scenario
	for _, n := range cfg.Operators {
		for _, a := range cfg.AnswerRates {
			for _, t := range cfg.Talks {
				scs = append(scs, Scenario{Operators: n, AnswerRate: a, MeanTalk: t, Shift: cfg.Shift})
			}
		}
	}
	type job struct{ cell, seed int }
	cells := make([]Cell, 0, len(scs)*len(cfg.Policies))
	var jobs []job
	for _, sc := range scs {
		for _, p := range cfg.Policies {
			cells = append(cells, Cell{Scenario: sc, Policy: p, Runs: make([]Result, cfg.Seeds)})
			for seed := range cfg.Seeds {
				jobs = append(jobs, job{len(cells) - 1, seed})
			}
		}
	}
	// Biggest first, so the pool does not end on one long run.
	slices.SortStableFunc(jobs, func(a, b job) int {
		return cmp.Compare(cells[b.cell].Scenario.Operators, cells[a.cell].Scenario.Operators)
	})
	w := cfg.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	ch := make(chan job)
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for j := range ch {
				c := &cells[j.cell]
				// Seeds are shared by every policy of a scenario, so they
				// face the same kind of luck.
				seed := uint64(j.seed+1)*1_000_003 + uint64(c.Scenario.Operators)*101 +
					uint64(c.Scenario.AnswerRate*1000)*7 + uint64(c.Scenario.MeanTalk.Seconds())
				c.Runs[j.seed] = Run(c.Scenario, c.Policy, seed)
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	for i := range cells {
		summarize(&cells[i])
	}
	rep := Report{Config: cfg, Cells: cells}
	rep.Bars = bars(cells, cfg.Policies)
	return rep
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func summarize(c *Cell) {
	var occ, ab, ww []float64
	var lvl float64
	for _, r := range c.Runs {
		occ = append(occ, r.Occupancy)
		ab = append(ab, r.AbandonRate)
		ww = append(ww, r.WorstWindow)
		c.MaxAbandon = max(c.MaxAbandon, r.AbandonRate)
		lvl += r.MeanLevel
	}
	c.MedianOccupancy, c.MedianAbandon, c.MedianWorstWindow = median(occ), median(ab), median(ww)
	c.MeanLevel = lvl / float64(len(c.Runs))
}

func (rep Report) cell(sc Scenario, p Policy) *Cell {
	for i := range rep.Cells {
		if rep.Cells[i].Scenario == sc && rep.Cells[i].Policy == p {
			return &rep.Cells[i]
		}
	}
	return nil
}

// bars checks issue 15's bars in every scenario where predictive ran.
func bars(cells []Cell, policies []Policy) []Bar {
	rep := Report{Cells: cells}
	var out []Bar
	for _, c := range cells {
		if c.Policy != Predictive {
			continue
		}
		sc := c.Scenario
		out = append(out, Bar{sc, "shift abandon ≤ 3 % every seed", c.MaxAbandon <= 0.03,
			fmt.Sprintf("worst seed %.2f %%", 100*c.MaxAbandon)})
		out = append(out, Bar{sc, "worst 30-min window ≤ 6 % (median seed)", c.MedianWorstWindow <= 0.06,
			fmt.Sprintf("%.2f %%", 100*c.MedianWorstWindow)})
		best, bestP := -1.0, Policy("")
		for _, p := range policies {
			o := rep.cell(sc, p)
			if p == Predictive || o == nil || o.MaxAbandon > 0.03 {
				continue
			}
			if o.MedianOccupancy > best {
				best, bestP = o.MedianOccupancy, p
			}
		}
		if bestP != "" {
			out = append(out, Bar{sc, "occupancy ≥ best compliant baseline", c.MedianOccupancy >= best,
				fmt.Sprintf("%.1f %% vs %s %.1f %%", 100*c.MedianOccupancy, bestP, 100*best)})
		}
		if pr := rep.cell(sc, Progressive); pr != nil && sc.AnswerRate <= 0.35 {
			out = append(out, Bar{sc, "occupancy ≥ progressive + 10 points", c.MedianOccupancy >= pr.MedianOccupancy+0.10,
				fmt.Sprintf("%.1f %% vs %.1f %%", 100*c.MedianOccupancy, 100*pr.MedianOccupancy)})
		}
	}
	return out
}

// Name is a scenario's short name: "20 ops, 35 %, 180 s".
func (sc Scenario) Name() string {
	return fmt.Sprintf("%d ops, %.0f %%, %.0f s", sc.Operators, 100*sc.AnswerRate, sc.MeanTalk.Seconds())
}

// Table is the report as a Markdown table: median occupancy, median and worst
// shift abandon rate, median worst 30-minute window, mean level.
func (rep Report) Table() string {
	var b strings.Builder
	b.WriteString("| scenario | policy | occupancy (median) | abandon (median / worst seed) | worst 30-min window (median) | mean level |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|\n")
	for _, c := range rep.Cells {
		fmt.Fprintf(&b, "| %s | %s | %.1f %% | %.2f %% / %.2f %% | %.2f %% | %.2f |\n",
			c.Scenario.Name(), c.Policy, 100*c.MedianOccupancy, 100*c.MedianAbandon, 100*c.MaxAbandon,
			100*c.MedianWorstWindow, c.MeanLevel)
	}
	return b.String()
}

// BarsTable lists every bar in every scenario, met or not.
func (rep Report) BarsTable() string {
	var b strings.Builder
	b.WriteString("| scenario | bar | met | figures |\n|---|---|---|---|\n")
	met := 0
	for _, x := range rep.Bars {
		m := "**missed**"
		if x.Met {
			m, met = "yes", met+1
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", x.Scenario.Name(), x.Name, m, x.Detail)
	}
	fmt.Fprintf(&b, "\n%d of %d bars met.\n", met, len(rep.Bars))
	return b.String()
}
