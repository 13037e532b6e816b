package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/gctune"
	"github.com/multcall/dialbridge/redisq"
)

func init() { register("run", runDaemon) }

func runDaemon(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", defaultConfigPath(), "settings file ($DIALBRIDGE_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dialbridge run [--config FILE] <cell>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		return fail(os.Stderr, exitUsage, "run: exactly one cell expected (a name under queues in the settings), got %d arguments", fs.NArg())
	}
	s, err := config.Load(*path)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	log, reopen, err := newLogger(s.Log, os.Stderr)
	if err != nil {
		return fail(os.Stderr, exitUsage, "%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if reopen != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if err := reopen(); err != nil {
					fmt.Fprintf(os.Stderr, "dialbridge: reopen log: %v\n", err)
				}
			}
		}()
	} else {
		signal.Ignore(syscall.SIGHUP) // nothing to reopen; do not die on it
	}

	// A heap floor for the collector (internal/gctune: why); GOGC or
	// GOMEMLIMIT in the environment keep the operator's choice instead.
	if t := gctune.Start(gctune.DefaultFloor); t != nil {
		defer t.Stop()
		log.Debug().Int("heap_floor_mib", gctune.DefaultFloor>>20).Msg("garbage collector: heap floor")
	} else {
		log.Info().Str("GOGC", os.Getenv("GOGC")).Str("GOMEMLIMIT", os.Getenv("GOMEMLIMIT")).Msg("garbage collector: the environment's settings, no heap floor")
	}

	d, err := startDaemon(ctx, s, fs.Arg(0), log)
	if err != nil {
		if s.Log.Location != "-" {
			log.Error().Err(err).Msg("cannot start") // stderr gets the one line below
		}
		return fail(os.Stderr, exitUsage, "%v", err)
	}
	// HTTP API, metrics, systemd readiness and watchdog (docs/OPERATIONS.md).
	stopOps, err := startOps(ctx, d)
	if err != nil {
		if s.Log.Location != "-" {
			log.Error().Err(err).Msg("cannot start")
		}
		return fail(os.Stderr, exitUsage, "%v", err) // address in use, bad certificate: a human must fix it
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = stopOps(sctx)
	}()
	if err := d.Run(ctx); err != nil {
		log.Error().Err(err).Msg("stopped on error")
		return exitFailure
	}
	return exitOK
}

// daemon is one cell's bridge with everything it runs on.
type daemon struct {
	log      zerolog.Logger
	settings *config.Settings
	cellName string
	instance string
	rdb      *redis.Client
	amic     *ami.Client
	keys     redisq.Keys
	queue    *redisq.Queue
	router   *redisq.ConfirmRouter
	beat     *redisq.Heartbeat
	cell     *bridge.Cell
}

// instanceID is <hostname>-<pid>: unique among running daemons, readable
// in redis-cli.
func instanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// startDaemon connects to Redis and AMI and builds the cell. Problems a human
// must fix (unknown cell, Redis unreachable, AMI login refused) are errors;
// an Asterisk that is merely down is waited for by the running daemon.
func startDaemon(ctx context.Context, s *config.Settings, cellName string, log zerolog.Logger, opts ...daemonOption) (*daemon, error) {
	var o daemonOptions
	for _, opt := range opts {
		opt(&o)
	}
	q, err := s.Queue(cellName)
	if err != nil {
		return nil, err
	}
	d := &daemon{settings: s, cellName: cellName, instance: instanceID()}
	d.log = log.With().Str("cell", cellName).Str("instance", d.instance).Logger()
	d.keys = redisq.NewKeys(s.Redis.Prefix, cellName)
	redisq.SetClientLogger(d.log)

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.rdb, err = redisq.Dial(dialCtx, redisq.DialOptions{
		Host: s.Redis.Host, Port: s.Redis.Port, Password: s.Redis.Password.Reveal(),
		DB: s.Redis.DB, TLS: s.Redis.TLS, Threads: q.Threads, Cells: 1,
		ClientName: "dialbridge-" + cellName + "-" + d.instance,
	})
	if err != nil {
		return nil, err
	}

	d.amic = ami.New(ami.Options{
		Host: s.AMI.Host, Port: s.AMI.Port, Username: s.AMI.Username, Secret: s.AMI.Secret.Reveal(),
		Connections: s.AMI.SessionsFor(q.Threads), CommandResponse: s.Timeouts.CommandResponse.D(),
		Instance: d.instance,
	}, d.log.With().Str("component", "ami").Logger())
	if err := d.amic.Start(ctx); err != nil {
		d.amic.Close()
		d.rdb.Close()
		return nil, err
	}

	// The queue manager is fed inside the Lua steps of the call (no extra
	// round trip); see redisq.WithACDInbox.
	d.queue = redisq.NewQueue(d.rdb, s.Redis.Prefix, cellName, d.instance, redisq.WithACDInbox(acdInboxCap))
	d.router = redisq.NewConfirmRouter(d.rdb, s.Redis.Prefix, cellName, d.instance, log) // it adds cell and component itself
	d.cell = bridge.NewCell(bridge.Options{
		Cell:            cellName,
		Instance:        d.instance,
		Threads:         q.Threads,
		ChannelTemplate: s.Originate.Channel,
		Context:         s.Originate.Context,
		Exten:           s.Originate.Exten,
		Priority:        s.Originate.Priority,
		RingTimeout:     s.Originate.Timeout.D(),
		CallerID:        s.Originate.CallerID,
		Retries:         s.Retries,
		ACKTimeout:      s.Timeouts.CommandACK.D(),
		ShutdownGrace:   s.Timeouts.ShutdownGrace.D(),
	}, o.wrap(d.queue), d.router, d.amic, d.log)
	started := time.Now()
	d.beat = redisq.NewHeartbeat(d.rdb, d.keys, d.instance, func() redisq.HeartbeatInfo {
		return redisq.HeartbeatInfo{Version: version, Threads: q.Threads, InFlight: d.cell.InFlight(), StartedAt: started}
	}, redisq.DefaultHeartbeatTTL, 3*time.Second)
	d.beat.SetLogger(d.log)
	return d, nil
}

// acdInboxCap bounds the queue manager's inbox: the newest events are kept,
// so a cell run without a queue manager does not grow it forever.
const acdInboxCap = 100000

// daemonOptions are hooks for tests.
type daemonOptions struct {
	wrapStore func(bridge.Store) bridge.Store
}

type daemonOption func(*daemonOptions)

func (o daemonOptions) wrap(s bridge.Store) bridge.Store {
	if o.wrapStore == nil {
		return s
	}
	return o.wrapStore(s)
}

// Run runs the cell until ctx ends, then drains and releases everything.
func (d *daemon) Run(ctx context.Context) error {
	d.log.Info().Str("version", version).Int("threads", d.cell.Options().Threads).
		Str("redis", d.settings.Redis.Addr()).Str("ami", d.settings.AMI.Addr()).Msg("started")

	// Registered and beating before the first claim: recovery elsewhere
	// must never take a live instance for a dead one.
	if err := d.beat.Beat(ctx); err != nil {
		d.log.Warn().Err(err).Msg("first heartbeat failed; retrying in the background")
	}
	// The confirmation reader and the heartbeat outlive the claim loop: calls
	// draining after SIGTERM still wait for confirmations.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{d.router.Run, d.beat.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(bg); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error().Err(err).Msg("background task stopped")
			}
		}()
	}

	err := d.cell.Run(ctx)
	stopBG()
	wg.Wait()

	// A clean exit removes the heartbeat at once, so recovery of anything
	// left claimed need not wait for the TTL.
	delCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if derr := d.beat.Delete(delCtx); derr != nil {
		d.log.Warn().Err(derr).Msg("heartbeat not removed; it expires by itself")
	}
	cancel()
	d.amic.Close()
	d.rdb.Close()
	d.log.Info().Msg("stopped")
	return err
}

var _ io.Closer = (*ami.Client)(nil)
