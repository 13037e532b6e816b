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
		Ping: func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() },
		Cell: cell,
		AMI:  d.amic,
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
//   - READY=1 once Redis and AMI are up (until then STATUS= says what is
//     awaited);
//   - WATCHDOG=1 every half of WatchdogSec while the daemon is alive. It is
//     fed during Redis or AMI outages too: the daemon is working as designed
//     then (waiting, not claiming), a restart would not bring Asterisk back,
//     and a restart while Redis is down ends with exit status 2 (Redis
//     unreachable at start), which RestartPreventExitStatus=2 never restarts.
//     Outages show in STATUS=, /healthz and the metrics instead;
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
	if wd > 0 && wd/2 < interval {
		interval = wd / 2
	}
	var (
		ready, stopping bool
		lastStatus      string
		lastFeed        time.Time
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
		}
		if wd > 0 && now.Sub(lastFeed) >= wd/2-wd/10 {
			lastFeed = now
			msgs = append(msgs, "WATCHDOG=1")
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
