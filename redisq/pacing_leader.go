package redisq

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// The pacer of a cell: every daemon of a paced cell runs one, and the one
// holding P:{C}:pacing:leader decides. Every PacerEvery it looks at the
// cell (pacing_observe.go), runs bridge.Pace — the same code the
// call-center simulation runs — and writes the budget and the state of
// contract section 6 into P:{C}:pacing. The others only renew their bid;
// when the leader dies its lease expires and one of them takes over, with
// the controller's state read back from the hash.

// Pacer timings.
const (
	PacerEvery       = time.Second
	PacerLeaseTTL    = 5 * time.Second
	pacingStateTTL   = 24 * time.Hour // P:{C}:pacing outlives a pause, not a campaign
	pacerReadTimeout = 3 * time.Second
)

// PacerOptions configure a Pacer.
type PacerOptions struct {
	Instance string
	Settings bridge.PacingSettings
	Location *time.Location // the day of the daily abandon rate; nil = UTC
	// OnChange hears each change of leadership or of why the cell dials
	// nothing (reason "" = it may dial): one log line per change.
	OnChange func(leader bool, nothing string)
	// OnError hears a failed round's error, or nil when a round succeeds
	// again after failures (one log line per change).
	OnError func(err error)
}

// PacerView is the last decision this daemon's pacer made (zero when it
// is not the leader).
type PacerView struct {
	Leader      bool
	Observation bridge.PacingObservation
	Decision    bridge.PacingDecision
	Nothing     string // why the cell dials nothing, "" when it may dial
	At          time.Time
}

// Pacer is one daemon's bid to pace its cell.
type Pacer struct {
	rdb  redis.Cmdable
	keys PacingKeys
	opt  PacerOptions

	leader  bool
	state   bridge.PacerState
	meas    pacingMeasure
	nothing string

	mu   sync.Mutex
	view PacerView
}

// NewPacer returns the pacer of instance for the cell of k.
func NewPacer(rdb redis.Cmdable, k Keys, opt PacerOptions) *Pacer {
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	if opt.OnChange == nil {
		opt.OnChange = func(bool, string) {}
	}
	if opt.OnError == nil {
		opt.OnError = func(error) {}
	}
	return &Pacer{rdb: rdb, keys: NewPacingKeys(k), opt: opt}
}

// View is the pacer's last decision.
func (p *Pacer) View() PacerView {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view
}

// Run paces every PacerEvery until ctx ends; it then gives up the lease.
func (p *Pacer) Run(ctx context.Context) error {
	t := time.NewTicker(PacerEvery)
	defer t.Stop()
	failing := false
	for {
		sctx, cancel := context.WithTimeout(ctx, pacerReadTimeout)
		// An error leaves the budget to go stale: the cell then dials
		// nothing, and the admission says so.
		err := p.Step(sctx)
		cancel()
		if (err != nil) != failing && ctx.Err() == nil {
			failing = err != nil
			p.opt.OnError(err)
		}
		select {
		case <-ctx.Done():
			if p.leader {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				_ = acdReleaseScript.Run(rctx, p.rdb, []string{p.keys.Leader()}, p.opt.Instance).Err()
				cancel()
			}
			return nil
		case <-t.C:
		}
	}
}

// Step bids for the lease and, when it holds it, decides once.
func (p *Pacer) Step(ctx context.Context) error {
	n, err := acdLeaseScript.Run(ctx, p.rdb, []string{p.keys.Leader()}, p.opt.Instance, PacerLeaseTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("pacer lease: %w", err)
	}
	lead := n == 1
	if lead != p.leader {
		p.leader = lead
		if lead {
			p.takeOver(ctx)
		}
		p.opt.OnChange(lead, p.nothing)
	}
	if !lead {
		p.mu.Lock()
		p.view = PacerView{}
		p.mu.Unlock()
		return nil
	}
	day := time.Now().In(p.opt.Location).Format(time.DateOnly)
	r, err := p.read(ctx, day)
	if err != nil {
		return err
	}
	p.meas.absorb(r.log, r.now, p.opt.Settings.Window)
	o := p.observe(r)
	var d bridge.PacingDecision
	nothing := ""
	switch {
	case !r.qmRunning:
		nothing = "the queue manager is not running (no lease " + ACDKey(p.keys.k.Prefix(), p.keys.k.Cell(), "lease") + "): dialing nothing"
	case r.floorErr != nil:
		nothing = "the operators' state is unreadable: " + r.floorErr.Error() + ": dialing nothing"
	default:
		p.state, d = bridge.Pace(p.opt.Settings, p.state, o)
		if d.Budget == 0 && o.LoggedIn() == 0 {
			nothing = "no operator logged in: dialing nothing"
		}
	}
	if nothing != "" {
		d = bridge.PacingDecision{Reason: nothing}
	}
	changed := nothing != p.nothing
	p.nothing = nothing
	if err := p.publish(ctx, o, d); err != nil {
		return err
	}
	if changed {
		p.opt.OnChange(true, nothing)
	}
	p.mu.Lock()
	p.view = PacerView{Leader: true, Observation: o, Decision: d, Nothing: nothing, At: r.now}
	p.mu.Unlock()
	return nil
}

// takeOver starts a new leadership: the controller's state from the hash
// (the previous leader's), the log from the start of the window.
func (p *Pacer) takeOver(ctx context.Context) {
	p.meas = pacingMeasure{}
	p.state = bridge.PacerState{}
	if s, err := p.rdb.HGet(ctx, p.keys.State(), "state").Result(); err == nil {
		var st bridge.PacerState
		if json.Unmarshal([]byte(s), &st) == nil {
			p.state = st
		}
	}
}

// pacingPublishScript writes the decision if the lease is still ours.
//
//	KEYS[1] pacing   KEYS[2] leader   ARGV[1] instance   ARGV[2] TTL s
//	ARGV[3…] field, value, …
//
// budget_us is Redis TIME: the admission refuses a budget that grew old.
var pacingPublishScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'budget_us', string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])), unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
`)

func (p *Pacer) publish(ctx context.Context, o bridge.PacingObservation, d bridge.PacingDecision) error {
	st, _ := json.Marshal(p.state)
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
	args := []any{p.opt.Instance, int64(pacingStateTTL / time.Second),
		"mode", string(p.opt.Settings.Mode),
		"level", f(d.Level),
		"available", o.Available, "busy", o.Busy, "ringing", o.Ringing,
		"waiting", o.Waiting, "dialing", o.Dialing,
		"answer_rate", f(o.AnswerRate),
		"abandon_rate_window", f(o.AbandonRateWindow),
		"abandon_rate_day", f(o.AbandonRateDay),
		"updated_at", bridge.FormatTime(o.Now),
		"budget", d.Budget, "obs_ms", o.Now.UnixMilli(),
		"reason", d.Reason, "nothing", p.nothing, "hard_limit", boolArg(d.HardLimit),
		"leader", p.opt.Instance, "state", string(st),
		"answered_window", o.AnsweredWindow, "answered_day", o.AnsweredDay,
	}
	n, err := pacingPublishScript.Run(ctx, p.rdb, []string{p.keys.State(), p.keys.Leader()}, args...).Int()
	if err != nil {
		return fmt.Errorf("publishing the pacing budget: %w", err)
	}
	if n == 0 {
		p.leader = false
		p.opt.OnChange(false, p.nothing)
	}
	return nil
}

// PacingState reads P:{C}:pacing (the monitor, tests); empty when no pacer
// ever wrote it.
func PacingState(ctx context.Context, rdb redis.Cmdable, k Keys) (map[string]string, error) {
	m, err := rdb.HGetAll(ctx, NewPacingKeys(k).State()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", NewPacingKeys(k).State(), err)
	}
	return m, nil
}
