package redisq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/retry"
)

// TrunkUse is one daemon's use of one trunk for one cell (contract section
// 7): it is the cell's bridge.DialGate (the breaker, then the trunk's rate
// token and channel slot, right before each Originate) and its
// bridge.Admission (claim no more than the trunk can dial within about a
// second, nothing while the host's breaker is open).
type TrunkUse struct {
	name   string
	cell   string
	gate   *TrunkGate // nil: the trunk has neither cps nor max_channels
	limits TrunkLimits
	brk    *BreakerStore
	bcfg   bridge.BreakerConfig
	log    zerolog.Logger
	wake   chan struct{}

	mu sync.Mutex
	// pending: commands admitted and claimed (or about to be) that have
	// not yet passed Enter nor been released: what this daemon will ask
	// the trunk for soon.
	pending int
	// entered: calls that passed Enter at least once (pending no longer
	// counts them), and what the current attempt holds.
	entered map[*bridge.Call]*trunkHold
	// toRelease feeds releaseLoop: the slots of ended calls go back in
	// batches, off the call path
	toRelease chan string
	running   atomic.Bool // releaseLoop reads toRelease
	// the trunk's usage as last read, and when (see usage)
	lastUse   TrunkUsage
	lastUseAt time.Time

	onGrant func(TrunkGrant) // tests and benchmarks: every grant, on Redis's clock

	state    atomic.Pointer[bridge.BreakerState] // last state read or written
	brkErr   atomic.Pointer[string]              // last breaker read error ("" when fine)
	lastMode atomic.Pointer[bridge.BreakerMode]  // for one log line per change seen here
}

// trunkHold is what one attempt of a call holds on the trunk.
type trunkHold struct {
	lease  string // "" when the attempt holds no slot (between attempts)
	token  string // the breaker token: the lease id
	probe  bool
	inside bool // Enter succeeded and Exit has not come yet
}

// TrunkUseOptions build a TrunkUse.
type TrunkUseOptions struct {
	Cell    string
	Trunk   string
	Limits  TrunkLimits
	Breaker bridge.BreakerConfig
	Host    string // the breaker's host: every daemon of the host shares it
}

// NewTrunkUse builds the trunk's gate and breaker for a cell's daemon. Run
// must run while the cell does.
func NewTrunkUse(rdb redis.UniversalClient, prefix string, o TrunkUseOptions, log zerolog.Logger) (*TrunkUse, error) {
	u := &TrunkUse{
		name: o.Trunk, cell: o.Cell, limits: o.Limits, bcfg: o.Breaker,
		brk:       NewBreakerStore(rdb, prefix, o.Trunk, o.Host, o.Breaker),
		log:       log.With().Str("trunk", o.Trunk).Logger(),
		wake:      make(chan struct{}, 1),
		entered:   map[*bridge.Call]*trunkHold{},
		toRelease: make(chan string, releaseQueue),
	}
	if o.Limits.CPS > 0 || o.Limits.MaxChannels > 0 {
		lim, err := NewTrunkLimiter(rdb, prefix, o.Trunk, o.Limits)
		if err != nil {
			return nil, err
		}
		u.gate = NewTrunkGate(lim)
	}
	u.state.Store(&bridge.BreakerState{Mode: bridge.BreakerClosed})
	empty := ""
	u.brkErr.Store(&empty)
	closed := bridge.BreakerClosed
	u.lastMode.Store(&closed)
	return u, nil
}

// OnGrant makes f hear of every token and slot granted to this daemon
// (tests and benchmarks compare the grants' Redis times with the wire);
// call it before Run. f must not block.
func (u *TrunkUse) OnGrant(f func(TrunkGrant)) { u.onGrant = f }

// Name is the trunk's name.
func (u *TrunkUse) Name() string { return u.name }

// Gate is the trunk's gate (nil without limits): the heartbeat's renewal
// and recovery's adoption of leases go through it.
func (u *TrunkUse) Gate() *TrunkGate { return u.gate }

// Breaker is the host's breaker on the trunk.
func (u *TrunkUse) Breaker() *BreakerStore { return u.brk }

// BreakerState is the breaker as last seen (refreshed every second by Run),
// as it stands now.
func (u *TrunkUse) BreakerState() bridge.BreakerState {
	return u.bcfg.View(*u.state.Load(), time.Now())
}

// BreakerErr is the last error reading the breaker ("" when none).
func (u *TrunkUse) BreakerErr() string { return *u.brkErr.Load() }

// LeaseID is the channel lease of a call: one per command of a cell.
func (u *TrunkUse) LeaseID(id string) string { return u.cell + ":" + id }

// trunkRefresh is how often Run reads the breaker, renews leases at
// DefaultTrunkRenewEvery.
const trunkRefresh = time.Second

// Run serves the gate, renews the leases this daemon holds and keeps the
// breaker's state fresh, until ctx ends.
func (u *TrunkUse) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if u.gate != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = u.gate.Run(ctx) }()
		wg.Add(1)
		go func() { defer wg.Done(); u.releaseLoop(ctx) }()
	}
	defer wg.Wait()
	refresh := time.NewTicker(trunkRefresh)
	defer refresh.Stop()
	renew := time.NewTicker(DefaultTrunkRenewEvery)
	defer renew.Stop()
	u.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C:
			u.refresh(ctx)
		case <-renew.C:
			if u.gate == nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			lost, err := u.gate.Renew(rctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				u.log.Warn().Err(err).Msg("trunk leases not renewed; retrying")
			}
			if len(lost) > 0 {
				u.log.Warn().Strs("leases", lost).Msg("trunk leases expired while we were cut off: those calls go on over max_channels until they end")
			}
		}
	}
}

// refresh reads the breaker's state.
func (u *TrunkUse) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := u.brk.State(rctx)
	if err != nil {
		if ctx.Err() == nil {
			msg := err.Error()
			u.brkErr.Store(&msg)
		}
		return
	}
	empty := ""
	u.brkErr.Store(&empty)
	u.observe(st)
}

// observe stores a state read or written and logs a change of mode seen by
// this daemon (one line per change: Allow and Record report the change to
// the daemon that made it, and a change made elsewhere is seen here once).
func (u *TrunkUse) observe(st bridge.BreakerState) {
	u.state.Store(&st)
	mode := u.bcfg.View(st, time.Now()).Mode
	prev := u.lastMode.Swap(&mode)
	if *prev == mode {
		return
	}
	ev := u.log.Warn()
	if mode == bridge.BreakerClosed {
		ev = u.log.Info()
	}
	ev = ev.Str("from", string(*prev)).Str("to", string(mode)).Int("failures", st.Failures)
	if at := st.RetryAt(); !at.IsZero() {
		ev = ev.Time("retry_at", at)
	}
	ev.Msg("trunk breaker changed")
	if mode != bridge.BreakerOpen {
		u.signal()
	}
}

func (u *TrunkUse) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// admitHorizon is how far ahead a daemon claims for its trunk (contract
// section 7: "does not claim what its trunk cannot dial within about a
// second").
const admitHorizon = time.Second

// Admit implements bridge.Admission: nothing while the breaker is open (one
// call when it is half-open: the probe), and no more than the trunk can
// dial within admitHorizon, less what this daemon already has waiting.
func (u *TrunkUse) Admit(ctx context.Context, want int) (int, error) {
	st := u.BreakerState()
	switch st.Mode {
	case bridge.BreakerOpen:
		return 0, nil
	case bridge.BreakerHalfOpen:
		// One call only, the probe: none while one is out, nor while a
		// command claimed earlier has not reached Enter (it may take the
		// probe; claimed beside it, the others would end "breaker open").
		u.mu.Lock()
		waiting := u.pending
		u.mu.Unlock()
		if st.Probe != "" || waiting > 0 {
			return 0, nil
		}
		want = min(want, 1)
	}
	n := want
	if u.gate != nil {
		use, err := u.usage(ctx)
		if err != nil {
			return 0, err
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.limits.CPS > 0 {
			left := admitHorizon - use.Ahead
			tokens := int(math.Floor(u.limits.CPS*left.Seconds())) + max(1, u.limits.Burst)
			n = min(n, tokens-u.pending)
		}
		if u.limits.MaxChannels > 0 {
			n = min(n, u.limits.MaxChannels-use.Channels-u.pending)
		}
		n = max(0, n)
		u.pending += n
		return n, nil
	}
	u.mu.Lock()
	u.pending += n
	u.mu.Unlock()
	return n, nil
}

// usageTTL is how long Admit trusts the trunk's usage it read last: a
// claim loop draining a backlog at a thousand calls a second then asks
// Redis 50 times a second, not once per claim. What it misses in 20 ms
// (another daemon's grants) costs at most 20 ms of tokens of look-ahead;
// the token itself is always taken in Redis.
const usageTTL = 20 * time.Millisecond

// usage reads the trunk's usage, or reuses the last reading while it is
// fresh (its Ahead less the time passed since).
func (u *TrunkUse) usage(ctx context.Context) (TrunkUsage, error) {
	u.mu.Lock()
	last, at := u.lastUse, u.lastUseAt
	u.mu.Unlock()
	if age := time.Since(at); !at.IsZero() && age < usageTTL {
		last.Ahead = max(0, last.Ahead-age)
		return last, nil
	}
	use, err := u.gate.Limiter().Usage(ctx)
	if err != nil {
		return use, err
	}
	u.mu.Lock()
	u.lastUse, u.lastUseAt = use, time.Now()
	u.mu.Unlock()
	return use, nil
}

// Unused implements bridge.Admission.
func (u *TrunkUse) Unused(n int) {
	u.mu.Lock()
	u.pending = max(0, u.pending-n)
	u.mu.Unlock()
	u.signal()
}

// Release implements bridge.Admission: a call answered or settled. A call
// that passed Enter left pending then.
func (u *TrunkUse) Release(call *bridge.Call) {
	u.mu.Lock()
	h, ok := u.entered[call]
	switch {
	case call == nil || !ok:
		u.pending = max(0, u.pending-1)
	case !h.inside:
		delete(u.entered, call)
	}
	u.mu.Unlock()
	u.signal()
}

// Wake implements bridge.Admission.
func (u *TrunkUse) Wake() <-chan struct{} { return u.wake }

// Enter implements bridge.DialGate: the host's breaker (a call that finds
// it half-open is the probe), then the trunk's slot and token, waited for
// until deadline. Nothing but a local look at the breaker comes between
// the token and the Originate, so that the spacing holds at the AMI wire;
// that look stops a call that waited for its token while the breaker
// opened (the token is simply not used).
func (u *TrunkUse) Enter(ctx context.Context, call *bridge.Call, deadline time.Time) error {
	id := u.LeaseID(call.Cmd.ID)
	h := &trunkHold{token: id}
	// While the breaker is closed, as far as this daemon knows, the token's
	// script peeks at it: one round trip per Originate. Otherwise, or when
	// the peek finds it open, the breaker's own rules decide first (the
	// call may be the half-open probe).
	askBreaker := u.gate == nil || u.BreakerState().Mode != bridge.BreakerClosed
	for {
		if askBreaker {
			allow, err := retryUntil(ctx, deadline, func(ctx context.Context) (BreakerAllow, error) {
				return u.brk.Allow(ctx, id)
			})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%s: trunk %s: breaker unreadable within the ring time: %w", bridge.BreakerTrunkBusyText, u.name, err)
			}
			u.observe(allow.To)
			if !allow.Allow {
				return u.openError(allow.To)
			}
			h.probe = allow.Probe
		}
		if u.gate == nil {
			break
		}
		peek := ""
		if !askBreaker {
			peek = u.brk.Key()
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		grant, err := retryUntil(actx, deadline, func(ctx context.Context) (TrunkGrant, error) {
			return u.gate.AcquireUnlessOpen(ctx, id, peek)
		})
		cancel()
		if errors.Is(err, ErrBreakerNotClosed) {
			askBreaker = true
			continue
		}
		if err == nil && u.onGrant != nil {
			u.onGrant(grant)
		}
		if err != nil {
			if h.probe {
				u.record(bridge.BreakerEvent{Verdict: bridge.BreakerNeutral, Token: id})
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				// Redis refused or failed the limiter until the end of
				// the ring time: say what it said (a NOPERM is a
				// settings mistake a person must see).
				u.log.Warn().Err(err).Msg("trunk limiter failed")
				return fmt.Errorf("%s: trunk %s: the limiter failed within the ring time: %w", bridge.BreakerTrunkBusyText, u.name, err)
			}
			return fmt.Errorf("%s: no room on trunk %s within the ring time (cps %g, max_channels %d)", bridge.BreakerTrunkBusyText, u.name, u.limits.CPS, u.limits.MaxChannels)
		}
		h.lease = id
		if st := u.BreakerState(); !h.probe && st.Mode != bridge.BreakerClosed {
			u.releaseLease(h.lease)
			return u.openError(st)
		}
		break
	}
	h.inside = true
	u.mu.Lock()
	if _, seen := u.entered[call]; !seen {
		u.pending = max(0, u.pending-1)
	}
	u.lastUseAt = time.Time{} // our own grant: the cached usage is stale
	u.entered[call] = h
	u.mu.Unlock()
	u.signal()
	return nil
}

// openError is the error of a call the breaker keeps from dialing.
func (u *TrunkUse) openError(st bridge.BreakerState) error {
	msg := fmt.Sprintf("%s: trunk %s failed %d calls in a row on this host", bridge.BreakerOpenErrorText, u.name, st.Failures)
	if at := st.RetryAt(); !at.IsZero() {
		msg += "; it is tried again at " + at.UTC().Format(time.RFC3339)
	}
	return errors.New(msg)
}

// releaseLease gives a slot back ("" : none held).
func (u *TrunkUse) releaseLease(lease string) {
	if lease == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := u.gate.Release(ctx, lease); err != nil {
		u.log.Warn().Err(err).Str("lease", lease).Msg("trunk slot not released; it expires by itself")
	}
}

// Exit implements bridge.DialGate: the slot goes back, and the outcome is
// told to the breaker when it says something about the trunk.
func (u *TrunkUse) Exit(call *bridge.Call, fate bridge.OriginateFate, r *bridge.Result, rang bool) {
	u.mu.Lock()
	h := u.entered[call]
	if h == nil || !h.inside {
		u.mu.Unlock()
		return
	}
	h.inside = false
	if r != nil {
		delete(u.entered, call) // the call is over: Release finds nothing
	}
	u.mu.Unlock()

	u.releaseLater(h.lease)
	verdict := bridge.BreakerNeutral
	switch {
	case fate == bridge.FateRefused:
		verdict = bridge.BreakerFailure
	case r != nil:
		verdict = bridge.ClassifyBreakerOutcome(bridge.BreakerOutcomeOf(r, fate, rang))
	}
	// A success changes nothing on a closed breaker with no failures (the
	// common case): skip the round trip then.
	st := u.BreakerState()
	if verdict == bridge.BreakerNeutral && !h.probe ||
		verdict == bridge.BreakerSuccess && !h.probe && st.Mode == bridge.BreakerClosed && st.Failures == 0 {
		return
	}
	u.record(bridge.BreakerEvent{Verdict: verdict, Token: h.token, ID: h.token + ":" + strconv.Itoa(call.Attempts)})
}

// record tells the breaker an outcome.
func (u *TrunkUse) record(ev bridge.BreakerEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := u.brk.Record(ctx, ev)
	if err != nil {
		u.log.Warn().Err(err).Str("verdict", string(ev.Verdict)).Msg("trunk breaker not told the outcome")
		return
	}
	u.observe(tr.To)
}

// retryUntil runs op until it succeeds, ctx ends or deadline passes,
// backing off on errors (Redis down): a command waits for Redis within its
// ring-time budget like it waits for AMI.
func retryUntil[T any](ctx context.Context, deadline time.Time, op func(context.Context) (T, error)) (T, error) {
	var backoff time.Duration
	for {
		v, err := op(ctx)
		if err == nil || ctx.Err() != nil || !time.Now().Before(deadline) || errors.Is(err, ErrBreakerNotClosed) {
			return v, err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return v, err
		}
		backoff = retry.Next(backoff)
		if !retry.Sleep(ctx, min(backoff, time.Until(deadline))) {
			return v, err
		}
	}
}

var (
	_ bridge.Admission = (*TrunkUse)(nil)
	_ bridge.DialGate  = (*TrunkUse)(nil)
)

// Adopted implements bridge.AdoptHook: a dead daemon's live call that
// recovery adopts keeps its channel slot (contract section 2): its lease,
// named by the cell and the id like every call's, is taken over (taken
// again if it already expired) and renewed by this daemon until the call's
// result. The breaker hears nothing of adopted calls: it judges the trunk
// by the calls this host dials now.
func (u *TrunkUse) Adopted(ctx context.Context, call *bridge.Call) (release func()) {
	if u.gate == nil || call == nil || call.Cmd == nil {
		return nil
	}
	lease := u.LeaseID(call.Cmd.ID)
	if err := u.gate.Adopt(ctx, lease); err != nil {
		u.log.Warn().Err(err).Str("lease", lease).Msg("adopted call's trunk slot not taken over; the call goes on uncounted")
		return nil
	}
	return func() { u.releaseLease(lease) }
}

var _ bridge.AdoptHook = (*TrunkUse)(nil)

// releaseQueue bounds the slots waiting to go back; releaseBatch is how many
// go back in one script.
const (
	releaseQueue = 4096
	releaseBatch = 256
)

// releaseLater gives a slot back off the call path: the call's result is
// not held up by one more round trip. When the queue is full or its loop
// is not running, the slot goes back at once.
func (u *TrunkUse) releaseLater(lease string) {
	if lease == "" {
		return
	}
	if u.running.Load() {
		select {
		case u.toRelease <- lease:
			return
		default:
		}
	}
	u.releaseLease(lease)
}

// releaseLoop gives back queued slots, as many as are waiting in one
// script, until ctx ends; then it gives back what is left.
func (u *TrunkUse) releaseLoop(ctx context.Context) {
	u.running.Store(true)
	batch := make([]string, 0, releaseBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := u.gate.Release(rctx, batch...); err != nil {
			u.log.Warn().Err(err).Int("leases", len(batch)).Msg("trunk slots not released; they expire by themselves")
		}
		cancel()
		batch = batch[:0]
		u.signal()
	}
	drain := func() {
		for len(batch) < releaseBatch {
			select {
			case l := <-u.toRelease:
				batch = append(batch, l)
			default:
				return
			}
		}
	}
	for {
		select {
		case l := <-u.toRelease:
			batch = append(batch, l)
			drain()
			flush()
		case <-ctx.Done():
			u.running.Store(false)
			for {
				drain()
				if len(batch) == 0 {
					return
				}
				flush()
			}
		}
	}
}
