package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Config of a bench run.
type Config struct {
	RedisAddr      string
	N              int     // commands per baseline/e2e run
	Rate           float64 // paced offered load, calls/s
	PacedN         int     // commands per paced run (default 10 s of Rate)
	Inflight       int     // calls held for the memory scenario
	Runs           int
	Threads        int    // threads of the cell (and baseline workers)
	AMIConnections int    // 0: default
	AMIGuard       string // ami.guard of the daemon ("": auto, i.e. off on loopback)
	AMIEvents      string // comma-separated modes, first with the bars: "filtered" (through ami.EventFilter), "all" (every call event a real Asterisk sends); default "filtered,all"
	Outcome        string
	Only           map[string]bool // empty: all of baseline,e2e,paced,inflight,acd
	Start          StartFunc       // the daemon in this process (e2e, paced with InProcess or without Binary)
	Binary         string          // the dialbridge binary: the daemon's own process (e2e, paced, inflight); empty skips inflight
	InProcess      bool            // e2e and paced run Start in this process instead of Binary
	DaemonEnv      []string        // KEY=VALUE added to the environment of the daemon's process (GOGC …)
	CPUProfile     string          // CPU profile of the daemon in the first e2e run (of the first paced run without e2e); of the whole process InProcess
	AllocProfile   string          // allocation (heap) profile of the same daemon after the run (and AllocProfile+".base" at its start)
	Trace          string          // execution trace of the same daemon (go tool trace)
	MemProfile     string          // heap profile of the daemon of the first inflight run
	Dir            string          // scratch directory (logs, settings)
	Progress       io.Writer
	ACDDuration    time.Duration // per ACD measurement; default 2s
}

// baselineClaimers BLMOVE at once in the baseline.
const baselineClaimers = 16

// Row is one line of the table.
type Row struct {
	Scenario, Metric, Median, Runs, Ratio, Bar, Met string
}

// Report is the outcome of Run.
type Report struct {
	Config  Config
	Started time.Time
	Rows    []Row
	Notes   []string
}

func (c *Config) want(s string) bool { return len(c.Only) == 0 || c.Only[s] }

// profiles are the profiles asked for, taken of the first e2e run (of the
// first paced run without e2e).
func (c *Config) profiles() profiles {
	return profiles{cpu: c.CPUProfile, allocs: c.AllocProfile, trace: c.Trace}
}

// Run runs the selected scenarios, each Runs times, and returns the table.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Threads < 1 {
		cfg.Threads = 1000
	}
	if cfg.PacedN <= 0 {
		cfg.PacedN = int(cfg.Rate * 10)
	}
	if cfg.AMIEvents == "" {
		cfg.AMIEvents = "filtered,all"
	}
	var modes []string
	for _, m := range strings.Split(cfg.AMIEvents, ",") {
		switch m = strings.TrimSpace(m); m {
		case "filtered", "all":
			modes = append(modes, m)
		case "":
		default:
			return nil, fmt.Errorf("AMI events must be filtered or all, got %q", m)
		}
	}
	if len(modes) == 0 {
		return nil, errors.New("no AMI events mode")
	}
	if cfg.Outcome == "" {
		cfg.Outcome = "answer"
	}
	if cfg.ACDDuration <= 0 {
		cfg.ACDDuration = 2 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "dialbridge-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	rep := &Report{Config: cfg, Started: time.Now()}
	start := cfg.Start
	if !cfg.InProcess && cfg.Binary != "" {
		start = SubprocessStart(cfg.Binary, cfg.Dir, cfg.DaemonEnv...)
	}
	say := func(f string, a ...any) { fmt.Fprintf(cfg.Progress, f+"\n", a...) }
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	prefix := func(s string, i int) string { return "bench-" + runID + "-" + s + strconv.Itoa(i) }
	const cell = "b1"
	rules := map[string]string{"answer": "answer", "busy": "busy"}[cfg.Outcome]
	if rules == "" {
		return nil, fmt.Errorf("outcome must be answer or busy, got %q", cfg.Outcome)
	}

	var base, serial []float64
	e2e := make([][]float64, len(modes))
	e2eRes := make([][]E2EResult, len(modes))
	pacedRes := make([][]E2EResult, len(modes))
	for i := range cfg.Runs {
		// Baseline and e2e interleaved, so both see the same neighbours.
		if cfg.want("baseline") {
			b, err := runBaseline(ctx, cfg.RedisAddr, prefix("base", i), cell, cfg.N, cfg.Threads, baselineClaimers)
			if err != nil {
				return rep, fmt.Errorf("baseline run %d: %w", i+1, err)
			}
			say("baseline run %d: %d calls in %s: %.0f calls/s", i+1, b.Calls, b.Duration.Round(time.Millisecond), b.CallsPS)
			base = append(base, b.CallsPS)
			s, err := runBaseline(ctx, cfg.RedisAddr, prefix("serial", i), cell, cfg.N, cfg.Threads, 1)
			if err != nil {
				return rep, fmt.Errorf("baseline (serial claim) run %d: %w", i+1, err)
			}
			say("baseline (serial claim) run %d: %d calls in %s: %.0f calls/s", i+1, s.Calls, s.Duration.Round(time.Millisecond), s.CallsPS)
			serial = append(serial, s.CallsPS)
		}
		if cfg.want("e2e") && start != nil {
			for k, mode := range modes {
				var prof profiles
				if i == 0 && k == 0 {
					prof = cfg.profiles()
				}
				r, err := runE2E(ctx, start, e2eOptions{addr: cfg.RedisAddr, prefix: prefix("e2e-"+mode, i), cell: cell, n: cfg.N,
					threads: cfg.Threads, conns: cfg.AMIConnections, guard: cfg.AMIGuard, events: mode, rules: rules, profiles: prof,
					logPath: filepath.Join(cfg.Dir, "e2e-daemon.log")})
				if err != nil {
					return rep, fmt.Errorf("e2e run %d (AMI events %s): %w", i+1, mode, err)
				}
				say("e2e run %d (AMI events %s): %d calls in %s: %.0f calls/s; push→Originate %s; push→result %s; %s",
					i+1, mode, r.Calls, r.Duration.Round(time.Millisecond), r.CallsPS, r.ToOriginate, r.ToResult, r.Statuses)
				e2e[k] = append(e2e[k], r.CallsPS)
				e2eRes[k] = append(e2eRes[k], r)
			}
		}
	}
	if len(base) > 0 {
		rep.Rows = append(rep.Rows, Row{Scenario: fmt.Sprintf("baseline (raw go-redis, %d claimers, %d workers)", baselineClaimers, cfg.Threads), Metric: "calls/s",
			Median: fmtNum(Median(base)), Runs: fmtNums(base), Ratio: "100 %"})
		rs := make([]float64, len(serial))
		for i := range serial {
			rs[i] = serial[i] / base[i]
		}
		rep.Rows = append(rep.Rows, Row{Scenario: fmt.Sprintf("baseline, serial claim (1 claimer, %d workers: the daemon's shape)", cfg.Threads), Metric: "calls/s",
			Median: fmtNum(Median(serial)), Runs: fmtNums(serial), Ratio: fmt.Sprintf("%.0f %%", 100*Median(rs))})
	}
	for k, mode := range modes {
		if len(e2e[k]) == 0 {
			continue
		}
		row := Row{Scenario: "e2e (daemon, threads " + strconv.Itoa(cfg.Threads) + ", " + cfg.Outcome + " at once, AMI events " + mode + ")", Metric: "calls/s",
			Median: fmtNum(Median(e2e[k])), Runs: fmtNums(e2e[k]), Bar: "≥ 50 % of baseline"}
		if len(base) == len(e2e[k]) {
			ratios := make([]float64, len(e2e[k]))
			for i := range e2e[k] {
				ratios[i] = e2e[k][i] / base[i]
			}
			row.Ratio = fmt.Sprintf("%.0f %% (per run %s)", 100*Median(ratios), fmtPcts(ratios))
			row.Met = yes(Median(ratios) >= 0.5)
		}
		rep.Rows = append(rep.Rows, row)
		rep.Rows = append(rep.Rows, latencyRows("e2e, AMI events "+mode, e2eRes[k], "")...)
	}
	if cfg.want("paced") && start != nil {
		var chainRes []E2EResult
		for i := range cfg.Runs {
			if cfg.want("baseline") {
				c, err := runBaselineChain(ctx, cfg.RedisAddr, prefix("chain", i), cell, cfg.PacedN, cfg.Threads, cfg.Rate)
				if err != nil {
					return rep, fmt.Errorf("paced baseline run %d: %w", i+1, err)
				}
				say("paced baseline (raw go-redis chain) run %d: push→\"Originate\" %s; push→result %s", i+1, c.ToOriginate, c.ToResult)
				chainRes = append(chainRes, c)
			}
			for k, mode := range modes {
				var prof profiles
				if i == 0 && k == 0 && !cfg.want("e2e") {
					prof = cfg.profiles()
				}
				r, err := runE2E(ctx, start, e2eOptions{addr: cfg.RedisAddr, prefix: prefix("paced-"+mode, i), cell: cell, n: cfg.PacedN,
					threads: cfg.Threads, conns: cfg.AMIConnections, guard: cfg.AMIGuard, events: mode, rate: cfg.Rate, rules: rules, profiles: prof,
					logPath: filepath.Join(cfg.Dir, "paced-daemon.log")})
				if err != nil {
					return rep, fmt.Errorf("paced run %d (AMI events %s): %w", i+1, mode, err)
				}
				say("paced run %d (%.0f calls/s offered, AMI events %s): %d calls in %s: push→Originate %s; push→result %s",
					i+1, cfg.Rate, mode, r.Calls, r.Duration.Round(time.Millisecond), r.ToOriginate, r.ToResult)
				pacedRes[k] = append(pacedRes[k], r)
			}
		}
		rep.Rows = append(rep.Rows, latencyRows(fmt.Sprintf("paced baseline %.0f/s (raw go-redis chain, no AMI)", cfg.Rate), chainRes, "")...)
		for k, mode := range modes {
			rep.Rows = append(rep.Rows, latencyRows(fmt.Sprintf("paced %.0f/s, AMI events %s", cfg.Rate, mode), pacedRes[k], "p99 < 2ms")...)
		}
	}
	if cfg.want("inflight") {
		if cfg.Binary == "" {
			rep.Notes = append(rep.Notes, "inflight skipped: no dialbridge binary")
		} else {
			var rss, per, gor, idle []float64
			for i := range cfg.Runs {
				prof := ""
				if i == 0 {
					prof = cfg.MemProfile
				}
				r, err := runInflight(ctx, cfg.Binary, cfg.RedisAddr, prefix("inflight", i), cell, cfg.Dir, cfg.Inflight, cfg.AMIConnections, modes[0], prof, cfg.DaemonEnv)
				if err != nil {
					return rep, fmt.Errorf("inflight run %d: %w", i+1, err)
				}
				say("inflight run %d: %d calls held: RSS %.1f MB (idle %.1f MB, HWM %.1f MB), %d goroutines, %d threads; Go heap in use %.1f MB, stacks %.1f MB, heap idle %.1f MB (released %.1f MB), from the OS %.1f MB; while ramping up at most %d goroutines and %.1f MB of stacks",
					i+1, r.Calls, mb(r.RSS), mb(r.IdleRSS), mb(r.HWM), r.Goroutines, r.Threads,
					mb(r.HeapInuse), mb(r.StackInuse), mb(r.HeapIdle), mb(r.HeapReleased), mb(r.GoSys), r.PeakGoroutines, mb(r.PeakStackInuse))
				rss = append(rss, mb(r.RSS))
				idle = append(idle, mb(r.IdleRSS))
				per = append(per, r.RSSPerCall/1024)
				gor = append(gor, float64(r.Goroutines))
			}
			n := strconv.Itoa(cfg.Inflight)
			rep.Rows = append(rep.Rows,
				Row{Scenario: "inflight " + n + " answered calls, AMI events " + modes[0], Metric: "daemon RSS (MB)", Median: fmtNum1(Median(rss)), Runs: fmtNums1(rss),
					Ratio: "idle " + fmtNum1(Median(idle)) + " MB", Bar: "< 100 MB", Met: yes(Median(rss) < 100)},
				Row{Scenario: "inflight " + n + " answered calls", Metric: "RSS per call (KiB, above idle)", Median: fmtNum1(Median(per)), Runs: fmtNums1(per)},
				Row{Scenario: "inflight " + n + " answered calls", Metric: "goroutines (per call)", Median: fmt.Sprintf("%.0f (%.2f)", Median(gor), Median(gor)/float64(cfg.Inflight)), Runs: fmtNums(gor)},
			)
		}
	}
	if cfg.Only["durable"] {
		rows, err := runDurable(ctx, cfg, start, rules, modes[0], prefix, cell, say)
		if err != nil {
			return rep, err
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if cfg.want("acd") {
		var ev, tcp []float64
		for i := range cfg.Runs {
			e, err := ACDEvents(cfg.ACDDuration)
			if err != nil {
				return rep, fmt.Errorf("acd events: %w", err)
			}
			t, err := ACDTCP(ctx, 50, cfg.ACDDuration)
			if err != nil {
				return rep, fmt.Errorf("acd tcp: %w", err)
			}
			say("acd run %d: %.0f events/s; TCP %.0f commands/s (50 clients)", i+1, e, t)
			ev = append(ev, e)
			tcp = append(tcp, t)
		}
		rep.Rows = append(rep.Rows,
			Row{Scenario: "ACD core (1,000 operators, 100,000 waiting)", Metric: "events/s", Median: fmtNum(Median(ev)), Runs: fmtNums(ev),
				Bar: "≥ 1,000,000", Met: yes(Median(ev) >= 1e6)},
			Row{Scenario: "ACD TCP 5678 (50 clients)", Metric: "commands/s", Median: fmtNum(Median(tcp)), Runs: fmtNums(tcp),
				Bar: "≥ 50,000", Met: yes(Median(tcp) >= 50000)})
	}
	return rep, nil
}

func latencyRows(name string, rs []E2EResult, bar string) []Row {
	if len(rs) == 0 {
		return nil
	}
	row := func(metric string, get func(E2EResult) Latencies, bar string) Row {
		var p50, p90, p99, mx []float64
		for _, r := range rs {
			l := get(r)
			p50 = append(p50, ms(l.P50))
			p90 = append(p90, ms(l.P90))
			p99 = append(p99, ms(l.P99))
			mx = append(mx, ms(l.Max))
		}
		r := Row{Scenario: name, Metric: metric + " p50 / p90 / p99 / max (ms)",
			Median: fmt.Sprintf("%s / %s / %s / %s", fmtMS(Median(p50)), fmtMS(Median(p90)), fmtMS(Median(p99)), fmtMS(Median(mx))),
			Runs:   "p99: " + fmtMSs(p99), Bar: bar}
		if bar != "" {
			r.Met = yes(Median(p99) < 2)
		}
		return r
	}
	return []Row{
		row("push → Originate", func(r E2EResult) Latencies { return r.ToOriginate }, bar),
		row("push → result", func(r E2EResult) Latencies { return r.ToResult }, ""),
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func mb(b int64) float64         { return float64(b) / (1 << 20) }
func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**NO**"
}
func fmtMS(x float64) string {
	if x < 10 {
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}
func fmtMSs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtMS(x)
	}
	return strings.Join(s, ", ")
}
func fmtNum(x float64) string {
	s := strconv.FormatFloat(x, 'f', 0, 64)
	// thousands separators
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
func fmtNum1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
func fmtNums(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtNum(x)
	}
	return strings.Join(s, "; ")
}
func fmtNums1(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtNum1(x)
	}
	return strings.Join(s, "; ")
}
func fmtPcts(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(100*x, 'f', 0, 64) + " %"
	}
	return strings.Join(s, ", ")
}

// Table renders the rows as a Markdown table (also readable as text).
func (r *Report) Table() string {
	var b strings.Builder
	b.WriteString("| scenario | metric | median | runs | vs baseline | bar | met |\n|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Metric, row.Median, row.Runs, row.Ratio, row.Bar, row.Met)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

// Machine describes the host: CPUs, CPU model, Go version, kernel.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s %s/%s%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH, kernel)
}
