package benchmark

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/internal/retry"
	"github.com/multcall/dialbridge/redisq"
)

// Target is what the daemon under test connects to.
type Target struct {
	RedisAddr      string
	AMIPort        int
	Prefix, Cell   string
	Threads        int
	AMIConnections int         // 0: the settings' default
	AMIGuard       string      // ami.guard ("": the settings' default, auto)
	LogPath        string      // the daemon's log file (level info, JSON)
	WaitReplicas   int         // redis.wait_replicas (0: off)
	Trunk          *BenchTrunk // the cell dials through a trunk (trunk_cost.go); nil: none
}

// Daemon is one running cell (package main's daemon).
type Daemon interface {
	Run(ctx context.Context) error
	Ready() bool // claiming: AMI and Redis up
}

// StartFunc builds the daemon for t, as "dialbridge run" does.
type StartFunc func(ctx context.Context, t Target) (Daemon, error)

// E2EResult is one run of the e2e or paced scenario.
type E2EResult struct {
	Calls       int
	Duration    time.Duration // first push → last result
	CallsPS     float64
	ToOriginate Latencies // push → Originate on the AMI wire
	ToResult    Latencies // push → result read
	NoOriginate int       // commands never originated (should match non-dialed statuses)
	Statuses    string
}

// profiles are the files a run's profiles go to ("": not taken).
type profiles struct {
	cpu, allocs string
	trace       string // execution trace (go tool trace)
}

type e2eOptions struct {
	addr, prefix, cell string
	n, threads, conns  int
	guard              string  // Target.AMIGuard
	events             string  // Config.AMIEvents
	rate               float64 // 0: as fast as taken
	rules              string
	profiles           profiles
	logPath            string
	waitReplicas       int         // Target.WaitReplicas
	trunk              *BenchTrunk // Target.Trunk
}

func runE2E(ctx context.Context, start StartFunc, o e2eOptions) (E2EResult, error) {
	rules, err := amisim.ParseRules(o.rules)
	if err != nil {
		return E2EResult{}, err
	}
	side := redis.NewClient(&redis.Options{Addr: o.addr, PoolSize: 8, DisableIdentity: true})
	defer side.Close()
	defer deleteKeys(context.WithoutCancel(ctx), side, o.prefix) //nolint:errcheck // best effort
	keys := redisq.NewKeys(o.prefix, o.cell)
	d := newDriver(side, keys, o.n)

	sim, err := amisim.New(simConfig(amisim.Config{Rules: rules, MaxRecords: -1, MaxQueue: -1, WriteTimeout: time.Second, Logf: d.originated}, o.events))
	if err != nil {
		return E2EResult{}, fmt.Errorf("AMI simulator: %w", err)
	}
	defer sim.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	daemonCtx, stopDaemon := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDaemon()
	dmn, err := start(daemonCtx, Target{RedisAddr: o.addr, AMIPort: sim.Port(), Prefix: o.prefix, Cell: o.cell,
		Threads: o.threads, AMIConnections: o.conns, AMIGuard: o.guard, LogPath: o.logPath, WaitReplicas: o.waitReplicas, Trunk: o.trunk})
	if err != nil {
		return E2EResult{}, fmt.Errorf("start daemon: %w", err)
	}
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- dmn.Run(daemonCtx) }()
	defer func() {
		stopDaemon()
		<-daemonDone
	}()
	for deadline := time.Now().Add(15 * time.Second); !dmn.Ready(); {
		if time.Now().After(deadline) {
			return E2EResult{}, errors.New("daemon not claiming after 15s")
		}
		if !retry.Sleep(ctx, 10*time.Millisecond) {
			return E2EResult{}, ctx.Err()
		}
	}

	if prof, ok := dmn.(profiler); ok {
		// The daemon in its own process profiles itself: the profiles
		// hold the daemon's work only, none of the harness's.
		for kind, path := range map[string]string{"profile": o.profiles.cpu, "trace": o.profiles.trace} {
			if path != "" {
				wait := prof.record(context.WithoutCancel(ctx), kind, o.profileSeconds(), path)
				defer func() { _ = wait() }()
			}
		}
		if o.profiles.allocs != "" {
			if err := prof.heapProfile(ctx, o.profiles.allocs+".base"); err != nil {
				return E2EResult{}, fmt.Errorf("alloc profile: %w", err)
			}
			defer func() { _ = prof.heapProfile(context.WithoutCancel(ctx), o.profiles.allocs) }()
		}
	} else {
		stop, err := profileProcess(o.profiles)
		if err != nil {
			return E2EResult{}, err
		}
		defer stop()
	}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	goBG := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	goBG(d.confirm)
	if o.rate > 0 {
		goBG(func(ctx context.Context) error { return d.pushPaced(ctx, o.rate) })
	} else {
		goBG(func(ctx context.Context) error { return d.pushFast(ctx, max(2000, o.threads)) })
	}
	err = d.collect(ctx)
	cancel()
	wg.Wait()
	close(errc)
	for e := range errc {
		return E2EResult{}, e
	}
	if err != nil {
		return E2EResult{}, err
	}
	first, last := d.window()
	r := E2EResult{Calls: o.n, Duration: last.Sub(first), Statuses: d.statusSummary()}
	r.CallsPS = float64(o.n) / r.Duration.Seconds()
	r.ToOriginate, r.ToResult, r.NoOriginate = d.latencies()
	return r, nil
}

// profileSeconds is how long a CPU profile of the daemon in its own process
// lasts (it cannot be stopped early from outside): the whole of a paced
// run, and about the whole of an e2e run at the rates this bench sees. An
// idle daemon adds no samples, so a longer window costs only waiting.
func (o e2eOptions) profileSeconds() int {
	if o.rate > 0 {
		return int(float64(o.n)/o.rate) + 2
	}
	return max(3, o.n/8000+2)
}

// profileProcess records profiles p of this whole process (the daemon in
// process, with the harness): stop writes them.
func profileProcess(p profiles) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if p.trace != "" {
		f, err := os.Create(p.trace)
		if err != nil {
			return stop, err
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return stop, err
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			stop()
			return func() {}, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			stop()
			return func() {}, err
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if p.allocs != "" {
		// The allocation profile counts from the process's start: the
		// profile at the start of the run is written next to it, to be
		// subtracted with pprof -base.
		if err := writeAllocs(p.allocs + ".base"); err != nil {
			stop()
			return func() {}, err
		}
		stops = append(stops, func() { _ = writeAllocs(p.allocs) })
	}
	return stop, nil
}

// writeAllocs writes the process's allocation profile (as of the last GC:
// one is forced first so the run's allocations are in it).
func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("alloc profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("alloc profile %s: %w", path, err)
	}
	return f.Close()
}

// simConfig sets what the simulator sends: every call event a real Asterisk
// sends to a "read = call" user, or only what passes the manager.conf
// eventfilter of docs/PROTOCOL.md (the name form of Asterisk 21+).
func simConfig(cfg amisim.Config, events string) amisim.Config {
	cfg.AllEvents = true
	if events == "filtered" {
		cfg.EventFilters = ami.EventFilterNames()
	}
	return cfg
}
