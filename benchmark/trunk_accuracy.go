package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// The limiter accuracy benchmark of issue 14 ("dialbridge bench --only
// trunk-accuracy"): several daemons' TrunkGates, each on its own go-redis
// client and its own AMI client, take tokens of one trunk as fast as they
// are granted and write an Originate right after each grant to one AMI
// simulator whose carrier model counts what arrives. It measures at the AMI
// wire what contract section 7 promises (≤ cps + burst − 1 Originates in
// any 0.97 s, summed over every daemon), how much of cps is used, and how
// evenly the Originates are spaced. Everything but the daemons' call path
// is left out (no dial list, no results): what is measured is the limiter
// and the hop from its grant to the wire.

// TrunkWindow is the contract's measuring window: cps + burst − 1 in any
// 0.97 s (the 30 ms allow for the time between a grant and the write).
const TrunkWindow = 970 * time.Millisecond

// TrunkAccuracyConfig is one run's shape.
type TrunkAccuracyConfig struct {
	RedisAddr string
	Prefix    string        // keys of the run (deleted at its end)
	Daemons   int           // default 3
	Workers   int           // calls waiting per daemon at once; default 8
	CPS       float64       // default 20
	Burst     int           // default 1
	Duration  time.Duration // default 60 s
}

func (c *TrunkAccuracyConfig) defaults() {
	if c.Daemons <= 0 {
		c.Daemons = 3
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.CPS <= 0 {
		c.CPS = 20
	}
	if c.Burst <= 0 {
		c.Burst = 1
	}
	if c.Duration <= 0 {
		c.Duration = time.Minute
	}
}

// Bound is the most Originates the contract allows in any TrunkWindow.
func (c TrunkAccuracyConfig) Bound() int {
	return int(math.Floor(c.CPS + float64(c.Burst) - 1 + 1e-9)) // whole cps: cps + burst − 1
}

// TrunkAccuracyResult is one run.
type TrunkAccuracyResult struct {
	Originates int           // arrived at the simulator in the measured span
	Span       time.Duration // first to last arrival
	// WireMax is the most arrivals in any TrunkWindow; WireOver the
	// windows (one starting at each arrival) holding more than the bound.
	WireMax, WireOver int
	// GrantMax, GrantOver: the same on Redis's clock (the grants' At): the
	// limiter's own bound, free of the hop to the wire.
	GrantMax, GrantOver int
	// Utilisation is the wire rate ((n − 1) / span) over cps.
	Utilisation float64
	// JitterP99 is the 99th percentile of |gap − 1/cps| between successive
	// arrivals at the wire, all daemons merged; MinGap the closest two.
	JitterP99, MinGap time.Duration
	// GrantToWire is the hop from a grant (Redis's clock) to the
	// Originate's Response (the daemon's clock: same host).
	GrantToWire Latencies
	// Carrier503 counts calls the carrier model refused for their rate
	// (its window is the contract's: any 0.97 s over the bound).
	Carrier503 int64
	PerDaemon  []int // grants per daemon
}

// RunTrunkAccuracy runs one measurement.
func RunTrunkAccuracy(ctx context.Context, cfg TrunkAccuracyConfig) (TrunkAccuracyResult, error) {
	cfg.defaults()
	if cfg.Prefix == "" {
		cfg.Prefix = "bench-trunk-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	const trunk = "gw1"
	bound := cfg.Bound()
	carrier := amisim.Carrier{CPS: bound, Window: TrunkWindow}
	rules, err := amisim.ParseRules("busy")
	if err != nil {
		return TrunkAccuracyResult{}, err
	}
	sim, err := amisim.New(amisim.Config{Rules: rules, MaxRecords: -1, MaxQueue: -1, WriteTimeout: time.Second,
		EventFilters: ami.EventFilterNames(), Carriers: map[string]amisim.Carrier{trunk: carrier}})
	if err != nil {
		return TrunkAccuracyResult{}, fmt.Errorf("AMI simulator: %w", err)
	}
	defer sim.Close()

	side := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, DisableIdentity: true})
	defer side.Close()
	defer deleteKeys(context.WithoutCancel(ctx), side, cfg.Prefix) //nolint:errcheck // best effort

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type daemon struct {
		rdb  *redis.Client
		gate *redisq.TrunkGate
		amic *ami.Client
	}
	ds := make([]daemon, cfg.Daemons)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	for i := range ds {
		rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, DisableIdentity: true, PoolSize: 4})
		defer rdb.Close()
		lim, err := redisq.NewTrunkLimiter(rdb, cfg.Prefix, trunk, redisq.TrunkLimits{CPS: cfg.CPS, Burst: cfg.Burst, MaxChannels: 100000})
		if err != nil {
			return TrunkAccuracyResult{}, err
		}
		gate := redisq.NewTrunkGate(lim)
		bg.Add(1)
		go func() { defer bg.Done(); _ = gate.Run(ctx) }()
		inst := "d" + strconv.Itoa(i)
		amic := ami.New(ami.Options{Port: sim.Port(), Username: "dialbridge", Secret: "secret", Connections: 2, Instance: inst, Unguarded: true}, zerolog.Nop())
		if err := amic.Start(ctx); err != nil {
			return TrunkAccuracyResult{}, fmt.Errorf("AMI client %s: %w", inst, err)
		}
		defer amic.Close()
		ds[i] = daemon{rdb: rdb, gate: gate, amic: amic}
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	for _, d := range ds {
		if err := d.amic.WaitReady(wctx); err != nil {
			wcancel()
			return TrunkAccuracyResult{}, fmt.Errorf("AMI client not ready: %w", err)
		}
	}
	wcancel()

	// The workers: each a call of its daemon, over and over: a token and a
	// slot, the Originate, the slot back once Asterisk has answered.
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	var (
		mu      sync.Mutex
		grants  []time.Time
		hops    []time.Duration
		perD    = make([]int, cfg.Daemons)
		seq     atomic.Int64
		errOnce sync.Once
		runErr  error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { runErr = err; stopRun() })
	}
	for di, d := range ds {
		for range cfg.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					n := seq.Add(1)
					id := "b" + strconv.FormatInt(n, 36)
					g, err := d.gate.Acquire(runCtx, id)
					if err != nil {
						if runCtx.Err() == nil {
							fail(fmt.Errorf("acquire: %w", err))
						}
						return
					}
					w, err := d.amic.Originate(context.WithoutCancel(runCtx), bridge.OriginateRequest{
						ActionID: id, ChannelID: id, Channel: "PJSIP/5511" + strconv.FormatInt(n, 10) + "@" + trunk,
						Context: "agents", Exten: "s", Priority: 1, Timeout: 30 * time.Second,
					})
					done := time.Now()
					if w != nil {
						w.Close()
					}
					rctx, rcancel := context.WithTimeout(context.WithoutCancel(runCtx), 5*time.Second)
					rerr := d.gate.Release(rctx, id)
					rcancel()
					if err != nil {
						fail(fmt.Errorf("originate: %w", err))
						return
					}
					if rerr != nil {
						fail(fmt.Errorf("release: %w", rerr))
						return
					}
					mu.Lock()
					grants = append(grants, g.At)
					hops = append(hops, done.Sub(g.At))
					perD[di]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if runErr != nil {
		return TrunkAccuracyResult{}, runErr
	}
	if ctx.Err() != nil {
		return TrunkAccuracyResult{}, ctx.Err()
	}
	arrivals := sim.OriginateTimes(trunk)
	if len(arrivals) < 2 {
		return TrunkAccuracyResult{}, errors.New("fewer than two Originates reached the simulator")
	}
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	r := TrunkAccuracyResult{
		Originates: len(arrivals), Span: arrivals[len(arrivals)-1].Sub(arrivals[0]),
		GrantToWire: Summarise(hops), Carrier503: sim.CarrierStats(trunk).RejectedCPS, PerDaemon: perD,
	}
	r.WireMax, r.WireOver = windowsOver(arrivals, TrunkWindow, bound)
	r.GrantMax, r.GrantOver = windowsOver(grants, TrunkWindow, bound)
	r.Utilisation = float64(len(arrivals)-1) / r.Span.Seconds() / cfg.CPS
	r.JitterP99, r.MinGap = spacing(arrivals, cfg.CPS)
	return r, nil
}

// windowsOver is the most times in any window [t, t+w) and how many windows
// starting at a time hold more than bound (times sorted).
func windowsOver(times []time.Time, w time.Duration, bound int) (most, over int) {
	j := 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		n := j - i
		most = max(most, n)
		if n > bound {
			over++
		}
	}
	return most, over
}

// spacing is the p99 of |gap − 1/cps| and the smallest gap between
// successive times (sorted).
func spacing(times []time.Time, cps float64) (p99, minGap time.Duration) {
	ideal := time.Duration(float64(time.Second) / cps)
	dev := make([]time.Duration, 0, len(times))
	minGap = time.Duration(math.MaxInt64)
	for i := 1; i < len(times); i++ {
		g := times[i].Sub(times[i-1])
		minGap = min(minGap, g)
		d := g - ideal
		if d < 0 {
			d = -d
		}
		dev = append(dev, d)
	}
	return Summarise(dev).P99, minGap
}

// TrunkAccuracyReport runs each configuration runs times, interleaved (so
// that every configuration sees the same neighbours), and renders the table
// of medians (Markdown, also readable as text).
func TrunkAccuracyReport(ctx context.Context, cfgs []TrunkAccuracyConfig, runs int, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	res := make([][]TrunkAccuracyResult, len(cfgs))
	for i := range max(runs, 1) {
		for k := range cfgs {
			c := cfgs[k]
			c.defaults()
			c.Prefix = "bench-trunk-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-" + strconv.Itoa(i)
			r, err := RunTrunkAccuracy(ctx, c)
			if err != nil {
				return "", fmt.Errorf("trunk accuracy (burst %d) run %d: %w", c.Burst, i+1, err)
			}
			fmt.Fprintf(progress, "trunk-accuracy cps %g burst %d run %d: %d Originates in %s (per daemon %v): max %d in any %s (bound %d; windows over: wire %d, grants %d), utilisation %.1f %%, spacing jitter p99 %s, min gap %s, grant→response %s, carrier 503 %d\n",
				c.CPS, c.Burst, i+1, r.Originates, r.Span.Round(time.Millisecond), r.PerDaemon, r.WireMax, TrunkWindow, c.Bound(), r.WireOver, r.GrantOver,
				100*r.Utilisation, fmtDur(r.JitterP99), fmtDur(r.MinGap), r.GrantToWire, r.Carrier503)
			res[k] = append(res[k], r)
		}
	}
	rep := &Report{}
	for k, cfg := range cfgs {
		cfg.defaults()
		rep.Rows = append(rep.Rows, trunkAccuracyRows(cfg, res[k])...)
	}
	return rep.Table(), nil
}

func trunkAccuracyRows(cfg TrunkAccuracyConfig, res []TrunkAccuracyResult) []Row {
	col := func(f func(TrunkAccuracyResult) float64) []float64 {
		out := make([]float64, len(res))
		for i, r := range res {
			out[i] = f(r)
		}
		return out
	}
	over := col(func(r TrunkAccuracyResult) float64 { return float64(r.WireOver) })
	gover := col(func(r TrunkAccuracyResult) float64 { return float64(r.GrantOver) })
	most := col(func(r TrunkAccuracyResult) float64 { return float64(r.WireMax) })
	util := col(func(r TrunkAccuracyResult) float64 { return 100 * r.Utilisation })
	jit := col(func(r TrunkAccuracyResult) float64 { return ms(r.JitterP99) })
	gap := col(func(r TrunkAccuracyResult) float64 { return ms(r.MinGap) })
	hop := col(func(r TrunkAccuracyResult) float64 { return ms(r.GrantToWire.P99) })
	rej := col(func(r TrunkAccuracyResult) float64 { return float64(r.Carrier503) })
	name := fmt.Sprintf("trunk cps %g burst %d, %d daemons × %d waiting, %s", cfg.CPS, cfg.Burst, cfg.Daemons, cfg.Workers, cfg.Duration)
	return []Row{
		{Scenario: name, Metric: fmt.Sprintf("windows of %s over %d at the AMI wire (on Redis's clock)", TrunkWindow, cfg.Bound()),
			Median: fmt.Sprintf("%s (%s)", fmtNum(Median(over)), fmtNum(Median(gover))), Runs: fmtNums(over) + " (" + fmtNums(gover) + ")",
			Bar: "0", Met: yes(slices.Max(over) == 0 && slices.Max(gover) == 0)},
		{Scenario: name, Metric: "most Originates in any " + TrunkWindow.String(), Median: fmtNum(Median(most)), Runs: fmtNums(most)},
		{Scenario: name, Metric: "utilisation (wire rate / cps, %)", Median: fmtNum1(Median(util)), Runs: fmtNums1(util),
			Bar: "≥ 95 %", Met: yes(Median(util) >= 95)},
		{Scenario: name, Metric: "spacing jitter p99: a gap's distance from 1/cps (ms)", Median: fmtMS(Median(jit)), Runs: fmtMSs(jit)},
		{Scenario: name, Metric: "smallest gap between two Originates (ms)", Median: fmtMS(Median(gap)), Runs: fmtMSs(gap)},
		{Scenario: name, Metric: "grant → Originate Response p99 (ms)", Median: fmtMS(Median(hop)), Runs: fmtMSs(hop)},
		{Scenario: name, Metric: "carrier 503s (its window: the contract's)", Median: fmtNum(Median(rej)), Runs: fmtNums(rej), Bar: "0", Met: yes(slices.Max(rej) == 0)},
	}
}
