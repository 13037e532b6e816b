package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/internal/retry"
)

// Options of one cell's bridge.
type Options struct {
	Cell     string
	Instance string
	Threads  int // calls in progress at once, from claim to result
	// MaxDialing bounds the calls between claim and an Originate Asterisk
	// accepted (ACK, confirmation, the wait for an AMI session); 0 means
	// min(Threads, DefaultMaxDialing). Past it, commands wait in Redis,
	// where another daemon of the cell can take them and a crash costs
	// nothing, instead of as goroutines queued for AMI.
	MaxDialing int

	// Originate settings (contract section 1).
	ChannelTemplate string // contains {number}
	Context         string
	Exten           string
	Priority        int
	RingTimeout     time.Duration // when the command sets no timeout_s
	CallerID        string        // when the command sets no caller_id

	Retries    int           // attempts in all at sending one Originate
	ACKTimeout time.Duration // wait for Multcall's confirmation

	// OutcomeGrace is how long past the ring timeout we wait for the
	// OriginateResponse before calling the outcome unknown.
	OutcomeGrace time.Duration
	// HangupGrace is how long we wait for Hangup events (and their cause)
	// once the outcome is known.
	HangupGrace time.Duration
	// RetryPause is the pause before another attempt after a refusal.
	RetryPause time.Duration
	// ShutdownGrace is how long Run lets calls in progress finish after
	// its context ends; the rest stay claimed for recovery.
	ShutdownGrace time.Duration
	// RecoverEvery is the period of the recovery pass that settles the
	// commands of dead instances (see Recover); 0 means 2 s.
	RecoverEvery time.Duration

	// GatesBesideMark enters the dial gates (the trunk's token) while
	// MarkDialing is on its way instead of after it: the two round trips
	// before the Originate overlap into one. Only for a MarkDialing that
	// returns within a round trip: one that waits for replicas
	// (redis.wait_replicas) could hold the token up to wait_timeout before
	// the wire, and the spacing would not hold there.
	GatesBesideMark bool

	// PBX names the Asterisk this daemon dials through (ami.host:port).
	// Recovery adopts a dead daemon's live calls only when their hash names
	// the same PBX (the store records it when dialing); empty: never.
	PBX string
}

// DefaultMaxDialing is the default of Options.MaxDialing. It keeps AMI
// busy while a call spends up to 100 ms between claim and Originate at
// 10,000 calls/s, far beyond what one Asterisk originates.
const DefaultMaxDialing = 1000

func (o *Options) defaults() {
	if o.Threads < 1 {
		o.Threads = 1
	}
	if o.MaxDialing < 1 {
		o.MaxDialing = DefaultMaxDialing
	}
	o.MaxDialing = min(o.MaxDialing, o.Threads)
	if o.Retries < 1 {
		o.Retries = 1
	}
	if o.Priority < 1 {
		o.Priority = 1
	}
	if o.RingTimeout <= 0 {
		o.RingTimeout = 30 * time.Second
	}
	if o.ACKTimeout <= 0 {
		o.ACKTimeout = 5 * time.Second
	}
	if o.OutcomeGrace <= 0 {
		o.OutcomeGrace = 15 * time.Second
	}
	if o.HangupGrace <= 0 {
		o.HangupGrace = 3 * time.Second
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 2 * time.Second
	}
	if o.RetryPause <= 0 {
		o.RetryPause = 100 * time.Millisecond
	}
}

// Cell runs the call path of one cell: it claims commands while AMI is up
// and fewer than Threads calls are in progress, and drives each call from
// claim to its one result.
type Cell struct {
	opt      Options
	store    Store
	confirms Confirmations
	dialer   Dialer
	rec      Recovery // nil when the store cannot recover (then recovery is off)
	log      zerolog.Logger

	slots    chan struct{} // one token per call in progress
	dialing  chan struct{} // one token per call not yet originated (MaxDialing)
	inFlight atomic.Int64
	seq      atomic.Uint64
	idBase   string // unique per process: prefix of ChannelIDs and ActionIDs

	redisHealth *retry.Health
	claiming    atomic.Bool
	obs         Observer

	adm     []Admission   // limits on claiming beyond threads (admission.go)
	admWake chan struct{} // any admission's Wake
	gates   []DialGate    // passed before each Originate, in order

	// claimMu is held around each ClaimNext, so ReconcileOwn can read the
	// claimed list when no BLMOVE is in flight; held counts the claimed
	// entries our calls hold (by raw bytes: identical copies are counted).
	claimMu sync.Mutex
	heldMu  sync.Mutex
	held    map[string]int

	// lastRound is when the claim loop last went round (unix ns): the
	// systemd watchdog is fed only while it moves. Waiting for a slot, for
	// AMI or for Redis counts as going round; a loop stuck on one call or
	// one lock does not.
	lastRound atomic.Int64

	// run is shared with recovery for the calls it adopts; adoptHook is
	// told of them (adopt.go).
	run       runState
	adoptHook AdoptHook
}

// roundEvery is how often a waiting claim loop shows it is alive.
const roundEvery = time.Second

func (c *Cell) round() { c.lastRound.Store(time.Now().UnixNano()) }

// LastRound is when the claim loop last went round.
func (c *Cell) LastRound() time.Time { return time.Unix(0, c.lastRound.Load()) }

// SetObserver sets the metrics observer; call it before Run.
func (c *Cell) SetObserver(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	c.obs = o
}

// RedisUp reports whether the last Redis step of the cell succeeded.
func (c *Cell) RedisUp() bool {
	return !c.redisHealth.IsDown()
}

// NewCell builds a cell runner.
func NewCell(opt Options, store Store, confirms Confirmations, dialer Dialer, log zerolog.Logger) *Cell {
	opt.defaults()
	rec, _ := store.(Recovery)
	c := &Cell{
		opt:      opt,
		store:    store,
		confirms: confirms,
		dialer:   dialer,
		rec:      rec,
		log:      log,
		slots:    make(chan struct{}, opt.Threads),
		dialing:  make(chan struct{}, opt.MaxDialing),
		// Asterisk needs ChannelIds unique among live channels, across every
		// daemon on the PBX: instance plus start time plus a sequence.
		idBase:      "db-" + sanitizeID(opt.Instance) + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36),
		redisHealth: retry.NewHealth("redis", log),
		obs:         nopObserver{},
		held:        map[string]int{},
		admWake:     make(chan struct{}, 1),
	}
	c.round()
	return c
}

// InFlight is the number of calls in progress.
func (c *Cell) InFlight() int { return int(c.inFlight.Load()) }

// Claiming reports whether the cell is taking commands (AMI and Redis up,
// not stopping): the daemon's readiness.
func (c *Cell) Claiming() bool { return c.claiming.Load() }

// Run claims and runs calls until ctx ends, then stops claiming, lets the
// calls in progress finish for up to ShutdownGrace, and returns. Calls cut
// off by the grace period are left in the claimed list: they are settled by
// recovery, never dropped.
func (c *Cell) Run(ctx context.Context) error {
	// Calls run on their own context so that stopping claiming does not cut
	// them off; it is cancelled only when the grace period is over.
	callCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	var wg sync.WaitGroup
	c.run.set(callCtx, &wg) // adopted calls run and are waited for like ours

	// Orphans first: a requeued command was first in line, so it must be
	// back in the dial list before we claim anything.
	if _, err := c.Recover(ctx); err != nil && ctx.Err() == nil {
		c.log.Error().Err(err).Msg("recovery at start failed; retrying in the background")
	}
	recoverDone := make(chan struct{})
	go func() { defer close(recoverDone); c.recoverLoop(ctx, c.opt.RecoverEvery) }()
	defer func() { <-recoverDone }()
	wakesDone := make(chan struct{})
	go func() { defer close(wakesDone); c.forwardWakes(ctx) }()
	defer func() { <-wakesDone }()

	c.claimLoop(ctx, callCtx, &wg)
	c.claiming.Store(false)
	c.run.stop() // no call is adopted past this point: wg.Wait follows

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	n := c.InFlight()
	if n > 0 {
		c.log.Info().Int("in_flight", n).Dur("grace", c.opt.ShutdownGrace).Msg("stopping: waiting for calls in progress")
	}
	select {
	case <-done:
		return nil
	case <-time.After(c.opt.ShutdownGrace):
	}
	left := c.InFlight()
	c.log.Warn().Int("in_flight", left).Msg("grace period over: leaving calls in progress claimed for recovery")
	hardStop()
	<-done
	return nil
}

func (c *Cell) claimLoop(ctx, callCtx context.Context, wg *sync.WaitGroup) {
	var backoff time.Duration
	for {
		c.round()
		// A slot first: threads bounds calls from claim to result.
		if !c.take(ctx) {
			return
		}
		// Nothing new is claimed while AMI is down: commands stay in Redis.
		if !c.dialer.Ready() {
			c.claiming.Store(false)
			if !c.waitAMI(ctx) {
				c.giveBack()
				return
			}
		}
		if ctx.Err() != nil {
			c.giveBack()
			return
		}
		c.claiming.Store(true)
		// Pacing, the trunk, the replicas: what they hold back stays in
		// the dial list.
		if len(c.adm) > 0 && c.admit(ctx, 1) == 0 {
			c.giveBack()
			if !c.waitAdmission(ctx) {
				return
			}
			continue
		}
		// ClaimNext gets callCtx, not ctx: cancelling a BLMOVE mid-flight
		// could lose the reply of a move Redis already made. It returns
		// within about a second anyway.
		c.claimMu.Lock()
		raw, err := c.store.ClaimNext(callCtx)
		if raw != nil {
			c.hold(raw)
		}
		c.claimMu.Unlock()
		if err != nil {
			c.giveBack()
			c.unused(1)
			if callCtx.Err() != nil {
				return
			}
			c.claiming.Store(false)
			c.redisHealth.Down(err)
			backoff = retry.Next(backoff)
			if !retry.Sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		c.redisHealth.Up()
		if raw == nil {
			c.giveBack()
			c.unused(1)
			continue
		}
		adm := c.newAdmitted()
		// The BLMOVE may have been waiting when AMI went down, or when an
		// admission began to hold everything back: give the command back
		// (front of the queue, it was first) rather than hold it in memory
		// while nothing can be dialed.
		if (!c.dialer.Ready() || c.admissionHolds()) && c.unclaim(callCtx, raw) {
			c.giveBack()
			adm.release(nil)
			continue
		}
		c.start(callCtx, raw, adm, wg)
		c.claimBatch(ctx, callCtx, wg)
	}
}

// maxBatch bounds one ClaimMore.
const maxBatch = 63

// claimBatch drains a backlog: it takes the slots that are free right now
// (without waiting) and claims that many more commands in one round trip.
func (c *Cell) claimBatch(ctx, callCtx context.Context, wg *sync.WaitGroup) {
	bc, ok := c.store.(BatchClaimer)
	if !ok || ctx.Err() != nil || !c.dialer.Ready() {
		return
	}
	n := 0
	for n < maxBatch && c.tryTake() {
		n++
	}
	if n == 0 {
		return
	}
	if len(c.adm) > 0 {
		k := c.admit(ctx, n)
		for ; n > k; n-- {
			c.giveBack()
		}
		if n == 0 {
			return
		}
	}
	c.claimMu.Lock()
	more, err := bc.ClaimMore(callCtx, n)
	for _, raw := range more {
		c.hold(raw)
	}
	c.claimMu.Unlock()
	if err != nil {
		c.redisHealth.Down(err)
	}
	for _, raw := range more {
		c.start(callCtx, raw, c.newAdmitted(), wg)
	}
	for i := len(more); i < n; i++ {
		c.giveBack()
	}
	c.unused(n - len(more))
}

// start runs one claimed command on its own goroutine; the caller holds a
// slot for it and has recorded it as held.
func (c *Cell) start(callCtx context.Context, raw []byte, adm *admitted, wg *sync.WaitGroup) {
	c.obs.Claimed()
	c.inFlight.Add(1)
	wg.Add(1)
	go c.handle(callCtx, raw, adm, func() {
		c.release(raw)
		c.inFlight.Add(-1)
		<-c.slots
		wg.Done()
	})
}

// take waits for a slot and a place in the dialing window, going round
// every roundEvery while it waits.
func (c *Cell) take(ctx context.Context) bool {
	if c.tryTake() {
		return true
	}
	t := time.NewTicker(roundEvery)
	defer t.Stop()
	for {
		select {
		case c.slots <- struct{}{}:
			for {
				select {
				case c.dialing <- struct{}{}:
					return true
				case <-t.C:
					c.round()
				case <-ctx.Done():
					<-c.slots
					return false
				}
			}
		case <-t.C:
			c.round()
		case <-ctx.Done():
			return false
		}
	}
}

// waitAMI waits until AMI is ready (true) or ctx ends (false), going round
// every roundEvery: an Asterisk that is down is an outage, not a hang.
func (c *Cell) waitAMI(ctx context.Context) bool {
	for {
		wctx, cancel := context.WithTimeout(ctx, roundEvery)
		err := c.dialer.WaitReady(wctx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.round()
	}
}

// tryTake is take without waiting.
func (c *Cell) tryTake() bool {
	select {
	case c.slots <- struct{}{}:
	default:
		return false
	}
	select {
	case c.dialing <- struct{}{}:
		return true
	default:
		<-c.slots
		return false
	}
}

// giveBack returns what take took, for a command not started.
func (c *Cell) giveBack() {
	<-c.dialing
	<-c.slots
}

// persist runs a Redis step until it succeeds or ctx ends. A call never gives
// up on Redis: its result must reach Redis eventually (Redis outage), and
// the steps are idempotent so a retry after a lost reply is safe.
func (c *Cell) persist(ctx context.Context, what string, op func(context.Context) error) error {
	var backoff time.Duration
	for {
		err := op(ctx)
		if err == nil {
			c.redisHealth.Up()
			return nil
		}
		if errors.Is(err, ErrNotOwner) {
			return err // final: retrying cannot make the call ours again
		}
		if errors.Is(err, ErrNotDurable) {
			return err // Redis is up; the caller's budget decides (dial)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		c.redisHealth.Down(fmt.Errorf("%s: %w", what, err))
		backoff = retry.Next(backoff)
		if !retry.Sleep(ctx, backoff) {
			return fmt.Errorf("%s: %w", what, errors.Join(err, ctx.Err()))
		}
	}
}

// sanitizeID keeps an id safe inside an AMI header value and an Asterisk
// Uniqueid.
func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (isAlnum(byte(r)) || r == '.' || r == '_' || r == '-') {
			return r
		}
		return '_'
	}, s)
}

// Options returns the options in force (defaults applied).
func (c *Cell) Options() Options { return c.opt }

// admissionHolds reports whether an admission holds everything back now
// (Holder).
func (c *Cell) admissionHolds() bool {
	for _, a := range c.adm {
		if h, ok := a.(Holder); ok && h.Holding() {
			return true
		}
	}
	return false
}

// unclaim puts a command just claimed back at the front of the dial list.
// It reports false when the store cannot, or Redis failed: the command is
// then handled as usual (it waits for AMI up to its ring time).
func (c *Cell) unclaim(ctx context.Context, raw []byte) bool {
	if c.rec == nil {
		return false
	}
	ok, err := c.rec.Requeue(ctx, raw, "", "")
	if err != nil || !ok {
		return false
	}
	c.release(raw)
	return true
}
