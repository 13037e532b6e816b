package benchmark

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/internal/retry"
	"github.com/multcall/dialbridge/redisq"
)

// CapacityConfig is a run of "dialbridge bench --only capacity" (issue 16
// part 6): Redis's and the daemon's CPU per call of each kind, on one
// scratch redis-server that nothing else uses.
type CapacityConfig struct {
	RedisAddr string
	Binary    string    // the dialbridge binary: the daemon runs in its own process, as deployed
	Dir       string    // scratch (settings, logs); "": a temporary directory
	N         int       // measured calls per kind and run
	WarmUp    int       // calls before the measured ones, watched by MONITOR (default 200)
	Runs      int       // the table shows medians
	Threads   int       // of the cell
	Rates     []float64 // offered loads of the paced answered kinds, calls/s
	Progress  io.Writer
}

// capacitySample is one measured push of one kind.
type capacitySample struct {
	calls    int
	wall     time.Duration
	redisCPU time.Duration      // Redis main thread, user + system
	daemon   time.Duration      // the daemon's process, user + system
	stats    map[string]cmdStat // INFO commandstats over the measured calls
	luaShare map[string]float64 // per command: the share of its calls made by Lua scripts (from the warm-up's MONITOR)
	statuses map[string]int     // results by status
}

func (s capacitySample) perCall(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(s.calls)
}

// topLevel returns, per call, the commands clients sent and the
// microseconds Redis spent executing them: a script's usec includes the
// commands it calls, which commandstats counts again under their names.
func (s capacitySample) topLevel() (cmds, usec float64) {
	for name, st := range s.stats {
		if measurementCommands[name] {
			continue
		}
		own := 1 - s.luaShare[name]
		cmds += float64(st.Calls) * own
		usec += float64(st.Usec) * own
	}
	return cmds / float64(s.calls), usec / float64(s.calls)
}

// RunCapacity measures each kind cfg.Runs times and returns the report.
func RunCapacity(ctx context.Context, cfg CapacityConfig) (*CapacityReport, error) {
	if cfg.Binary == "" {
		return nil, errors.New("capacity: the dialbridge binary is needed (the daemon runs in its own process)")
	}
	if cfg.N < 1 || cfg.Runs < 1 || cfg.Threads < 1 {
		return nil, errors.New("capacity: N, Runs and Threads must be positive")
	}
	if cfg.WarmUp <= 0 {
		cfg.WarmUp = 200
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "dialbridge-capacity")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.Dir = d
	}
	rep := &CapacityReport{Config: cfg, Started: time.Now()}
	v, err := redisVersion(ctx, cfg.RedisAddr)
	if err != nil {
		return nil, err
	}
	rep.RedisVersion = v
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	kinds := capacityKinds(cfg.Rates)
	rep.Kinds = make([]CapacityKindResult, len(kinds))
	for i := range cfg.Runs {
		idle, err := runCapacityIdle(ctx, cfg, "cap-"+runID+"-idle-"+strconv.Itoa(i))
		if err != nil {
			return rep, fmt.Errorf("capacity idle, run %d: %w", i+1, err)
		}
		fmt.Fprintf(cfg.Progress, "capacity run %d idle daemon: Redis main thread %s/s, daemon %s/s\n", i+1, idle.redisPerSec, idle.daemonPerSec)
		rep.Idle = append(rep.Idle, idle)
		// Kinds interleaved: each run of every kind sees about the same
		// neighbours on this shared machine.
		for k, kind := range kinds {
			s, err := runCapacityKind(ctx, cfg, kind, "cap-"+runID+"-"+strconv.Itoa(k)+"-"+strconv.Itoa(i))
			if err != nil {
				return rep, fmt.Errorf("capacity %s, run %d: %w", kind.title(), i+1, err)
			}
			cmds, exec := s.topLevel()
			fmt.Fprintf(cfg.Progress, "capacity run %d %s: %d calls in %s; Redis main thread %.1f µs/call (commands %.1f µs, %.1f commands); daemon %.1f µs/call\n",
				i+1, kind.title(), s.calls, s.wall.Round(time.Millisecond), s.perCall(s.redisCPU), exec, cmds, s.perCall(s.daemon))
			rep.Kinds[k].Kind = kind
			rep.Kinds[k].Samples = append(rep.Kinds[k].Samples, s)
		}
	}
	return rep, nil
}

// runCapacityKind starts a daemon and an AMI simulator for kind, warms up
// under MONITOR, then measures cfg.N calls.
func runCapacityKind(ctx context.Context, cfg CapacityConfig, kind capacityKind, prefix string) (capacitySample, error) {
	side := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, PoolSize: 8, DisableIdentity: true})
	defer side.Close()
	defer deleteKeys(context.WithoutCancel(ctx), side, prefix) //nolint:errcheck // best effort
	const cell = "c1"
	keys := redisq.NewKeys(prefix, cell)
	threads := cfg.Threads
	if kind.hold > 0 {
		threads = max(threads, int(kind.rate*kind.hold.Seconds())+1000)
	}
	p, stop, err := startCapacityDaemon(ctx, cfg, kind, prefix, cell, threads)
	if err != nil {
		return capacitySample{}, err
	}
	defer stop()
	n := cfg.N
	if kind.rate > 0 {
		// 5 s of the offered load, and at least 1,000 calls (the daemon's
		// CPU is read in 10 ms ticks).
		n = min(n, max(1000, int(5*kind.rate)))
		if kind.hold > 0 {
			// Four talk times of pushes: most of the window at the full
			// count in flight, not ramping up or draining.
			n = min(cfg.N, int(4*kind.rate*kind.hold.Seconds()))
		}
	}
	id := func(i int) string { return "k" + strconv.Itoa(i) }
	if kind.prime {
		// Every id, warm-up's and measured, dialed once (answered): the
		// pushes below repeat them.
		if _, _, err := capacityPhase(ctx, side, keys, capacityKind{name: "answered", confirm: true}, id, 0, cfg.WarmUp+n, threads); err != nil {
			return capacitySample{}, fmt.Errorf("priming the ids: %w", err)
		}
	}
	// Warm-up: connections, pools and heaps grown, and MONITOR tells which
	// commands scripts call.
	mon, err := startMonitor(ctx, cfg.RedisAddr)
	if err != nil {
		return capacitySample{}, err
	}
	_, _, err = capacityPhase(ctx, side, keys, kind, id, 0, cfg.WarmUp, threads)
	top, lua := mon.stop()
	if err != nil {
		return capacitySample{}, fmt.Errorf("warm-up: %w", err)
	}
	share := map[string]float64{}
	for name, n := range lua {
		share[name] = float64(n) / float64(n+top[name])
	}

	cpu0, err := redisMainThreadCPU(ctx, side)
	if err != nil {
		return capacitySample{}, err
	}
	d0, err := procCPU(p.pid())
	if err != nil {
		return capacitySample{}, fmt.Errorf("daemon CPU: %w", err)
	}
	if err := side.ConfigResetStat(ctx).Err(); err != nil {
		return capacitySample{}, fmt.Errorf("CONFIG RESETSTAT: %w", err)
	}
	start := time.Now()
	statuses, end, err := capacityPhase(ctx, side, keys, kind, id, cfg.WarmUp, n, threads)
	if err != nil {
		return capacitySample{}, err
	}
	wall := end.Sub(start)
	stats, err := redisCommandStats(ctx, side)
	if err != nil {
		return capacitySample{}, err
	}
	cpu1, err := redisMainThreadCPU(ctx, side)
	if err != nil {
		return capacitySample{}, err
	}
	d1, err := procCPU(p.pid())
	if err != nil {
		return capacitySample{}, fmt.Errorf("daemon CPU: %w", err)
	}
	if statuses[kind.name] != n {
		return capacitySample{}, fmt.Errorf("results %v, want %s %d: the run did not measure %s calls", statuses, kind.name, n, kind.name)
	}
	return capacitySample{calls: n, wall: wall, redisCPU: time.Duration((cpu1 - cpu0) * float64(time.Second)), daemon: d1 - d0,
		stats: stats, luaShare: share, statuses: statuses}, nil
}

// startCapacityDaemon starts an AMI simulator doing what kind says and the
// daemon (the binary, its own process) for cell, and waits until it is
// healthy; stop stops both.
func startCapacityDaemon(ctx context.Context, cfg CapacityConfig, kind capacityKind, prefix, cell string, threads int) (*proc, func(), error) {
	rules, err := amisim.ParseRules(kind.rules)
	if err != nil {
		return nil, nil, err
	}
	sim, err := amisim.New(simConfig(amisim.Config{Rules: rules, MaxRecords: -1, MaxQueue: -1, WriteTimeout: time.Second}, "filtered"))
	if err != nil {
		return nil, nil, fmt.Errorf("AMI simulator: %w", err)
	}
	p, err := startProc(cfg.Binary, procSettings{Target: Target{RedisAddr: cfg.RedisAddr, AMIPort: sim.Port(), Prefix: prefix, Cell: cell,
		Threads: threads}, Dir: cfg.Dir, Name: "capacity", CommandAck: kind.ack})
	if err != nil {
		sim.Close()
		return nil, nil, err
	}
	stop := func() {
		p.stop(15 * time.Second) //nolint:errcheck // a daemon that does not stop is killed
		sim.Close()
	}
	for deadline := time.Now().Add(30 * time.Second); !p.healthy(ctx); {
		if time.Now().After(deadline) {
			stop()
			return nil, nil, errors.New("daemon not healthy after 30s: " + p.failure())
		}
		select {
		case <-p.exited:
			stop()
			return nil, nil, errors.New(p.failure())
		case <-ctx.Done():
			stop()
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p, stop, nil
}

// capacityIdle is a daemon with nothing to do: what its claim loop, its
// heartbeat and its recovery scan cost per second.
type capacityIdle struct{ redisPerSec, daemonPerSec time.Duration }

// capacityIdleFor is how long the idle daemon is watched.
const capacityIdleFor = 5 * time.Second

func runCapacityIdle(ctx context.Context, cfg CapacityConfig, prefix string) (capacityIdle, error) {
	side := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, PoolSize: 2, DisableIdentity: true})
	defer side.Close()
	defer deleteKeys(context.WithoutCancel(ctx), side, prefix) //nolint:errcheck // best effort
	p, stop, err := startCapacityDaemon(ctx, cfg, capacityKind{rules: "answer"}, prefix, "c1", cfg.Threads)
	if err != nil {
		return capacityIdle{}, err
	}
	defer stop()
	if !retry.Sleep(ctx, time.Second) { // past the start's own work
		return capacityIdle{}, ctx.Err()
	}
	r0, err := redisMainThreadCPU(ctx, side)
	if err != nil {
		return capacityIdle{}, err
	}
	d0, err := procCPU(p.pid())
	if err != nil {
		return capacityIdle{}, err
	}
	start := time.Now()
	if !retry.Sleep(ctx, capacityIdleFor) {
		return capacityIdle{}, ctx.Err()
	}
	r1, err := redisMainThreadCPU(ctx, side)
	if err != nil {
		return capacityIdle{}, err
	}
	d1, err := procCPU(p.pid())
	if err != nil {
		return capacityIdle{}, err
	}
	secs := time.Since(start).Seconds()
	return capacityIdle{redisPerSec: time.Duration((r1 - r0) / secs * float64(time.Second)),
		daemonPerSec: time.Duration(float64(d1-d0) / secs)}, nil
}

// capacityPhase pushes commands id(from) … id(from+n-1) of kind, reads the
// ACKs (confirming them when kind says so, as Multcall does) and returns
// once every one has its result, with the time the last one was read. At
// most max(2,000, threads) commands are pushed and without a result at
// once, so the dial list stays short.
func capacityPhase(ctx context.Context, rdb *redis.Client, keys redisq.Keys, kind capacityKind, id func(int) string, from, n, threads int) (map[string]int, time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pushed, results atomic.Int64
	window := int64(max(2000, threads))
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // Multcall's side of the ACKs
		defer wg.Done()
		var b bytes.Buffer
		for ctx.Err() == nil {
			acks, err := capacityPop(ctx, rdb, keys.Ack())
			if err != nil {
				if ctx.Err() == nil {
					errc <- fmt.Errorf("read acks: %w", err)
				}
				return
			}
			if !kind.confirm || len(acks) == 0 {
				continue
			}
			msgs := make([]any, 0, len(acks))
			for _, a := range acks {
				var ack struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal([]byte(a), &ack); err != nil {
					errc <- fmt.Errorf("bad ACK %q: %w", a, err)
					return
				}
				b.Reset()
				b.WriteString(`{"id":"` + ack.ID + `","call_code":"9` + strings.TrimPrefix(ack.ID, "k") + `"}`)
				msgs = append(msgs, bytes.Clone(b.Bytes()))
			}
			if err := rdb.LPush(ctx, keys.Confirm(), msgs...).Err(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("confirm: %w", err)
				return
			}
		}
	}()
	go func() { // the pushes
		defer wg.Done()
		start := time.Now()
		for i := 0; i < n; {
			k := min(pushBatch, n-i)
			if kind.rate > 0 {
				due := int(time.Since(start).Seconds()*kind.rate) + 1
				if due <= i {
					if !retry.Sleep(ctx, time.Until(start.Add(time.Duration(float64(i)/kind.rate*float64(time.Second))))) {
						return
					}
					continue
				}
				k = min(k, due-i)
			} else if pushed.Load()-results.Load() >= window {
				if !retry.Sleep(ctx, 200*time.Microsecond) {
					return
				}
				continue
			}
			args := make([]any, k)
			for j := range k {
				args[j] = kind.command(id(from+i+j), from+i+j)
			}
			pushed.Add(int64(k))
			if err := rdb.LPush(ctx, keys.Dial(), args...).Err(); err != nil {
				if ctx.Err() == nil {
					errc <- fmt.Errorf("push: %w", err)
				}
				return
			}
			i += k
		}
	}()
	statuses := map[string]int{}
	var err error
	progress := time.Now()
	for results.Load() < int64(n) && err == nil {
		if time.Since(progress) > capacityStall {
			err = fmt.Errorf("no result for %s", capacityStall)
			break
		}
		var rs []string
		rs, err = capacityPop(ctx, rdb, keys.Results())
		if len(rs) > 0 {
			progress = time.Now()
		}
		for _, s := range rs {
			var r struct {
				Status string `json:"status"`
			}
			if jerr := json.Unmarshal([]byte(s), &r); jerr != nil {
				err = fmt.Errorf("bad result %q: %w", s, jerr)
				break
			}
			statuses[r.Status]++
		}
		results.Add(int64(len(rs)))
		select {
		case e := <-errc:
			err = e
		default:
		}
	}
	end := time.Now()
	cancel()
	wg.Wait()
	if err != nil {
		return statuses, end, fmt.Errorf("after %d of %d results: %w", results.Load(), n, err)
	}
	return statuses, end, nil
}

// capacityStall ends a phase that gets no result for this long: a daemon
// that stopped working fails the bench instead of hanging it.
const capacityStall = time.Minute

// capacityPop waits up to 100 ms for one element of key, then takes up to
// 1,000 more without waiting. The short block (sent as is: go-redis's
// BRPop rounds it up to 1 s) lets a phase end soon after its last result,
// since go-redis does not interrupt a blocking command when its context
// ends, so the next measurement starts from quiet.
func capacityPop(ctx context.Context, rdb *redis.Client, key string) ([]string, error) {
	kv, err := rdb.Do(ctx, "BRPOP", key, "0.1").StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(kv) != 2 {
		return nil, fmt.Errorf("BRPOP %s: reply %q", key, kv)
	}
	more, err := rdb.RPopCount(ctx, key, 1000).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return append(kv[1:2], more...), nil
}

// CapacityKindResult is every run of one kind.
type CapacityKindResult struct {
	Kind    capacityKind
	Samples []capacitySample
}

// medianOf a per-sample figure, with the per-run figures.
func (k CapacityKindResult) medianOf(f func(capacitySample) float64) (float64, []float64) {
	xs := make([]float64, len(k.Samples))
	for i, s := range k.Samples {
		xs[i] = f(s)
	}
	return Median(xs), xs
}

// medianSample is the run whose Redis CPU per call is the median: its
// per-command breakdown is the one shown.
func (k CapacityKindResult) medianSample() capacitySample {
	ss := slices.Clone(k.Samples)
	slices.SortFunc(ss, func(a, b capacitySample) int { return cmp.Compare(a.perCall(a.redisCPU), b.perCall(b.redisCPU)) })
	return ss[len(ss)/2]
}
