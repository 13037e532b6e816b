package main

// "dialbridge queue": the call queue manager (contract section 5), in basic
// mode (stdin/stdout), as a TCP server ("queue serve") or as the server's
// command line client ("queue client"). See docs/ACD.md.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
	"github.com/multcall/dialbridge/redisq"
)

func init() { register("queue", runQueue) }

const queueUsage = `usage:
  dialbridge queue [--config FILE] [--operators A,B] [--ring-timeout 10s] [--cell C [--redis HOST:PORT] [--reset]]
  dialbridge queue serve [--config FILE] [--listen 127.0.0.1:5678] [--operators A,B] [--ring-timeout 10s] [--cell C [--redis HOST:PORT] [--reset]]
  dialbridge queue client [--addr 127.0.0.1:5678]

Basic mode reads commands on stdin (call <id>, answer <op>, reject <op>,
hangup <id>, login <op>, logout <op>, status [<id>], help, quit) and prints
the messages on stdout, errors on stderr. "serve" takes the same commands
over TCP as JSON lines; "client" is its command line. With --cell the floor
is kept in Redis (keys <prefix>:{C}:acd:*), resumed at restart, and the
bridge's events for the cell are applied; without it, it lives in memory.

`

func runQueue(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runQueueManager(args[1:], true)
		case "client":
			return runQueueClient(args[1:])
		}
	}
	return runQueueManager(args, false)
}

// queueFlags are the flags of basic mode and serve.
type queueFlags struct {
	config      string
	operators   string
	ringTimeout time.Duration
	cell        string
	redis       string
	reset       bool
	listen      string
	explicit    map[string]bool
}

func parseQueueFlags(args []string, serve bool) (*queueFlags, error) {
	name := "queue"
	if serve {
		name = "queue serve"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := &queueFlags{explicit: map[string]bool{}}
	fs.StringVar(&f.config, "config", defaultConfigPath(), "settings file ($DIALBRIDGE_CONFIG); basic mode runs on the defaults when the default file is missing")
	fs.StringVar(&f.operators, "operators", "", `operators, overriding acd.operators: "A,B" or "A:operator,S:supervisor,D:director" (default A,B)`)
	fs.DurationVar(&f.ringTimeout, "ring-timeout", 0, "ring time before a delivered call is ignored, overriding acd.ring_timeout (default 10s)")
	fs.StringVar(&f.cell, "cell", "", "keep the floor in Redis under this cell's keys, resume it at start, apply the bridge's events (default: memory only)")
	fs.StringVar(&f.redis, "redis", "", "Redis HOST:PORT for --cell, overriding redis.host/redis.port")
	fs.BoolVar(&f.reset, "reset", false, "with --cell: forget the floor saved in Redis and start afresh")
	if serve {
		fs.StringVar(&f.listen, "listen", "", "TCP address to listen on, overriding acd.listen (default "+acdserver.DefaultListen+")")
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), queueUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprint(os.Stderr, queueUsage)
		return nil, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.explicit[fl.Name] = true })
	if f.redis != "" && f.cell == "" {
		return nil, errors.New("--redis needs --cell: the queue manager's keys are a cell's")
	}
	if f.reset && f.cell == "" {
		return nil, errors.New("--reset needs --cell")
	}
	if f.cell != "" && (strings.ContainsAny(f.cell, "{} \t\r\n") || len(f.cell) > 64) {
		return nil, fmt.Errorf("--cell: %q is not a cell name", f.cell)
	}
	return f, nil
}

// loadQueueSettings reads the settings. A missing file is fine only when
// it is the default path (not --config, not $DIALBRIDGE_CONFIG): basic mode
// must work anywhere.
func loadQueueSettings(f *queueFlags) (*config.Settings, error) {
	explicit := f.explicit["config"] || os.Getenv("DIALBRIDGE_CONFIG") != ""
	if !explicit {
		if _, err := os.Stat(f.config); errors.Is(err, os.ErrNotExist) {
			s := config.Defaults()
			return &s, nil
		}
	}
	return config.Load(f.config)
}

func queueOperators(f *queueFlags, s *config.Settings) ([]acd.Operator, error) {
	ops := s.ACD.Operators
	if f.operators != "" {
		var err error
		if ops, err = config.ParseOperators(f.operators); err != nil {
			return nil, err
		}
	}
	out := make([]acd.Operator, 0, len(ops))
	for _, o := range ops {
		tier, err := acd.ParseTier(o.Tier)
		if err != nil {
			return nil, fmt.Errorf("operator %s: %w", o.ID, err)
		}
		out = append(out, acd.Operator{ID: o.ID, Tier: tier})
	}
	return out, nil
}

// runQueueManager is basic mode (serve false) and "queue serve".
func runQueueManager(args []string, serve bool) int {
	f, err := parseQueueFlags(args, serve)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	s, err := loadQueueSettings(f)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	ops, err := queueOperators(f, s)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	rt := s.ACD.RingTimeout.D()
	if f.ringTimeout != 0 {
		if f.ringTimeout < 100*time.Millisecond || f.ringTimeout > time.Hour {
			return fail(os.Stderr, exitUsage, "--ring-timeout must be between 100ms and 1h, got %s", f.ringTimeout)
		}
		rt = f.ringTimeout
	}
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if serve {
			line = time.Now().Format("2006-01-02 15:04:05.000 ") + line
		}
		fmt.Fprintln(os.Stderr, line)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var ln net.Listener
	if serve {
		addr := s.ACD.Listen
		if f.listen != "" {
			addr = f.listen
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fail(os.Stderr, exitFailure, "queue serve: %v", err)
		}
		defer ln.Close()
	}

	// The floor: in memory, or in Redis under the cell's lease.
	var (
		m       *acd.Machine
		startup []acd.Message
		store   *redisq.ACDStore
		rdb     *redis.Client
	)
	opt := acdserver.Options{Logf: logf}
	if f.cell == "" {
		if m, err = acd.New(ops, rt); err != nil {
			return fail(os.Stderr, exitUsage, "%v", err)
		}
	} else {
		rdb, store, m, startup, err = openQueueStore(ctx, f, s, ops, rt, logf)
		if err != nil {
			return fail(os.Stderr, exitFailure, "%v", err)
		}
		opt.Store = store
	}
	e := acdserver.NewEngine(m, opt)

	// wg: the ring timer and the lease renewal; wgInbox: the inbox reader,
	// which may sit in a blocking BLMOVE until Redis is closed.
	var wg, wgInbox sync.WaitGroup
	goRun := func(wg *sync.WaitGroup, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				cancel(err)
			}
		}()
	}
	goRun(&wg, e.Run)
	if store != nil {
		goRun(&wg, store.KeepLease)
		goRun(&wgInbox, func(ctx context.Context) error { return e.RunInbox(ctx, store) })
	}

	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.ID + ":" + o.Tier.String()
	}
	where := "memory only"
	if store != nil {
		where = fmt.Sprintf("Redis %s, cell %s", rdb.Options().Addr, f.cell)
	}
	code := exitOK
	if serve {
		logf("dialbridge queue serve: listening on %s (operators %s; ring timeout %s; %s)", ln.Addr(), strings.Join(names, ", "), rt, where)
		for _, msg := range startup {
			logf("dialbridge queue serve: at start: %s", msg)
		}
		srv := &acdserver.Server{Engine: e, Logf: logf}
		if err := srv.Serve(ctx, ln); err != nil {
			logf("dialbridge queue serve: %v", err)
			code = exitFailure
		}
	} else {
		prompt := isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd())
		if prompt {
			fmt.Fprintf(os.Stderr, "Queue manager: operators %s; ring timeout %s; %s. Type help for the commands.\n", strings.Join(names, ", "), rt, where)
		}
		for _, msg := range startup {
			fmt.Fprintln(os.Stdout, msg.String())
		}
		if err := acdserver.RunBasic(ctx, e, os.Stdin, os.Stdout, os.Stderr, prompt); err != nil {
			logf("dialbridge queue: %v", err)
			code = exitFailure
		}
	}
	cancel(nil)
	wg.Wait()
	if store != nil {
		// The renewal has stopped: release the lease (the floor stays),
		// then close Redis, which ends a blocked BLMOVE at once.
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := store.Close(cctx); err != nil {
			logf("dialbridge queue: releasing the lease: %v", err)
		}
		ccancel()
		_ = rdb.Close()
	}
	wgInbox.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		logf("dialbridge queue: %v", cause)
		code = exitFailure
	}
	return code
}

// openQueueStore connects to Redis, takes the cell's lease and restores
// the floor saved there (or starts a new one and saves it).
func openQueueStore(ctx context.Context, f *queueFlags, s *config.Settings, ops []acd.Operator, rt time.Duration,
	logf func(string, ...any)) (*redis.Client, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
	host, port := s.Redis.Host, s.Redis.Port
	if f.redis != "" {
		h, p, err := net.SplitHostPort(f.redis)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("--redis: %q is not HOST:PORT", f.redis)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, nil, nil, nil, fmt.Errorf("--redis: bad port in %q", f.redis)
		}
		host, port = h, n
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	rdb, err := redisq.Dial(dctx, redisq.DialOptions{
		Host: host, Port: port, Password: s.Redis.Password.Reveal(), DB: s.Redis.DB, TLS: s.Redis.TLS,
		ClientName: "dialbridge-queue-" + f.cell,
	})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("queue manager of cell %s: %w", f.cell, err)
	}
	fail := func(err error) (*redis.Client, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
		rdb.Close()
		return nil, nil, nil, nil, err
	}
	store, err := redisq.ACDOpen(dctx, rdb, s.Redis.Prefix, f.cell, redisq.ACDOptions{Instance: "queue-" + instanceID(), Logf: logf})
	if err != nil {
		return fail(fmt.Errorf("queue manager of cell %s: %w", f.cell, err))
	}
	release := func(err error) (*redis.Client, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
		_ = store.Close(context.Background())
		return fail(err)
	}
	if f.reset {
		if err := store.Reset(dctx); err != nil {
			return release(fmt.Errorf("--reset: %w", err))
		}
	}
	snap, found, err := store.Load(dctx)
	if err != nil {
		return release(err)
	}
	now := time.Now()
	var m *acd.Machine
	var msgs []acd.Message
	if found {
		m, msgs, err = acd.Restore(ops, rt, snap, now)
		if err != nil {
			return release(fmt.Errorf("%w (start with --reset to forget it)", err))
		}
		// Rings that timed out while no queue manager ran are ignored now,
		// before anyone listens, so that basic mode prints them.
		msgs = append(msgs, m.Tick(now)...)
		logf("dialbridge queue: resumed the floor of cell %s from Redis (calls in progress: %d, waiting: %d)", f.cell, m.InProgress(), m.Waiting())
	} else if m, err = acd.New(ops, rt); err != nil {
		return release(err)
	}
	if err := store.SaveAll(dctx, m.Snapshot(), msgs, now, nil); err != nil {
		return release(fmt.Errorf("saving the floor: %w", err))
	}
	return rdb, store, m, msgs, nil
}

// runQueueClient is "queue client".
func runQueueClient(args []string) int {
	fs := flag.NewFlagSet("queue client", flag.ContinueOnError)
	addr := fs.String("addr", acdserver.DefaultListen, `address of "dialbridge queue serve"`)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), queueUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fail(os.Stderr, exitUsage, "queue client: unexpected argument %q", fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	prompt := isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd())
	if err := acdserver.RunClient(ctx, *addr, acdserver.ClientOptions{Prompt: prompt}, os.Stdin, os.Stdout, os.Stderr); err != nil {
		return fail(os.Stderr, exitFailure, "queue client: %v", err)
	}
	return exitOK
}
