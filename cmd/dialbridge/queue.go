package main

// "dialbridge queue": the call queue manager (contract section 5), in basic
// mode (stdin/stdout), as a TCP server ("queue serve") or as the server's
// command line client ("queue client"). See docs/ACD.md.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/acdserver"
	"github.com/multcall/dialbridge/monitor/termsafe"
	"github.com/multcall/dialbridge/redisq"
)

func init() { register("queue", runQueue) }

const queueUsage = `usage:
  dialbridge queue [--config FILE] [--operators A,B] [--ring-timeout 10s] [--cell C [--redis HOST:PORT] [--reset]]
  dialbridge queue serve [--config FILE] [--listen 127.0.0.1:5678] [--operators A,B] [--ring-timeout 10s] [--cell C [--redis HOST:PORT] [--reset]]
  dialbridge queue client [--config FILE] [--addr 127.0.0.1:5678]

Basic mode reads commands on stdin (call <id>, answer <op>, reject <op>,
hangup <id>, login <op>, logout <op>, status [<id>], help, quit) and prints
the messages on stdout, errors on stderr. "serve" takes the same commands
over TCP as JSON lines; "client" is its command line. With --cell the floor
is kept in Redis (keys <prefix>:{C}:acd:*), resumed at restart, and the
bridge's events for the cell are applied; without it, it lives in memory.
With acd.token set, "serve" wants it first from every client; "client"
reads it from $DIALBRIDGE_ACD_TOKEN, else from the settings.

`

// tokenEnv names the variable "queue client" (and the monitor attached to
// a "queue serve") reads acd.token from: never a flag, which ps shows.
const tokenEnv = "DIALBRIDGE_ACD_TOKEN"

// queueIO is where a queue subcommand reads commands and writes: the
// process's stdin, stdout and stderr, or a test's.
type queueIO struct {
	in          io.Reader
	out, errOut io.Writer
	prompt      bool // in is a terminal
}

func runQueue(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sio := queueIO{in: os.Stdin, out: os.Stdout, errOut: os.Stderr,
		prompt: isatty.IsTerminal(os.Stdin.Fd()) || isatty.IsCygwinTerminal(os.Stdin.Fd())}
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runQueueManager(ctx, args[1:], true, sio)
		case "client":
			return runQueueClient(ctx, args[1:], sio)
		}
	}
	return runQueueManager(ctx, args, false, sio)
}

// escapedLogf writes each line of logf escaped: the queue manager's notes
// carry text from Redis (refused inbox events, lease holders, Redis's
// errors), and they go to a terminal.
func escapedLogf(logf func(string, ...any)) func(string, ...any) {
	return func(format string, args ...any) {
		logf("%s", termsafe.Escape(fmt.Sprintf(format, args...)))
	}
}

// failEscaped is fail for an error whose text may come from Redis.
func failEscaped(w io.Writer, code int, err error) int {
	return fail(w, code, "%s", termsafe.Escape(err.Error()))
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

func parseQueueFlags(args []string, serve bool, stderr io.Writer) (*queueFlags, error) {
	name := "queue"
	if serve {
		name = "queue serve"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
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
		fmt.Fprint(stderr, queueUsage)
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
	if q, err := s.Queue(f.cell); err == nil {
		ops = s.OperatorsFor(q) // the cell's own team (queues[].operators)
	}
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
func runQueueManager(ctx context.Context, args []string, serve bool, sio queueIO) int {
	f, err := parseQueueFlags(args, serve, sio.errOut)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return fail(sio.errOut, exitUsage, "%v", err)
	}
	s, err := loadQueueSettings(f)
	if err != nil {
		return fail(sio.errOut, exitConfig, "%v", err)
	}
	ops, err := queueOperators(f, s)
	if err != nil {
		return fail(sio.errOut, exitUsage, "%v", err)
	}
	rt := s.ACD.RingTimeout.D()
	if f.ringTimeout != 0 {
		if f.ringTimeout < 100*time.Millisecond || f.ringTimeout > time.Hour {
			return fail(sio.errOut, exitUsage, "--ring-timeout must be between 100ms and 1h, got %s", f.ringTimeout)
		}
		rt = f.ringTimeout
	}
	var logMu sync.Mutex // notes come from several goroutines
	logf := escapedLogf(func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if serve {
			line = time.Now().Format("2006-01-02 15:04:05.000 ") + line
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintln(sio.errOut, line)
	})

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var ln net.Listener
	if serve {
		addr := s.ACD.Listen
		if f.listen != "" {
			addr = f.listen
		}
		// The settings refuse this for acd.listen; --listen must not be
		// the way around it.
		if !config.IsLoopback(addr) && s.ACD.Token == "" {
			return fail(sio.errOut, exitConfig, "queue serve: %s is not a loopback address and acd.token is not set: whoever reaches it could answer and reject calls", addr)
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fail(sio.errOut, exitFailure, "queue serve: %v", err)
		}
		defer ln.Close()
	}

	// The floor: in memory, or in Redis under the cell's lease.
	var (
		m       *acd.Machine
		startup []acd.Message
		store   *redisq.ACDStore
		rdb     redis.UniversalClient
	)
	opt := acdserver.Options{Logf: logf}
	if f.cell == "" {
		if m, err = acd.New(ops, rt); err != nil {
			return fail(sio.errOut, exitUsage, "%v", err)
		}
		if startup, err = startLoggedOut(s, m, ops, time.Now()); err != nil {
			return fail(sio.errOut, exitFailure, "%v", err)
		}
	} else {
		rdb, store, m, startup, err = openQueueStore(ctx, f, s, ops, rt, logf)
		if err != nil {
			return failEscaped(sio.errOut, exitFailure, err)
		}
		opt.Store = store
	}
	e := acdserver.NewEngine(m, opt)

	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.ID + ":" + o.Tier.String()
	}
	where := "memory only"
	if store != nil {
		dopts, _ := redisDialOptions(s, f.redis) // openQueueStore checked it
		where = fmt.Sprintf("Redis %s, cell %s", dopts.Where(), f.cell)
	}
	// Basic mode prints the floor's messages at start, then listens to the
	// engine before the inbox starts: events taken at once are printed.
	var basic *acdserver.Basic
	if !serve {
		if sio.prompt {
			logf("Queue manager: operators %s; ring timeout %s; %s. Type help for the commands.", strings.Join(names, ", "), rt, where)
		}
		if len(startup) > 0 {
			lines := make([]string, len(startup))
			for i, msg := range startup {
				lines[i] = termsafe.Escape(msg.String()) + "\n"
			}
			_, _ = io.WriteString(sio.out, strings.Join(lines, ""))
		}
		basic = acdserver.StartBasic(e, sio.out, sio.errOut, sio.prompt)
	}

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

	code := exitOK
	if serve {
		auth := "no token: every client that reaches it is served"
		if s.ACD.Token != "" {
			auth = "clients authenticate with acd.token"
		}
		logf("dialbridge queue serve: listening on %s (operators %s; ring timeout %s; %s; %s)", ln.Addr(), strings.Join(names, ", "), rt, where, auth)
		for _, msg := range startup {
			logf("dialbridge queue serve: at start: %s", msg)
		}
		srv := &acdserver.Server{Engine: e, Token: s.ACD.Token.Reveal(), Logf: logf}
		if err := srv.Serve(ctx, ln); err != nil {
			logf("dialbridge queue serve: %v", err)
			code = exitFailure
		}
	} else {
		if err := basic.Run(ctx, sio.in); err != nil {
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
	logf func(string, ...any)) (redis.UniversalClient, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
	dopts, err := redisDialOptions(s, f.redis)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	dopts.ClientName = "dialbridge-queue-" + f.cell
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	rdb, err := redisq.Dial(dctx, dopts)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("queue manager of cell %s: %w", f.cell, err)
	}
	fail := func(err error) (redis.UniversalClient, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
		rdb.Close()
		return nil, nil, nil, nil, err
	}
	store, err := redisq.ACDOpen(dctx, rdb, s.Redis.Prefix, f.cell, redisq.ACDOptions{Instance: "queue-" + instanceID(), Logf: logf})
	if err != nil {
		return fail(fmt.Errorf("queue manager of cell %s: %w", f.cell, err))
	}
	release := func(err error) (redis.UniversalClient, *redisq.ACDStore, *acd.Machine, []acd.Message, error) {
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
	} else {
		if m, err = acd.New(ops, rt); err != nil {
			return release(err)
		}
		if msgs, err = startLoggedOut(s, m, ops, now); err != nil {
			return release(err)
		}
	}
	if err := store.SaveAll(dctx, m.Snapshot(), msgs, now, nil); err != nil {
		return release(fmt.Errorf("saving the floor: %w", err))
	}
	return rdb, store, m, msgs, nil
}

// startLoggedOut applies acd.start_logged_in false to a new floor, in
// memory or in Redis alike: the desks are empty until their operators log
// in, so a paced cell dials for nobody.
func startLoggedOut(s *config.Settings, m *acd.Machine, ops []acd.Operator, now time.Time) ([]acd.Message, error) {
	if s.ACD.StartLoggedIn {
		return nil, nil
	}
	var msgs []acd.Message
	for _, op := range ops {
		out, err := m.Logout(op.ID, now)
		if err != nil {
			return nil, fmt.Errorf("logging out %s at start: %w", op.ID, err)
		}
		msgs = append(msgs, out...)
	}
	return msgs, nil
}

// runQueueClient is "queue client".
func runQueueClient(ctx context.Context, args []string, sio queueIO) int {
	fs := flag.NewFlagSet("queue client", flag.ContinueOnError)
	fs.SetOutput(sio.errOut)
	cfgPath := fs.String("config", defaultConfigPath(), "settings file ($DIALBRIDGE_CONFIG): acd.token, and acd.listen as the default --addr")
	addr := fs.String("addr", "", `address of "dialbridge queue serve" (default acd.listen, else `+acdserver.DefaultListen+`)`)
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
		return fail(sio.errOut, exitUsage, "queue client: unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { explicit[fl.Name] = true })
	s, err := loadQueueSettings(&queueFlags{config: *cfgPath, explicit: explicit})
	if err != nil {
		return fail(sio.errOut, exitConfig, "%v", err)
	}
	if *addr == "" {
		*addr = s.ACD.Listen
	}
	opt := acdserver.ClientOptions{Token: queueToken(s), Prompt: sio.prompt}
	if err := acdserver.RunClient(ctx, *addr, opt, sio.in, sio.out, sio.errOut); err != nil {
		return fail(sio.errOut, exitFailure, "queue client: %v", err)
	}
	return exitOK
}

// queueToken is the token a client of "queue serve" sends: the
// environment's, else acd.token of the settings.
func queueToken(s *config.Settings) string {
	if t := os.Getenv(tokenEnv); t != "" {
		return t
	}
	return s.ACD.Token.Reveal()
}
