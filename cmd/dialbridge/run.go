package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/gctune"
	"github.com/multcall/dialbridge/internal/retry"
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
		return exitConfig
	}
	if fs.NArg() != 1 {
		return fail(os.Stderr, exitConfig, "run: exactly one cell expected (a name under queues in the settings), got %d arguments", fs.NArg())
	}
	s, err := config.Load(*path)
	if err != nil {
		return fail(os.Stderr, exitConfig, "%v", err)
	}
	log, reopen, err := newLogger(s.Log, os.Stderr)
	if err != nil {
		return fail(os.Stderr, exitConfig, "%v", err)
	}
	warnSettingsFile(log, s)

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
		if ctx.Err() != nil {
			log.Info().Msg("stopped while starting")
			return exitOK
		}
		if s.Log.Location != "-" {
			log.Error().Err(err).Msg("cannot start") // stderr gets the one line below
		}
		return fail(os.Stderr, startExit(err), "%v", err)
	}
	// HTTP API, metrics, systemd readiness and watchdog (docs/OPERATIONS.md).
	stopOps, err := startOps(ctx, d)
	if err != nil {
		d.close()
		if s.Log.Location != "-" {
			log.Error().Err(err).Msg("cannot start")
		}
		// An address in use may free itself (a predecessor still
		// stopping): restart. A certificate that cannot be read needs a
		// person.
		code := exitConfig
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			code = exitFailure
		}
		return fail(os.Stderr, code, "%v", err)
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
	rdb      redis.UniversalClient
	// redisWhere names the Redis servers for logs (redisq.DialOptions.Where).
	redisWhere string
	amic       *ami.Client
	keys       redisq.Keys
	queue      *redisq.Queue
	router     *redisq.ConfirmRouter
	beat       *redisq.Heartbeat
	cell       *bridge.Cell
	pacing     *cellPacing      // nil: pacing.mode none
	trunk      *redisq.TrunkUse // nil: the cell names no trunk
	// durable (nil unless redis.wait_replicas ≥ 1): WAIT after the steps
	// that matter, and the admission that stops claiming while replicas
	// do not acknowledge.
	durable *redisq.Durable
}

// instanceID is <hostname>-<pid>-<random>: readable in redis-cli, and
// unique even where every process is pid 1 and a restarted container keeps
// its host name. Reusing a dead predecessor's id would make its claimed
// list and heartbeat look like ours: its commands would never be recovered.
func instanceID() string {
	host := hostName()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// configError is a start failure only a person can fix (exit 78).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// startExit is the exit status of a start failure.
func startExit(err error) int {
	var ce configError
	if errors.As(err, &ce) {
		return exitConfig
	}
	return exitFailure
}

// isRedisAuthError: Redis refused our credentials or our ACL user lacks a
// command we need. Retrying cannot fix either.
func isRedisAuthError(err error) bool {
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	s := err.Error()
	return strings.Contains(s, "AUTH") && strings.Contains(s, "without any password configured")
}

// dialRedis connects to Redis, waiting with backoff (one log line per
// outage, systemd told why) while it is unreachable: a Redis blip at boot
// must not leave the cell down. A refused login is returned at once.
func dialRedis(ctx context.Context, log zerolog.Logger, opts redisq.DialOptions, notify func(string)) (redis.UniversalClient, error) {
	health := retry.NewHealth("redis", log)
	var backoff time.Duration
	for {
		dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rdb, err := redisq.Dial(dialCtx, opts)
		cancel()
		if err == nil {
			health.Up()
			return rdb, nil
		}
		if isRedisAuthError(err) {
			return nil, configError{fmt.Errorf("%w (check redis.username and redis.password)", err)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		health.Down(err)
		notify("STATUS=waiting for Redis: " + err.Error() + "\nEXTEND_TIMEOUT_USEC=" + strconv.FormatInt((3*startExtendEvery).Microseconds(), 10))
		backoff = retry.Next(backoff)
		if !retry.Sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
	}
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
		return nil, configError{err}
	}
	d := &daemon{settings: s, cellName: cellName, instance: instanceID()}
	d.log = log.With().Str("cell", cellName).Str("instance", d.instance).Logger()
	d.keys = redisq.NewKeys(s.Redis.Prefix, cellName)
	redisq.SetClientLogger(d.log)

	dopts, err := redisDialOptions(s, "")
	if err != nil {
		return nil, configError{err}
	}
	dopts.Threads, dopts.Cells = q.Threads, 1
	dopts.ClientName = "dialbridge-" + cellName + "-" + d.instance
	d.redisWhere = dopts.Where()
	d.rdb, err = dialRedis(ctx, d.log, dopts, o.sdNotify())
	if err != nil {
		return nil, err
	}
	warnRedisPolicy(ctx, d.log, d.rdb)

	d.amic = ami.New(ami.Options{
		Host: s.AMI.Host, Port: s.AMI.Port, Username: s.AMI.Username, Secret: s.AMI.Secret.Reveal(),
		Connections: s.AMI.SessionsFor(q.Threads), CommandResponse: s.Timeouts.CommandResponse.D(),
		Instance: d.instance, Unguarded: !s.AMI.Guarded(),
	}, d.log.With().Str("component", "ami").Logger())
	if err := d.amic.Start(ctx); err != nil {
		d.amic.Close()
		d.rdb.Close()
		var refused *ami.LoginRefusedError
		if errors.As(err, &refused) {
			return nil, configError{err}
		}
		return nil, err
	}

	// The queue manager is fed inside the Lua steps of the call (no extra
	// round trip); see redisq.WithACDInbox.
	// The PBX is named by ami.host:port as configured: daemons that spell
	// one Asterisk the same way adopt each other's live calls after a
	// crash (bridge/adopt.go).
	pbx := s.AMI.Addr()
	qopts := []redisq.QueueOption{redisq.WithACDInbox(acdInboxCap), operatorFieldsOption(q), redisq.WithPBX(pbx)}
	if n := s.Redis.WaitReplicas; n > 0 {
		d.durable = redisq.NewDurable(d.rdb, d.keys, n, s.Redis.WaitTimeout.D(), d.log)
		qopts = append(qopts, redisq.WithDurable(d.durable))
	}
	d.queue = redisq.NewQueue(d.rdb, s.Redis.Prefix, cellName, d.instance, qopts...)
	d.router = redisq.NewConfirmRouter(d.rdb, s.Redis.Prefix, cellName, d.instance, log) // it adds cell and component itself
	d.cell = bridge.NewCell(bridge.Options{
		Cell:            cellName,
		Instance:        d.instance,
		Threads:         q.Threads,
		ChannelTemplate: s.ChannelFor(q),
		Context:         s.Originate.Context,
		Exten:           s.Originate.Exten,
		Priority:        s.Originate.Priority,
		RingTimeout:     s.Originate.Timeout.D(),
		CallerID:        s.Originate.CallerID,
		Retries:         s.Retries,
		ACKTimeout:      s.Timeouts.CommandACK.D(),
		ShutdownGrace:   s.Timeouts.ShutdownGrace.D(),
		PBX:             pbx,
		// A mark that waits for replicas would hold the trunk's token
		// up to wait_timeout before the wire.
		GatesBesideMark: d.durable == nil,
	}, o.wrap(d.queue), d.router, d.amic, d.log)
	// Limits on claiming beyond threads, asked in order (bridge.Admission):
	// the replicas, then the trunk (neither costs a Redis round trip while
	// it refuses), then the cell's pacing budget.
	var admissions []bridge.Admission
	if d.durable != nil {
		// First: it costs no round trip, and while the replicas do not
		// acknowledge the others need not be asked.
		admissions = append(admissions, d.durable)
	}
	if t, ok := s.TrunkFor(q); ok {
		d.trunk, err = redisq.NewTrunkUse(d.rdb, s.Redis.Prefix, redisq.TrunkUseOptions{
			Cell: cellName, Trunk: t.Name, Host: o.hostName(),
			Limits:  redisq.TrunkLimits{CPS: t.CPS, Burst: t.Burst, MaxChannels: t.MaxChannels},
			Breaker: bridge.BreakerConfig{Failures: t.Breaker.Failures, Cooldown: t.Breaker.Cooldown.D()},
		}, d.log)
		if err != nil {
			d.close()
			return nil, configError{err}
		}
		admissions = append(admissions, d.trunk)
		d.cell.SetDialGates(d.trunk)
		d.cell.SetAdoptHook(d.trunk)
	}
	d.pacing = newCellPacing(d, q)
	admissions = append(admissions, d.pacing.admissions()...)
	d.cell.SetAdmissions(admissions...)
	started := time.Now()
	d.beat = redisq.NewHeartbeat(d.rdb, d.keys, d.instance, func() redisq.HeartbeatInfo {
		return redisq.HeartbeatInfo{Host: o.hostName(), Version: version, Threads: q.Threads, InFlight: d.cell.InFlight(), StartedAt: started, AMI: pbx, Extra: append(d.trunkBeat(), d.holdBeat()...)}
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
	notify    func(state string) // default sd_notify
	host      string             // default os.Hostname: the trunk breaker's host
}

// hostName is the host the trunk breaker belongs to (contract section 7:
// one breaker per host and trunk, shared by the host's daemons).
func (o daemonOptions) hostName() string {
	if o.host != "" {
		return o.host
	}
	return hostName()
}

// hostName is this machine's name, "host" when it has none.
func hostName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "host"
	}
	return host
}

func (o daemonOptions) sdNotify() func(string) {
	if o.notify != nil {
		return o.notify
	}
	return func(state string) { _, _ = sddaemon.SdNotify(false, state) }
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
		Str("redis", d.redisWhere).Str("ami", d.settings.AMI.Addr()).Msg("started")

	// Registered and beating before the first claim: recovery elsewhere
	// must never take a live instance for a dead one.
	if err := d.beat.Beat(ctx); err != nil {
		d.log.Warn().Err(err).Msg("first heartbeat failed; retrying in the background")
	}
	// The confirmation reader and the heartbeat outlive the claim loop: calls
	// draining after SIGTERM still wait for confirmations.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); watchQueueManager(bg, d.rdb, d.queue) }()
	d.pacing.run(bg, &wg)
	wg.Add(1)
	go func() { defer wg.Done(); warnAMIRights(bg, d.log, d.amic) }()
	runs := []func(context.Context) error{d.router.Run, d.beat.Run}
	if d.trunk != nil {
		// The gate and the lease renewal outlive the claim loop too: calls
		// draining still need their slots and tokens.
		runs = append(runs, d.trunk.Run)
	}
	if d.durable != nil {
		// Outlives the claim loop too: results of draining calls are held
		// until the replicas acknowledge them.
		runs = append(runs, d.durable.Run)
	}
	for _, run := range runs {
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

// holdReason says why the cell claims nothing though Redis and AMI are up
// ("" when nothing holds it back): for /healthz, the heartbeat and so the
// monitor.
func (d *daemon) holdReason() string {
	if d.durable != nil {
		if err := d.durable.Err(); err != nil {
			return "redis replicas: " + err.Error()
		}
	}
	return ""
}

// holdBeat is the heartbeat's "hold" field (holdReason).
func (d *daemon) holdBeat() []string { return []string{"hold", d.holdReason()} }

// close releases what startDaemon opened, for a start that goes no further.
func (d *daemon) close() {
	d.amic.Close()
	d.rdb.Close()
}

var _ io.Closer = (*ami.Client)(nil)
