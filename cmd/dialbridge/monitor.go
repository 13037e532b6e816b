package main

// "dialbridge monitor": the live terminal monitor (docs/MONITOR.md). It
// reads each cell's keys once per refresh (one pipelined round trip per
// cell), and hosts the queue manager of one cell (or attaches to a running
// "queue serve") for its command line.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acdserver"
	"github.com/multcall/dialbridge/monitor/dash"
	"github.com/multcall/dialbridge/redisq"
)

func init() { register("monitor", runMonitor) }

const monitorUsage = `usage: dialbridge monitor [--config FILE] [--redis HOST:PORT] [--interval 1s] [--cell C …] [--once] [--json]
                          [--acd-cell C | --attach ADDR | --no-acd] [--operators A,B] [--ring-timeout 10s]

A full-screen view of the cells (list depths, calls in flight, calls/s,
outcome mix, dial depth over time), the running bridges (heartbeats) and the
call queue manager (operators, waiting calls, log), with a command line for
call/answer/reject/hangup/login/logout. Keys: q quit, tab next pane, : type a
command, ? help. With --once, or when stdout is not a terminal, it prints one
plain snapshot and exits (--json: as JSON).

`

type monitorFlags struct {
	config      string
	redis       string
	interval    time.Duration
	cells       []string
	once, json  bool
	acdCell     string
	attach      string
	noACD       bool
	operators   string
	ringTimeout time.Duration
	explicit    map[string]bool
}

func parseMonitorFlags(args []string, stderr io.Writer) (*monitorFlags, error) {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &monitorFlags{explicit: map[string]bool{}}
	fs.StringVar(&f.config, "config", defaultConfigPath(), "settings file ($DIALBRIDGE_CONFIG); the defaults when the default file is missing")
	fs.StringVar(&f.redis, "redis", "", "Redis HOST:PORT, overriding redis.host/redis.port")
	fs.DurationVar(&f.interval, "interval", time.Second, "time between refreshes")
	fs.Func("cell", "a cell to show (repeat, or C1,C2; default: every cell of queues in the settings)", func(v string) error {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				if strings.ContainsAny(c, "{} \t\r\n") || len(c) > 64 {
					return fmt.Errorf("%q is not a cell name", c)
				}
				f.cells = append(f.cells, c)
			}
		}
		return nil
	})
	fs.BoolVar(&f.once, "once", false, "print one plain-text snapshot and exit")
	fs.BoolVar(&f.json, "json", false, "print one snapshot as JSON and exit")
	fs.StringVar(&f.acdCell, "acd-cell", "", "the cell whose queue manager the monitor hosts and shows (default: the first cell)")
	fs.StringVar(&f.attach, "attach", "", `attach the command line to a running "dialbridge queue serve" at ADDR instead of hosting the queue manager`)
	fs.BoolVar(&f.noACD, "no-acd", false, "do not host the queue manager: show it read-only")
	fs.StringVar(&f.operators, "operators", "", "operators of the hosted queue manager, overriding acd.operators")
	fs.DurationVar(&f.ringTimeout, "ring-timeout", 0, "ring timeout of the hosted queue manager, overriding acd.ring_timeout")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), monitorUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("monitor: unexpected argument %q (cells go with --cell)", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.explicit[fl.Name] = true })
	if f.interval < 100*time.Millisecond || f.interval > time.Hour {
		return nil, fmt.Errorf("--interval must be between 100ms and 1h, got %s", f.interval)
	}
	if f.attach != "" && f.noACD {
		return nil, errors.New("--attach and --no-acd exclude each other")
	}
	return f, nil
}

// monitorClient is a Redis client that fails fast: a monitor must show
// "Redis down" within a refresh, not hang on it. It reads the same redis.*
// settings as the daemon (Sentinel, Cluster, ACL user); --redis HOST:PORT
// replaces them with one plain Redis.
func monitorClient(flagVal string, s *config.Settings) (redis.UniversalClient, error) {
	o, err := redisDialOptions(s, flagVal)
	if err != nil {
		return nil, err
	}
	o.ClientName, o.FailFast = "dialbridge-monitor", true
	return redisq.NewClient(o), nil
}

func runMonitor(args []string) int {
	f, err := parseMonitorFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	qf := &queueFlags{config: f.config, operators: f.operators, explicit: map[string]bool{"config": f.explicit["config"]}}
	s, err := loadQueueSettings(qf)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	cells := f.cells
	if len(cells) == 0 {
		for _, q := range s.Queues {
			cells = append(cells, q.Name)
		}
	}
	if len(cells) == 0 {
		return fail(os.Stderr, exitUsage, "monitor: no cells: name them with --cell (the settings have no queues)")
	}
	rdb, err := monitorClient(f.redis, s)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	defer rdb.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	coll := dash.NewCollector(rdb, s.Redis.Prefix, cells, 12)
	coll.SetTrunks(monitorTrunks(s))
	acdCell := f.acdCell
	if acdCell == "" {
		acdCell = cells[0]
	}
	if f.once || f.json || !isatty.IsTerminal(os.Stdout.Fd()) {
		return monitorOnce(ctx, coll, acdCell, f.json, os.Stdout, os.Stderr)
	}

	// go-redis would print its complaints over the screen.
	redisq.SetClientLogger(zerolog.Nop())
	dopts, _ := redisDialOptions(s, f.redis) // monitorClient checked it
	mo := dash.Options{Title: "redis " + dopts.Where(), Interval: f.interval, ACDCell: acdCell, Fetch: coll.Collect}
	var hosted *hostedQM
	var startNotes []string
	var console func(sink func(dash.ConsoleMsg)) *dash.Console
	switch {
	case f.noACD:
		mo.ACDMode, mo.ACDNote = "read-only", "started with --no-acd: the command line is read-only"
	case f.attach != "":
		mo.ACDMode = "attached to " + f.attach
		token := queueToken(s)
		console = func(sink func(dash.ConsoleMsg)) *dash.Console {
			return dash.NewClientConsole(ctx, f.attach, token, sink)
		}
	default:
		notes := &noteBuffer{}
		hosted, err = hostQueueManager(ctx, s, qf, acdCell, f.redis, f.ringTimeout, notes.logf)
		if err != nil {
			mo.ACDMode = "read-only"
			mo.ACDNote = fmt.Sprintf("queue manager not hosted: %v (attach with --attach ADDR to a running queue serve)", err)
			startNotes = append(startNotes, mo.ACDNote)
		} else {
			defer hosted.Stop()
			mo.ACDMode = "hosted"
			console = func(sink func(dash.ConsoleMsg)) *dash.Console {
				notes.setSink(sink)
				return dash.NewHostedConsole(ctx, hosted.Engine, sink)
			}
		}
	}
	return runTUI(ctx, mo, console, startNotes)
}

// runTUI runs the full-screen monitor until q, ctrl-c or ctx ends.
func runTUI(ctx context.Context, mo dash.Options, console func(func(dash.ConsoleMsg)) *dash.Console, notes []string) int {
	var p *tea.Program
	var con *dash.Console
	if console != nil {
		// The console may print before the program exists: its sink waits.
		ready := make(chan struct{})
		con = console(func(m dash.ConsoleMsg) { <-ready; p.Send(m) })
		mo.Exec = con.Exec
		p = tea.NewProgram(dash.New(mo), tea.WithAltScreen(), tea.WithContext(ctx))
		close(ready)
	} else {
		p = tea.NewProgram(dash.New(mo), tea.WithAltScreen(), tea.WithContext(ctx))
	}
	if len(notes) > 0 {
		go p.Send(dash.ConsoleMsg{Lines: notes, Err: true})
	}
	if con != nil {
		go func() {
			if err := <-con.Done(); err != nil {
				p.Send(dash.ConsoleMsg{Lines: []string{"queue manager: " + err.Error()}, Err: true})
			}
		}()
	}
	_, err := p.Run()
	if con != nil {
		con.Close()
	}
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, context.Canceled) {
		return fail(os.Stderr, exitFailure, "monitor: %v", err)
	}
	return exitOK
}

// monitorOnce prints one snapshot; 1 when no cell could be read.
func monitorOnce(ctx context.Context, coll *dash.Collector, acdCell string, asJSON bool, out, errOut io.Writer) int {
	snap := coll.Collect(ctx)
	if asJSON {
		b, err := dash.JSON(snap, nil)
		if err != nil {
			return fail(errOut, exitFailure, "monitor: %v", err)
		}
		fmt.Fprintf(out, "%s\n", b)
	} else {
		fmt.Fprint(out, dash.Plain(snap, nil, acdCell, 12))
	}
	for _, c := range snap.Cells {
		if c.Err == "" {
			return exitOK
		}
	}
	return exitFailure
}

// noteBuffer holds the hosted queue manager's notes until the screen is up,
// then hands them to it.
type noteBuffer struct {
	mu    sync.Mutex
	held  []string
	sinkf func(dash.ConsoleMsg)
}

func (n *noteBuffer) logf(format string, args ...any) {
	line := "note: " + fmt.Sprintf(format, args...)
	n.mu.Lock()
	sink := n.sinkf
	if sink == nil {
		n.held = append(n.held, line)
	}
	n.mu.Unlock()
	if sink != nil {
		go sink(dash.ConsoleMsg{Lines: []string{line}, Err: true})
	}
}

func (n *noteBuffer) setSink(sink func(dash.ConsoleMsg)) {
	n.mu.Lock()
	n.sinkf = sink
	held := n.held
	n.held = nil
	n.mu.Unlock()
	if len(held) > 0 {
		go sink(dash.ConsoleMsg{Lines: held, Err: true})
	}
}

// hostedQM is a queue manager run inside the monitor (or the demo): the
// Engine with its floor in Redis under the cell's lease, applying the
// bridge's inbox.
type hostedQM struct {
	Engine  *acdserver.Engine
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	wgInbox sync.WaitGroup
	store   *redisq.ACDStore
	rdb     redis.UniversalClient
	stopped sync.Once
}

func hostQueueManager(ctx context.Context, s *config.Settings, qf *queueFlags, cell, addr string, ringTimeout time.Duration,
	logf func(string, ...any)) (*hostedQM, error) {
	logf = escapedLogf(logf) // the demo prints them on its terminal
	qfc := *qf
	qfc.cell = cell // the cell's own operators (queues[].operators)
	ops, err := queueOperators(&qfc, s)
	if err != nil {
		return nil, err
	}
	rt := s.ACD.RingTimeout.D()
	if ringTimeout != 0 {
		if ringTimeout < 100*time.Millisecond || ringTimeout > time.Hour {
			return nil, fmt.Errorf("--ring-timeout must be between 100ms and 1h, got %s", ringTimeout)
		}
		rt = ringTimeout
	}
	f := &queueFlags{cell: cell, redis: addr}
	rdb, store, m, startup, err := openQueueStore(ctx, f, s, ops, rt, logf)
	if err != nil {
		return nil, err
	}
	for _, msg := range startup {
		logf("at start: %s", msg)
	}
	h := &hostedQM{Engine: acdserver.NewEngine(m, acdserver.Options{Store: store, Logf: logf}), store: store, rdb: rdb}
	hctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	goRun := func(wg *sync.WaitGroup, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(hctx); err != nil && hctx.Err() == nil {
				logf("queue manager of cell %s: %v", cell, err)
			}
		}()
	}
	goRun(&h.wg, h.Engine.Run)
	goRun(&h.wg, store.KeepLease)
	goRun(&h.wgInbox, func(ctx context.Context) error { return h.Engine.RunInbox(ctx, store) })
	return h, nil
}

// Stop stops the queue manager and releases its lease (the floor stays).
func (h *hostedQM) Stop() {
	h.stopped.Do(func() {
		h.cancel()
		h.wg.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = h.store.Close(cctx)
		ccancel()
		_ = h.rdb.Close()
		h.wgInbox.Wait()
	})
}
