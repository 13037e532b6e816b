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
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/dash"
	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/monitor/termsafe"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

func init() { register("demo", runDemo) }

// demoOptions are the demo's knobs.
type demoOptions struct {
	cell        string
	threads     int
	rate        float64
	rules       []amisim.Rule
	operators   string // --operators as given: a count, or a list like A,B,S:supervisor
	ringTimeout time.Duration
	talk        time.Duration
	ops         opsim.Options
	pacing      config.Pacing // the cell's pacing (default predictive)
	trunk       demoTrunk     // demo_trunk.go; zero: the cell dials originate.channel, no trunk
	// onDaemon, when set (tests), sees the daemon before it runs.
	onDaemon func(d *daemon)
	tui      bool // the full-screen monitor (stdout is a terminal)
	// inspect, when set (tests), looks at Redis when the demo is asked to
	// stop, before anything is torn down.
	inspect func(rdb redis.UniversalClient)
}

// runDemo runs the real daemon on an embedded default: miniredis, the AMI
// simulator with a realistic outcome mix, a simulated Multcall pushing
// commands at a steady rate and confirming ACKs, the call queue manager with
// simulated operators, and the monitor on screen.
func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	o := demoOptions{}
	fs.Float64Var(&o.rate, "rate", 2, "dial commands per second pushed by the simulated Multcall")
	fs.IntVar(&o.threads, "threads", 100, "threads of the demo cell")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C or q)")
	fs.StringVar(&o.cell, "cell", "101", "cell name")
	rules := fs.String("rules", "", "AMI simulator outcome rules (default: the demo mix; see simulate-ami -h)")
	fs.StringVar(&o.operators, "operators", "8", `simulated operators: a number, or ids like "A,B,S:supervisor"`)
	fs.DurationVar(&o.ringTimeout, "ring-timeout", 8*time.Second, "queue manager ring timeout (an ignored call goes to the next operator)")
	fs.DurationVar(&o.talk, "talk", 6*time.Second, "talk time of answered calls (with the default mix)")
	fs.DurationVar(&o.ops.AnswerMin, "answer-min", 500*time.Millisecond, "quickest operator answer")
	fs.DurationVar(&o.ops.AnswerMax, "answer-max", 1500*time.Millisecond, "slowest operator answer (past pacing.abandon_after, 2s, a call is abandoned)")
	fs.Float64Var(&o.ops.Reject, "reject", 0.03, "share of rings an operator rejects")
	fs.Float64Var(&o.ops.Ignore, "ignore", 0.02, "share of rings an operator lets ring out")
	pacing := fs.String("pacing", "predictive", "pacing.mode of the demo cell: none, progressive, ratio or predictive")
	ratio := fs.Float64("ratio", 2, "pacing.ratio (mode ratio)")
	fs.Float64Var(&o.trunk.cps, "trunk-cps", 5, "the demo trunk's calls per second (0 with --trunk-channels 0: no trunk)")
	fs.IntVar(&o.trunk.burst, "trunk-burst", 2, "the demo trunk's burst")
	fs.IntVar(&o.trunk.channels, "trunk-channels", 20, "the demo trunk's max_channels")
	fs.DurationVar(&o.trunk.cooldown, "trunk-cooldown", 10*time.Second, "the demo trunk's breaker.cooldown")
	plain := fs.Bool("plain", false, "print a status line every second instead of the full-screen monitor (the default when stdout is not a terminal)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dialbridge demo [--rate 2] [--operators 8] [--pacing predictive] [--trunk-cps 5] [--duration 0] [--threads 100] [--cell 101] [--plain]")
		fmt.Fprint(fs.Output(), demoTrunkHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.rate <= 0 || o.threads < 1 {
		return fail(os.Stderr, exitUsage, "demo: --rate and --threads must be positive")
	}
	if o.trunk.cps < 0 || o.trunk.burst < 1 || o.trunk.channels < 0 || o.trunk.cooldown < time.Second {
		return fail(os.Stderr, exitUsage, "demo: --trunk-cps and --trunk-channels must not be negative, --trunk-burst at least 1, --trunk-cooldown at least 1s")
	}
	if o.ops.Reject < 0 || o.ops.Ignore < 0 || o.ops.Reject+o.ops.Ignore > 1 {
		return fail(os.Stderr, exitUsage, "demo: --reject and --ignore are shares between 0 and 1")
	}
	if _, err := demoOperators(o.operators); err != nil {
		return fail(os.Stderr, exitUsage, "demo: --operators: %v", err)
	}
	o.rules = demoMix(o.talk)
	if *rules != "" {
		var err error
		if o.rules, err = amisim.ParseRules(*rules); err != nil {
			return fail(os.Stderr, exitUsage, "demo: --rules: %v", err)
		}
	}
	o.tui = !*plain && isatty.IsTerminal(os.Stdout.Fd())
	o.pacing = config.DefaultPacing()
	o.pacing.Mode = config.PacingMode(*pacing)
	if o.pacing.Mode == config.PacingRatio {
		o.pacing.Ratio = *ratio
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := demo(ctx, os.Stdout, o); err != nil {
		return fail(os.Stderr, exitFailure, "demo: %v", err)
	}
	return exitOK
}

// demoMix is the AMI simulator's default mix with answered calls talking
// for talk, long enough for the queue manager to have work.
func demoMix(talk time.Duration) []amisim.Rule {
	mix := amisim.DefaultMix()
	for i := range mix {
		if mix[i].Outcome == amisim.OutcomeAnswer && talk > 0 {
			mix[i].TalkFor = talk
		}
	}
	return mix
}

// demoOperators turns --operators into the queue manager's list: a count n
// gives A, B, C, … (the last a supervisor when n ≥ 4).
func demoOperators(v string) (string, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		if _, err := config.ParseOperators(v); err != nil {
			return "", err
		}
		return v, nil
	}
	if n < 1 || n > 200 {
		return "", fmt.Errorf("between 1 and 200 operators, got %d", n)
	}
	ids := make([]string, n)
	for i := range ids {
		id := string(rune('A' + i%26))
		if i >= 26 {
			id += strconv.Itoa(i / 26)
		}
		ids[i] = id
	}
	if n >= 4 {
		ids[n-1] += ":supervisor"
	}
	return strings.Join(ids, ","), nil
}

func demo(ctx context.Context, out io.Writer, o demoOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded redis: %w", err)
	}
	defer mr.Close()
	// The simulator speaks like a real Asterisk configured as PROTOCOL.md
	// §3 recommends: every call event, through the manager.conf eventfilter.
	simCfg := amisim.Config{Rules: o.rules, AllEvents: true, EventFilters: ami.EventFilterNames()}
	if o.trunk.on() {
		simCfg.Carriers = map[string]amisim.Carrier{demoTrunkName: o.trunk.carrier()}
	}
	sim, err := amisim.New(simCfg)
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
	s.Queues = []config.Queue{{Name: o.cell, Threads: o.threads, Pacing: o.pacing}}
	if o.trunk.on() {
		s.Trunks = []config.Trunk{o.trunk.settings()}
		s.Queues[0].Trunk = demoTrunkName
	}
	if err := s.Validate(); err != nil {
		return err
	}
	log, _, err := newLogger(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	opList, err := demoOperators(o.operators)
	if err != nil {
		return err
	}

	banner := []string{
		fmt.Sprintf("redis:  redis-cli -p %d   (keys %s:{%s}:…)", rport, s.Redis.Prefix, o.cell),
		fmt.Sprintf("AMI:    %s (user dialbridge, secret secret) · log %s", sim.Addr(), s.Log.Location),
		fmt.Sprintf("%g commands/s, %d threads, pacing %s, operators %s; outcomes by last digit: %s", o.rate, o.threads, s.Queues[0].Pacing.Mode, opList, amisim.FormatRules(o.rules)),
	}
	if o.trunk.on() {
		banner = append(banner, o.trunk.banner(sim.Addr(), o.tui)...)
	}
	printBanner := func() {
		fmt.Fprintf(out, "dialbridge demo — cell %s\n", o.cell)
		for _, b := range banner {
			fmt.Fprintln(out, "  "+b)
		}
	}
	if !o.tui {
		printBanner()
		fmt.Fprintln(out, "  Ctrl-C stops everything.")
	}

	d, err := startDaemon(ctx, &s, o.cell, log)
	if err != nil {
		return err
	}
	if o.onDaemon != nil {
		o.onDaemon(d)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	mc := multcallsim.New(rdb, s.Redis.Prefix, o.cell, multcallsim.Options{
		ConfirmDelay: 20 * time.Millisecond,
		// Multcall sometimes loses an ACK: ids ending in 99 are never confirmed.
		Ignore: func(id string) bool { return strings.HasSuffix(id, "99") },
	})

	// The queue manager of the cell, fed by the bridge's inbox, and its
	// simulated operators.
	notes := &noteBuffer{}
	qmLogf := notes.logf
	if !o.tui {
		qmLogf = func(format string, args ...any) { fmt.Fprintf(out, "queue manager: "+format+"\n", args...) }
	}
	qf := &queueFlags{operators: opList}
	qm, err := hostQueueManager(ctx, &s, qf, o.cell, mr.Addr(), o.ringTimeout, qmLogf)
	if err != nil {
		cancel()
		_ = d.Run(ctx)
		return err
	}
	defer qm.Stop()
	o.ops.FedPrefix = "demo-"

	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	daemonDone := make(chan error, 1)
	run(func() { daemonDone <- d.Run(ctx) })
	run(func() { mc.RunConfirmer(ctx) })
	run(func() { pushAtRate(ctx, mc, o.rate) })
	run(func() { _ = opsim.Run(ctx, qm.Engine, o.ops) })
	// Results are consumed like Multcall's response workers do, so the list
	// does not grow; the counters keep the totals.
	run(func() {
		for ctx.Err() == nil {
			rdb.BRPop(ctx, time.Second, mc.Keys().Results())
		}
	})
	finish := func() error {
		if o.inspect != nil {
			o.inspect(rdb)
		}
		cancel()
		wg.Wait()
		return <-daemonDone
	}
	coll := dash.NewCollector(rdb, s.Redis.Prefix, []string{o.cell}, 12)
	coll.SetTrunks(monitorTrunks(&s))

	if o.tui {
		mo := dash.Options{
			Title: "demo · cell " + o.cell, Banner: banner, Interval: time.Second,
			ACDCell: o.cell, ACDMode: "hosted", Fetch: coll.Collect,
		}
		code := runTUI(ctx, mo, func(sink func(dash.ConsoleMsg)) *dash.Console {
			notes.setSink(sink)
			con := dash.NewHostedConsole(ctx, qm.Engine, sink)
			if o.trunk.on() {
				// "amisim kill gw1" and the rest of the simulator's control.
				con = dash.WithCommand(con, "amisim", sim.Control, sink)
			}
			return con
		}, nil)
		last := coll.Collect(context.Background())
		err := finish()
		printBanner()
		fmt.Fprint(out, dash.Plain(last, nil, o.cell, 8))
		if code != exitOK && err == nil {
			err = errors.New("the monitor failed")
		}
		return err
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping…")
			last := coll.Collect(context.Background())
			err := finish()
			fmt.Fprintln(out, statusLine(context.Background(), rdb, mc.Keys(), d.cell, qm))
			fmt.Fprint(out, dash.Plain(last, nil, o.cell, 8))
			return err
		case <-tick.C:
			fmt.Fprintln(out, statusLine(ctx, rdb, mc.Keys(), d.cell, qm))
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

// statusLine is the demo's one-line view when stdout is not a terminal.
func statusLine(ctx context.Context, rdb redis.UniversalClient, k redisq.Keys, c *bridge.Cell, qm *hostedQM) string {
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
	snap := qm.Engine.Snapshot()
	busy := 0
	for _, op := range snap.Operators {
		if op.State == acd.Busy {
			busy++
		}
	}
	fmt.Fprintf(&b, " | operators busy %d/%d, waiting %d", busy, len(snap.Operators), len(snap.Queue))
	if p, _ := redisq.PacingState(ctx, rdb, k); len(p) > 0 {
		fmt.Fprintf(&b, " | pacing %s budget %s dialing %s level %s answer %s abandon %s/%s",
			p["mode"], p["budget"], p["dialing"], p["level"], p["answer_rate"], p["abandon_rate_window"], p["abandon_rate_day"])
		if p["nothing"] != "" {
			fmt.Fprintf(&b, " (%s)", p["nothing"])
		}
	}
	return termsafe.Escape(b.String())
}
