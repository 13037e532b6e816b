package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/multcall/dialbridge/benchmark"
	"github.com/multcall/dialbridge/internal/gctune"
)

func init() { register("bench", runBench) }

// runBench is "dialbridge bench": the load tool of issue 6 (see
// docs/PERFORMANCE.md and package benchmark). It needs a real Redis.
func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	addr := fs.String("redis", "127.0.0.1:6379", "Redis HOST:PORT (a scratch server: scripts/bench.sh starts one)")
	n := fs.Int("n", 100000, "commands per baseline and e2e run")
	rate := fs.Float64("rate", 1000, "offered load of the paced scenario, calls/s")
	pacedN := fs.Int("paced-n", 0, "commands per paced run (default 10 s of --rate)")
	inflight := fs.Int("inflight", 10000, "calls held answered in the inflight scenario")
	runs := fs.Int("runs", 3, "runs of each scenario (the table shows medians)")
	threads := fs.Int("threads", 1000, "threads of the cell under test (and baseline workers)")
	conns := fs.Int("ami-connections", 0, "ami.connections of the daemon (0: the default)")
	guard := fs.String("ami-guard", "", "the daemon's ami.guard: on (AMI input through the line guard's loopback relay), off, or auto (the default: off, the simulator is on loopback)")
	events := fs.String("ami-events", "filtered,all", "what the AMI simulator sends, comma-separated, one set of e2e and paced runs each (the first also for inflight): filtered (through the eventfilter of docs/PROTOCOL.md) or all (every call event, as Asterisk sends without it)")
	outcome := fs.String("outcome", "answer", "what the AMI simulator does at once: answer (and hang up) or busy")
	only := fs.String("only", "", "comma-separated scenarios: baseline,e2e,paced,inflight,acd (default all), and pacing (the call-center matrix of docs/PACING.md), capacity (Redis's and the daemon's CPU per call: it runs CONFIG RESETSTAT; --out rewrites only its section), trunk-accuracy (3 daemons' limiters on one trunk at cps 20), trunk-cost (paced and e2e with and without a trunk of cps 5,000), pacing-live (the pacer through the real daemon, in real time, --duration per mode) and durable (e2e and paced with redis.wait_replicas 0 and 1; needs a replica of --redis: scripts/bench.sh starts one): only when named")
	capN := fs.Int("capacity-n", 20000, "with --only capacity: measured calls per kind and run")
	capRates := fs.String("capacity-rates", "100,1000", "with --only capacity: comma-separated offered loads of its paced answered kinds, calls/s (\"\": none)")
	duration := fs.Duration("duration", time.Minute, "with --only trunk-accuracy: how long each run saturates the trunk; with --only pacing-live: how long each mode runs")
	liveOps := fs.Int("pacing-operators", 8, "with --only pacing-live: simulated operators")
	liveModes := fs.String("pacing-modes", "none,progressive,ratio,predictive", "with --only pacing-live: the modes run, in order")
	pacingPNG := fs.String("pacing-png", "", "with --only pacing: write the chart of occupancy and abandon rate to this PNG, e.g. docs/pacing-matrix.png")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the daemon in the first e2e run (the first paced run without e2e) to this file")
	allocprofile := fs.String("allocprofile", "", "write an allocation profile of the daemon in the same run to this file (and FILE.base at its start: go tool pprof -sample_index=alloc_space -base FILE.base FILE)")
	traceFile := fs.String("trace", "", "write an execution trace of the daemon in the same run to this file (go tool trace; -pprof=sched shows scheduling delays)")
	memprofile := fs.String("memprofile", "", "write a heap profile of the daemon holding the calls of the first inflight run to this file")
	inProcess := fs.Bool("in-process", false, "run the daemon of e2e and paced inside the bench process (sharing its heap and GC with the simulators) instead of as its own process, as deployed")
	daemonEnv := fs.String("daemon-env", "", "comma-separated KEY=VALUE added to the daemon's environment, e.g. GOGC=400,GOMEMLIMIT=96MiB (not with --in-process)")
	out := fs.String("out", "", "also write the report (Markdown) to this file, e.g. docs/PERFORMANCE.md")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dialbridge bench [--redis HOST:PORT] [--n 100000] [--rate 1000] [--inflight 10000] [--runs 3] [--only baseline,e2e,paced,inflight,acd]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *n < 1 || *rate <= 0 || *inflight < 1 || *runs < 1 || *threads < 1 {
		return fail(os.Stderr, exitUsage, "bench: --n, --rate, --inflight, --runs and --threads must be positive")
	}
	sel := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		switch s {
		case "baseline", "e2e", "paced", "inflight", "acd", "pacing", "capacity", "trunk-accuracy", "trunk-cost", "pacing-live", "durable":
			sel[s] = true
		default:
			return fail(os.Stderr, exitUsage, "bench: --only: unknown scenario %q (baseline, e2e, paced, inflight, acd, pacing, capacity, trunk-accuracy, trunk-cost, pacing-live, durable)", s)
		}
	}
	if sel["pacing"] {
		delete(sel, "pacing")
		if err := runPacingBench(os.Stdout, os.Stderr, *pacingPNG); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		if len(sel) == 0 {
			return exitOK // the matrix needs no Redis
		}
	}
	if sel["pacing-live"] {
		delete(sel, "pacing-live")
		if _, err := runPacingLiveBench(context.Background(), os.Stdout, os.Stderr, *duration, *liveOps, strings.Split(*liveModes, ",")); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		if len(sel) == 0 {
			return exitOK // it embeds its own Redis
		}
	}
	if sel["trunk-accuracy"] {
		delete(sel, "trunk-accuracy")
		if err := runTrunkAccuracyBench(os.Stdout, os.Stderr, *addr, *runs, *duration); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		if len(sel) == 0 {
			return exitOK
		}
	}
	var env []string
	for _, kv := range strings.Split(*daemonEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fail(os.Stderr, exitUsage, "bench: --daemon-env: %q is not KEY=VALUE", kv)
		}
		env = append(env, kv)
	}
	if len(env) > 0 && *inProcess {
		return fail(os.Stderr, exitUsage, "bench: --daemon-env needs the daemon in its own process (drop --in-process)")
	}
	bin, err := os.Executable()
	if err != nil {
		return fail(os.Stderr, exitFailure, "bench: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if sel["capacity"] {
		delete(sel, "capacity")
		rates, err := parseRates(*capRates)
		if err != nil || *capN < 1 {
			return fail(os.Stderr, exitUsage, "bench: --capacity-n must be positive and --capacity-rates positive numbers: %v", err)
		}
		cfg := benchmark.CapacityConfig{RedisAddr: *addr, Binary: bin, N: *capN, Runs: *runs, Threads: *threads, Rates: rates, Progress: os.Stderr}
		if err := runCapacityBench(ctx, os.Stdout, os.Stderr, cfg, *out, "dialbridge bench "+strings.Join(args, " ")); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		if len(sel) == 0 {
			return exitOK
		}
	}
	// The harness (simulated Multcall and Asterisk, which are other
	// programs in production) sits on the measured path too: its collector
	// gets a wide heap floor so that its pauses are not billed to the daemon.
	if t := gctune.Start(harnessHeapFloor); t != nil {
		defer t.Stop()
	}
	if sel["trunk-cost"] {
		delete(sel, "trunk-cost")
		cfg := benchmark.TrunkCostConfig{RedisAddr: *addr, Binary: bin, Rate: *rate, PacedN: *pacedN, N: *n, Runs: *runs, Threads: *threads, Progress: os.Stderr}
		if err := runTrunkCostBench(ctx, os.Stdout, cfg); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		if len(sel) == 0 {
			return exitOK
		}
	}

	cfg := benchmark.Config{
		RedisAddr: *addr, N: *n, Rate: *rate, PacedN: *pacedN, Inflight: *inflight, Runs: *runs,
		Threads: *threads, AMIConnections: *conns, AMIGuard: *guard, AMIEvents: *events, Outcome: *outcome, Only: sel,
		Start: startBenchDaemon, Binary: bin, InProcess: *inProcess, DaemonEnv: env, CPUProfile: *cpuprofile, AllocProfile: *allocprofile, Trace: *traceFile, MemProfile: *memprofile, Progress: os.Stderr,
	}
	fmt.Fprintf(os.Stderr, "dialbridge bench: redis %s; %s\n", *addr, benchmark.Machine())
	rep, err := benchmark.Run(ctx, cfg)
	if err != nil {
		return fail(os.Stderr, exitFailure, "bench: %v", err)
	}
	cmdline := "dialbridge bench " + strings.Join(args, " ")
	md := rep.Markdown(cmdline)
	fmt.Println(rep.Table())
	if *out != "" {
		// Hand-written analysis below the marker survives a new run.
		if old, err := os.ReadFile(*out); err == nil {
			if i := strings.Index(string(old), benchAnalysisMarker); i >= 0 {
				md += "\n" + string(old[i:])
			}
		}
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			return fail(os.Stderr, exitFailure, "bench: %v", err)
		}
		fmt.Fprintf(os.Stderr, "dialbridge bench: report written to %s\n", *out)
	}
	return exitOK
}

// harnessHeapFloor is the bench process's heap floor (internal/gctune).
const harnessHeapFloor = 512 << 20

// benchAnalysisMarker starts the hand-written part of docs/PERFORMANCE.md,
// kept when the report is written again.
const benchAnalysisMarker = "<!-- analysis: kept by dialbridge bench --out -->"

// startBenchDaemon builds the real daemon (startDaemon, as "dialbridge run"
// does) for the bench's Redis and AMI simulator.
func startBenchDaemon(ctx context.Context, t benchmark.Target) (benchmark.Daemon, error) {
	if t.LogPath == "" {
		t.LogPath = filepath.Join(os.TempDir(), "dialbridge-bench.log")
	}
	s, _, err := benchmark.Settings(t, "", 0)
	if err != nil {
		return nil, err
	}
	log, _, err := newLogger(s.Log, os.Stderr)
	if err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, s, t.Cell, log)
	if err != nil {
		return nil, err
	}
	return benchDaemon{d}, nil
}

type benchDaemon struct{ d *daemon }

func (b benchDaemon) Run(ctx context.Context) error { return b.d.Run(ctx) }
func (b benchDaemon) Ready() bool                   { return b.d.cell.Claiming() }
