package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

func init() { register("demo", runDemo) }

// runDemo runs the real daemon on an embedded default: miniredis, the AMI
// simulator with a realistic outcome mix, and a simulated Multcall pushing
// commands at a steady rate and confirming ACKs.
func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	rate := fs.Float64("rate", 20, "dial commands per second pushed by the simulated Multcall")
	threads := fs.Int("threads", 100, "threads of the demo cell")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	cell := fs.String("cell", "101", "cell name")
	rules := fs.String("rules", "", "AMI simulator outcome rules (default: the demo mix; see simulate-ami -h)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dialbridge demo [--rate 20] [--threads 100] [--duration 0] [--cell 101]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *rate <= 0 || *threads < 1 {
		return fail(os.Stderr, exitUsage, "demo: --rate and --threads must be positive")
	}
	mix := amisim.DefaultMix()
	if *rules != "" {
		var err error
		if mix, err = amisim.ParseRules(*rules); err != nil {
			return fail(os.Stderr, exitUsage, "demo: --rules: %v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := demo(ctx, os.Stdout, *cell, *threads, *rate, mix); err != nil {
		return fail(os.Stderr, exitFailure, "demo: %v", err)
	}
	return exitOK
}

func demo(ctx context.Context, out io.Writer, cell string, threads int, rate float64, rules []amisim.Rule) error {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	defer mr.Close()
	sim, err := amisim.New(amisim.Config{Rules: rules})
	if err != nil {
		return fmt.Errorf("AMI simulator: %w", err)
	}
	defer sim.Close()

	host, port, _ := strings.Cut(mr.Addr(), ":")
	rport, _ := strconv.Atoi(port)
	s := config.Defaults()
	s.Log = config.Log{Level: "info", Format: "json", Location: filepath.Join(os.TempDir(), "dialbridge-demo.log")}
	s.Redis.Host, s.Redis.Port = host, rport
	s.AMI.Port, s.AMI.Username, s.AMI.Secret = sim.Port(), "dialbridge", "secret"
	s.Originate = config.Originate{Channel: "PJSIP/{number}@trunk", Context: "agents", Exten: "s", Priority: 1, Timeout: config.Duration(8 * time.Second)}
	s.Timeouts.ShutdownGrace = config.Duration(2 * time.Second)
	s.Queues = []config.Queue{{Name: cell, Threads: threads}}
	if err := s.Validate(); err != nil {
		return err
	}
	log, _, err := newLogger(s.Log, os.Stderr)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "dialbridge demo — cell %s, %g commands/s, %d threads\n", cell, rate, threads)
	fmt.Fprintf(out, "  redis:  redis-cli -p %d   (keys %s:{%s}:…)\n", rport, s.Redis.Prefix, cell)
	fmt.Fprintf(out, "  AMI:    %s (user dialbridge, secret secret)\n", sim.Addr())
	fmt.Fprintf(out, "  log:    %s\n", s.Log.Location)
	fmt.Fprintf(out, "  outcomes by last digit: %s\n", amisim.FormatRules(rules))
	fmt.Fprintln(out, "  Ctrl-C stops everything.")

	d, err := startDaemon(ctx, &s, cell, log)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	mc := multcallsim.New(rdb, s.Redis.Prefix, cell, multcallsim.Options{
		ConfirmDelay: 20 * time.Millisecond,
		// Multcall sometimes loses an ACK: ids ending in 99 are never confirmed.
		Ignore: func(id string) bool { return strings.HasSuffix(id, "99") },
	})

	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	daemonDone := make(chan error, 1)
	run(func() { daemonDone <- d.Run(ctx) })
	run(func() { mc.RunConfirmer(ctx) })
	run(func() { pushAtRate(ctx, mc, rate) })
	// Results are consumed like Multcall's response workers do, so the list
	// does not grow; the counters keep the totals.
	run(func() {
		for ctx.Err() == nil {
			rdb.BRPop(ctx, time.Second, mc.Keys().Results())
		}
	})

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping…")
			wg.Wait()
			fmt.Fprintln(out, statusLine(context.Background(), rdb, mc.Keys(), d.cell))
			return <-daemonDone
		case <-tick.C:
			fmt.Fprintln(out, statusLine(ctx, rdb, mc.Keys(), d.cell))
		}
	}
}

func pushAtRate(ctx context.Context, mc *multcallsim.Sim, rate float64) {
	every := time.Duration(float64(time.Second) / rate)
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		number := fmt.Sprintf("55119%08d", i)
		mc.Push(ctx, multcallsim.Command(fmt.Sprintf("demo-%06d", i), number))
	}
}

// statusLine is the demo's plain view until the terminal monitor (issue 5).
func statusLine(ctx context.Context, rdb *redis.Client, k redisq.Keys, c *bridge.Cell) string {
	dep, err := redisq.ReadDepths(ctx, rdb, k)
	if err != nil {
		return "redis: " + err.Error()
	}
	st, _ := redisq.ReadStats(ctx, rdb, k)
	var b strings.Builder
	fmt.Fprintf(&b, "%s  in flight %3d/%d  dial %d claimed %d ack %d confirm %d dead %d | results %d:",
		time.Now().Format("15:04:05"), c.InFlight(), c.Options().Threads, dep.Dial, dep.Claimed, dep.Ack, dep.Confirm, dep.Dead, st["results"])
	for _, s := range bridge.AllStatuses {
		if n := st[string(s)]; n > 0 {
			fmt.Fprintf(&b, " %s %d", s, n)
		}
	}
	return b.String()
}
