package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/httpapi"
	"github.com/multcall/dialbridge/metrics"
)

// The operations surface of a daemon (docs/OPERATIONS.md): Prometheus
// metrics of its cell, the optional HTTP(S) listener (submit/status for every
// cell of the settings, /healthz and /metrics of its own cell) and the
// systemd notification loop (READY=1, WATCHDOG=1, STATUS=, STOPPING=1).

// opsCell adapts *bridge.Cell to the small interfaces of metrics and httpapi.
type opsCell struct{ *bridge.Cell }

func (c opsCell) Threads() int { return c.Options().Threads }

// opsAMI adapts *ami.Client.
type opsAMI struct{ *ami.Client }

func (a opsAMI) Reconnects() uint64 { return a.State().Reconnects }

// opsOptions are hooks for tests.
type opsOptions struct {
	notify    func(state string) (bool, error) // default sd_notify via $NOTIFY_SOCKET
	watchdog  func() (time.Duration, error)    // default $WATCHDOG_USEC
	readyPoll time.Duration                    // before READY=1; default 250 ms
	statusInt time.Duration                    // after READY=1, at most; default 5 s
	loops     map[string]func() time.Time      // main loops' last rounds; default the cell's and the router's
}

type ops struct {
	d       *daemon
	o       opsOptions
	metrics *metrics.Metrics
	health  *httpapi.Checker
	srv     *httpapi.Server // nil when http listen is off

	loopStop context.CancelFunc
	loopDone chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// startOps builds the metrics observer of d's cell (it must run before
// d.Run: the observer is set on the cell), starts the HTTP(S) listener when
// the settings ask for one, and starts the systemd notification loop. The
// loop sends STOPPING=1 when ctx ends; stop shuts the listener down (letting
// requests finish until its ctx ends) and ends the loop. Errors are problems
// a human must fix: an address in use, an unreadable certificate.
func startOps(ctx context.Context, d *daemon) (stop func(context.Context) error, err error) {
	o, err := startOpsWith(ctx, d, opsOptions{})
	if err != nil {
		return nil, err
	}
	return o.stop, nil
}

func startOpsWith(ctx context.Context, d *daemon, oo opsOptions) (*ops, error) {
	if oo.notify == nil {
		oo.notify = func(state string) (bool, error) { return sddaemon.SdNotify(false, state) }
	}
	if oo.watchdog == nil {
		oo.watchdog = func() (time.Duration, error) { return sddaemon.SdWatchdogEnabled(false) }
	}
	if oo.readyPoll <= 0 {
		oo.readyPoll = 250 * time.Millisecond
	}
	if oo.statusInt <= 0 {
		oo.statusInt = 5 * time.Second
	}
	q, err := d.settings.Queue(d.cellName)
	if err != nil {
		return nil, err
	}
	o := &ops{d: d, o: oo}
	cell := opsCell{d.cell}
	o.metrics = metrics.New(d.cellName, cell, opsAMI{d.amic})
	d.cell.SetObserver(o.metrics)
	o.health = &httpapi.Checker{
		Ping:   func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() },
		Writes: d.beat.WriteErr,
		Cell:   cell,
		AMI:    d.amic,
		Hold:   d.holdReason,
	}
	if d.pacing != nil {
		o.health.Pacing = d.pacing.health
		o.metrics.AddPacing(d.cellName, d.pacing.metrics)
	}
	if dur := d.durable; dur != nil {
		o.metrics.AddDurable(d.cellName, func() metrics.DurableSample {
			return metrics.DurableSample{Holding: dur.Err() != nil, Held: dur.Held()}
		})
	}
	if d.trunk != nil {
		o.health.Trunk = d.trunkHealth
		u := d.trunk
		o.metrics.AddTrunk(d.cellName, u.Name(), func() metrics.TrunkSample { return trunkSample(u) })
	}

	if addr := d.settings.HTTPListen(q); addr != "" {
		lg := d.log.With().Str("component", "http").Logger()
		// The API takes calls for this daemon's cell only: another cell's
		// calls queued here would wait for a daemon that may not run.
		h := httpapi.NewHandler(httpapi.Options{
			RDB:                          d.rdb,
			Prefix:                       d.settings.Redis.Prefix,
			Cell:                         d.cellName,
			Token:                        d.settings.HTTP.Token,
			AllowUnauthenticatedLoopback: d.settings.HTTP.AllowUnauthenticatedLoopback,
			Health:                       o.health,
			Metrics:                      o.metrics.Handler(),
			Pprof:                        d.settings.HTTP.Pprof,
			Log:                          lg,
		})
		o.srv, err = httpapi.Start(addr, d.settings.HTTP.TLSCert, d.settings.HTTP.TLSKey, h, lg)
		if err != nil {
			return nil, err
		}
		scheme := "http"
		if o.srv.TLS() {
			scheme = "https"
		}
		lg.Info().Str("addr", o.srv.Addr()).Str("scheme", scheme).Msg("listening")
	}

	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.loopStop, o.loopDone = cancel, make(chan struct{})
	go func() { defer close(o.loopDone); o.notifyLoop(ctx, loopCtx) }()
	return o, nil
}

// Addr is the listener's address, "" when off.
func (o *ops) Addr() string {
	if o.srv == nil {
		return ""
	}
	return o.srv.Addr()
}

func (o *ops) stop(ctx context.Context) error {
	o.stopOnce.Do(func() {
		if o.srv != nil {
			o.stopErr = o.srv.Shutdown(ctx)
		}
		o.loopStop()
		<-o.loopDone
	})
	return o.stopErr
}

// notifyLoop talks to systemd (a no-op without $NOTIFY_SOCKET):
//   - READY=1 once Redis and AMI are up; until then STATUS= says what is
//     awaited and EXTEND_TIMEOUT_USEC= keeps the start from timing out: an
//     outage at boot is waited for, not turned into a restart loop;
//   - WATCHDOG=1 every half of WatchdogSec while the daemon's main loops
//     (the claim loop, the confirmation reader) go round (see
//     loopsAlive): waiting for Redis or AMI with backoff counts as going
//     round, so a long outage is not restarted (it shows in STATUS=,
//     /healthz and the metrics), while a loop stuck on one call or one lock
//     stops the feeding and systemd kills and restarts the daemon;
//   - STATUS= when the state changes;
//   - STOPPING=1 when ctx ends (SIGTERM): calls in progress are draining.
func (o *ops) notifyLoop(ctx, loopCtx context.Context) {
	lg := o.d.log.With().Str("component", "systemd").Logger()
	send := func(state string) {
		if _, err := o.o.notify(state); err != nil {
			lg.Debug().Err(err).Msg("sd_notify failed")
		}
	}
	wd, err := o.o.watchdog()
	if err != nil {
		lg.Warn().Err(err).Msg("WATCHDOG_USEC unusable; watchdog not fed")
		wd = 0
	}
	interval := o.o.statusInt
	if wd > 0 && wd/4 < interval {
		interval = wd / 4
	}
	var (
		ready, stopping, stalled bool
		lastStatus               string
		lastFeed, lastExtend     time.Time
	)
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-loopCtx.Done():
			return
		case <-ctx.Done():
			if !stopping {
				stopping = true
				lastStatus = fmt.Sprintf("stopping: %d calls in progress draining", o.d.cell.InFlight())
				send("STOPPING=1\nSTATUS=" + lastStatus)
			}
		case <-tick.C:
		}
		now := time.Now()
		var msgs []string
		if !stopping {
			rep := o.health.Check(loopCtx)
			if !ready && rep.Ready() {
				ready = true
				msgs = append(msgs, "READY=1")
				lg.Info().Msg("ready: Redis and AMI up")
			}
			if st := sdStatus(rep, ready); st != lastStatus {
				lastStatus = st
				msgs = append(msgs, "STATUS="+st)
			}
			if !ready && now.Sub(lastExtend) >= startExtendEvery {
				lastExtend = now
				msgs = append(msgs, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", (3*startExtendEvery).Microseconds()))
			}
		}
		if wd > 0 && now.Sub(lastFeed) >= wd/2-wd/10 {
			// While draining after SIGTERM the loops have stopped on
			// purpose; TimeoutStopSec bounds the drain.
			stuck := ""
			if !stopping {
				stuck = o.loopsAlive(now, max(wd/2, minLoopStall))
			}
			switch {
			case stuck == "":
				lastFeed = now
				msgs = append(msgs, "WATCHDOG=1")
				if stalled {
					stalled = false
					lg.Info().Msg("main loops going round again; watchdog fed")
				}
			case !stalled:
				stalled = true
				lg.Error().Str("loop", stuck).Dur("watchdog", wd).Msg("a main loop has not gone round: watchdog no longer fed, systemd will restart the daemon")
			}
		}
		if len(msgs) > 0 {
			send(strings.Join(msgs, "\n"))
		}
		next := interval
		if !ready && !stopping && o.o.readyPoll < next {
			next = o.o.readyPoll
		}
		if stopping {
			ctx = context.Background() // STOPPING=1 sent once; keep feeding the watchdog while draining
		}
		tick.Reset(next)
	}
}

// minLoopStall is the shortest silence of a main loop taken for a hang: a
// loop may legitimately spend a few seconds on one round (a blocking read
// of one second, a Redis dial timing out with retries), whatever
// WatchdogSec says.
const minLoopStall = 5 * time.Second

// startExtendEvery is how often a start still waiting for Redis or AMI
// extends systemd's start timeout (by three times as much).
const startExtendEvery = 10 * time.Second

// loopsAlive names the first main loop that has not gone round within
// limit, or "" when all have.
func (o *ops) loopsAlive(now time.Time, limit time.Duration) string {
	loops := o.o.loops
	if loops == nil {
		loops = map[string]func() time.Time{
			"claim loop":          o.d.cell.LastRound,
			"confirmation reader": o.d.router.LastRound,
			"heartbeat":           o.d.beat.LastRound,
		}
	}
	for name, last := range loops {
		if now.Sub(last()) > limit {
			return name
		}
	}
	return ""
}

func sdStatus(rep httpapi.Report, ready bool) string {
	if rep.OK() {
		return fmt.Sprintf("claiming; %d/%d calls in progress", rep.InFlight, rep.Threads)
	}
	prefix := "degraded: "
	if !ready {
		prefix = "waiting for Redis and AMI: "
	}
	return prefix + strings.Join(rep.Reasons, "; ")
}
