package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The limiter's cost benchmark of issue 14 ("dialbridge bench --only
// trunk-cost"): the real daemon in its own process, the same scenarios with
// and without a trunk, interleaved in each run so that both see the same
// neighbours. The paced scenario (1,000 calls/s offered) with a trunk of
// cps 5,000 measures what the token and the slot add between the push and
// the Originate; the e2e scenario (a backlog dialed as fast as it goes)
// measures the throughput, with the trunk of cps 5,000 (which caps it by
// design when the daemon alone goes faster) and with one of cps 100,000
// (never binding: the limiter's own cost).

// BenchTrunk is the trunk a bench daemon's cell dials through: trunks[] of
// its settings, channel unchanged ("PJSIP/{number}@trunk", which the
// simulator plays as before carriers existed), so that only the limiter
// differs.
type BenchTrunk struct {
	CPS         float64
	Burst       int
	MaxChannels int
}

// queueField is the queue's trunk field ("" without a trunk).
func (t *BenchTrunk) queueField() string {
	if t == nil {
		return ""
	}
	return ", trunk: bench"
}

// yaml is the trunks section ("" without a trunk).
func (t *BenchTrunk) yaml() string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("trunks: [{name: bench, channel: \"PJSIP/{number}@trunk\", cps: %g, burst: %d, max_channels: %d}]\n",
		t.CPS, max(1, t.Burst), t.MaxChannels)
}

func (t *BenchTrunk) String() string {
	if t == nil {
		return "no trunk"
	}
	s := "trunk cps " + strconv.FormatFloat(t.CPS, 'f', -1, 64) + ", burst " + strconv.Itoa(max(1, t.Burst))
	if t.MaxChannels > 0 {
		s += ", max_channels " + strconv.Itoa(t.MaxChannels)
	}
	return s
}

// TrunkCostConfig is the cost benchmark's shape.
type TrunkCostConfig struct {
	RedisAddr string
	Binary    string // the dialbridge binary (the daemon runs as its own process)
	Rate      float64
	PacedN    int // commands per paced run; default 10 s of Rate
	N         int // commands per e2e run
	Runs      int
	Threads   int
	Trunk     BenchTrunk // the paced comparison's trunk; default cps 5,000, burst 1, max_channels 10,000
	Progress  io.Writer
}

// TrunkCostReport runs the comparison and renders its table.
func TrunkCostReport(ctx context.Context, cfg TrunkCostConfig) (string, error) {
	if cfg.Binary == "" {
		return "", errors.New("trunk-cost needs the dialbridge binary")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1000
	}
	if cfg.PacedN <= 0 {
		cfg.PacedN = int(cfg.Rate * 10)
	}
	if cfg.N <= 0 {
		cfg.N = 30000
	}
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Threads < 1 {
		cfg.Threads = 1000
	}
	if cfg.Trunk.CPS == 0 {
		cfg.Trunk = BenchTrunk{CPS: 5000, Burst: 1, MaxChannels: 10000}
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "dialbridge-bench-trunk")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	start := SubprocessStart(cfg.Binary, dir)
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	const cell = "b1"
	wide := &BenchTrunk{CPS: 100000, Burst: cfg.Trunk.Burst, MaxChannels: cfg.Trunk.MaxChannels}
	type variant struct {
		name  string
		trunk *BenchTrunk
		rate  float64
		n     int
	}
	paced := []variant{{"paced-none", nil, cfg.Rate, cfg.PacedN}, {"paced-trunk", &cfg.Trunk, cfg.Rate, cfg.PacedN}}
	e2e := []variant{{"e2e-none", nil, 0, cfg.N}, {"e2e-trunk", &cfg.Trunk, 0, cfg.N}, {"e2e-wide", wide, 0, cfg.N}}
	res := map[string][]E2EResult{}
	for i := range cfg.Runs {
		for _, v := range append(append([]variant(nil), paced...), e2e...) {
			r, err := runE2E(ctx, start, e2eOptions{addr: cfg.RedisAddr, prefix: "bench-" + runID + "-" + v.name + strconv.Itoa(i), cell: cell,
				n: v.n, threads: cfg.Threads, events: "filtered", rate: v.rate, rules: "answer", trunk: v.trunk,
				logPath: filepath.Join(dir, v.name+"-daemon.log")})
			if err != nil {
				return "", fmt.Errorf("%s run %d: %w", v.name, i+1, err)
			}
			fmt.Fprintf(cfg.Progress, "trunk-cost %s (%s) run %d: %d calls in %s: %.0f calls/s; push→Originate %s\n",
				v.name, v.trunk, i+1, r.Calls, r.Duration.Round(time.Millisecond), r.CallsPS, r.ToOriginate)
			res[v.name] = append(res[v.name], r)
		}
	}
	p99 := func(name string) []float64 {
		out := make([]float64, len(res[name]))
		for i, r := range res[name] {
			out[i] = ms(r.ToOriginate.P99)
		}
		return out
	}
	p50 := func(name string) []float64 {
		out := make([]float64, len(res[name]))
		for i, r := range res[name] {
			out[i] = ms(r.ToOriginate.P50)
		}
		return out
	}
	cps := func(name string) []float64 {
		out := make([]float64, len(res[name]))
		for i, r := range res[name] {
			out[i] = r.CallsPS
		}
		return out
	}
	diff := func(a, b []float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] - b[i]
		}
		return out
	}
	ratio := func(a, b []float64) []float64 {
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] / b[i]
		}
		return out
	}
	rate := fmt.Sprintf("paced %.0f/s", cfg.Rate)
	added := diff(p99("paced-trunk"), p99("paced-none"))
	added50 := diff(p50("paced-trunk"), p50("paced-none"))
	rTrunk := ratio(cps("e2e-trunk"), cps("e2e-none"))
	rWide := ratio(cps("e2e-wide"), cps("e2e-none"))
	rows := []Row{
		{Scenario: rate + ", no trunk", Metric: "push → Originate p50 / p99 (ms)",
			Median: fmtMS(Median(p50("paced-none"))) + " / " + fmtMS(Median(p99("paced-none"))), Runs: "p99: " + fmtMSs(p99("paced-none"))},
		{Scenario: rate + ", " + cfg.Trunk.String(), Metric: "push → Originate p50 / p99 (ms)",
			Median: fmtMS(Median(p50("paced-trunk"))) + " / " + fmtMS(Median(p99("paced-trunk"))), Runs: "p99: " + fmtMSs(p99("paced-trunk"))},
		{Scenario: rate + ", the trunk's cost", Metric: "push → Originate p99 added (ms; p50 added)",
			Median: fmtMS(Median(added)) + " (" + fmtMS(Median(added50)) + ")", Runs: fmtMSs(added), Bar: "≤ 0.3 ms", Met: yes(Median(added) <= 0.3)},
		{Scenario: "e2e " + strconv.Itoa(cfg.N) + " answered, no trunk", Metric: "calls/s", Median: fmtNum(Median(cps("e2e-none"))), Runs: fmtNums(cps("e2e-none"))},
		{Scenario: "e2e, " + cfg.Trunk.String(), Metric: "calls/s", Median: fmtNum(Median(cps("e2e-trunk"))), Runs: fmtNums(cps("e2e-trunk")),
			Ratio: fmt.Sprintf("%.0f %% (per run %s)", 100*Median(rTrunk), fmtPcts(rTrunk)), Bar: "≥ 90 %", Met: yes(Median(rTrunk) >= 0.9)},
		{Scenario: "e2e, " + wide.String() + " (never binding)", Metric: "calls/s", Median: fmtNum(Median(cps("e2e-wide"))), Runs: fmtNums(cps("e2e-wide")),
			Ratio: fmt.Sprintf("%.0f %% (per run %s)", 100*Median(rWide), fmtPcts(rWide)), Bar: "≥ 90 %", Met: yes(Median(rWide) >= 0.9)},
	}
	return (&Report{Rows: rows}).Table(), nil
}
