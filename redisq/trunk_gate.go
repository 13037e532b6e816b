package redisq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTrunkChannelPoll is how often a gate whose trunk is full asks again
// when no local Release woke it: another daemon's release is not announced
// (Redis pub/sub would be one more connection per daemon and one more thing
// to fail), so a full trunk costs a daemon 20 scripts a second, and a slot
// another host frees is used within 50 ms.
const DefaultTrunkChannelPoll = 50 * time.Millisecond

// ErrTrunkGateStopped is Acquire's error once the gate's Run has returned.
var ErrTrunkGateStopped = errors.New("trunk gate stopped")

// ErrBreakerNotClosed is AcquireUnlessOpen's error when the breaker it
// peeked is open or half-open: nothing was taken.
var ErrBreakerNotClosed = errors.New("trunk breaker not closed")

// TrunkGate is one daemon's single waiter on a trunk: the daemon's calls
// queue in it, in order, and one goroutine (Run) takes them through the
// limiter one at a time, sleeping exactly what a refusal says. So a daemon
// asks Redis at most once per token interval while waiting, however many
// calls wait, and no call polls. It also knows the leases the daemon holds,
// so the heartbeat renews them all with one call (Renew).
type TrunkGate struct {
	lim     *TrunkLimiter
	reqs    chan *gateReq
	freed   chan struct{} // a local Release: a slot may be free
	stopped chan struct{}
	poll    atomic.Int64 // time.Duration
	queued  atomic.Int64

	mu   sync.Mutex
	held map[string]uint64 // leases granted or adopted, not released → when taken
	gen  uint64
}

type gateReq struct {
	ctx     context.Context
	lease   string
	breaker string        // peeked breaker key ("" : none)
	done    chan gateResp // buffered: the waiter never blocks on a caller

	mu        sync.Mutex
	gone      bool // the caller left: a grant must be released
	delivered bool // a response is in done
}

type gateResp struct {
	g   TrunkGrant
	err error
}

// NewTrunkGate builds the gate of one daemon on the limiter's trunk; start
// its Run.
func NewTrunkGate(lim *TrunkLimiter) *TrunkGate {
	g := &TrunkGate{
		lim:     lim,
		reqs:    make(chan *gateReq),
		freed:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		held:    map[string]uint64{},
	}
	g.poll.Store(int64(DefaultTrunkChannelPoll))
	return g
}

// SetChannelPoll changes DefaultTrunkChannelPoll (tests).
func (g *TrunkGate) SetChannelPoll(d time.Duration) {
	if d > 0 {
		g.poll.Store(int64(d))
	}
}

// Limiter is the gate's limiter.
func (g *TrunkGate) Limiter() *TrunkLimiter { return g.lim }

// Queued is the number of calls waiting in the gate now (for the claim
// loop's "can the trunk dial what I would claim" and the monitor).
func (g *TrunkGate) Queued() int { return int(g.queued.Load()) }

// Acquire waits its turn, then until the trunk grants lease a slot and a
// token. It returns a grant, or an error with nothing held: ctx's error
// when ctx ends first (the caller's ring-time budget), the limiter's when
// Redis fails, ErrTrunkGateStopped after Run returned.
func (g *TrunkGate) Acquire(ctx context.Context, lease string) (TrunkGrant, error) {
	return g.acquire(ctx, lease, "")
}

// AcquireUnlessOpen is Acquire that gives up with ErrBreakerNotClosed,
// taking nothing, when the breaker stored at breakerKey is open or
// half-open (TrunkLimiter.AcquireUnlessOpen): the caller then asks the
// breaker itself.
func (g *TrunkGate) AcquireUnlessOpen(ctx context.Context, lease, breakerKey string) (TrunkGrant, error) {
	return g.acquire(ctx, lease, breakerKey)
}

// reserveAhead is how far ahead the gate reserves a token instead of
// being refused: the grant comes back with the token's turn, and the
// caller waits for it on its own. A saturated trunk then costs one round
// trip per Originate, not a refusal, a sleep and another try, and the
// turn is kept by a local timer instead of by a round trip's timing.
const reserveAhead = 20 * time.Millisecond

// acquire is acquireGrant, then the wait for a reserved token's turn.
func (g *TrunkGate) acquire(ctx context.Context, lease, breakerKey string) (TrunkGrant, error) {
	gr, err := g.acquireGrant(ctx, lease, breakerKey)
	if err != nil || gr.Delay <= 0 {
		return gr, err
	}
	// The turn is Delay after Redis decided; the reply took some of it,
	// so waiting all of it errs on the late side, never the early one.
	gr.At = gr.At.Add(gr.Delay)
	t := time.NewTimer(gr.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return gr, nil
	case <-ctx.Done():
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return TrunkGrant{}, errors.Join(ctx.Err(), g.Release(rctx, lease))
}

func (g *TrunkGate) acquireGrant(ctx context.Context, lease, breakerKey string) (TrunkGrant, error) {
	// Nobody waits: ask Redis on the caller's goroutine, so that calls
	// finding room do not queue behind the waiter's round trips one by one
	// (which capped a busy daemon at a few thousand calls a second). A
	// refusal joins the queue, in order from then on.
	if g.queued.Load() == 0 {
		gr, done, err := g.tryDirect(ctx, lease, breakerKey)
		if done {
			return gr, err
		}
	}
	g.queued.Add(1)
	defer g.queued.Add(-1)
	r := &gateReq{ctx: ctx, lease: lease, breaker: breakerKey, done: make(chan gateResp, 1)}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return TrunkGrant{}, ctx.Err()
	case <-g.stopped:
		return TrunkGrant{}, ErrTrunkGateStopped
	}
	select {
	case resp := <-r.done:
		return resp.g, resp.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	if !r.delivered {
		r.gone = true // the waiter releases what it may still get
		r.mu.Unlock()
		return TrunkGrant{}, ctx.Err()
	}
	r.mu.Unlock()
	// Granted as ctx ended: the caller will not dial, give the slot back.
	if resp := <-r.done; resp.err == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := g.Release(rctx, lease); err != nil {
			return TrunkGrant{}, errors.Join(ctx.Err(), err)
		}
	}
	return TrunkGrant{}, ctx.Err()
}

// tryDirect is one Acquire on the caller's goroutine. done is false when
// the caller should wait in the queue (a refusal for want of a token or a
// channel). Like the waiter, it runs the script on a context the caller
// cannot cut short: a script cut off may have granted.
func (g *TrunkGate) tryDirect(ctx context.Context, lease, breakerKey string) (TrunkGrant, bool, error) {
	select {
	case <-g.stopped:
		return TrunkGrant{}, true, ErrTrunkGateStopped
	default:
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	gr, err := g.lim.acquire(rctx, lease, breakerKey, reserveAhead)
	cancel()
	switch {
	case err != nil:
		return TrunkGrant{}, true, err
	case gr.OK:
		if lease != "" {
			g.mu.Lock()
			g.hold(lease)
			g.mu.Unlock()
		}
		if ctx.Err() != nil { // the caller left meanwhile: it will not dial
			relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return TrunkGrant{}, true, errors.Join(ctx.Err(), g.Release(relCtx, lease))
		}
		return gr, true, nil
	case gr.Refused == TrunkBreaker:
		return gr, true, ErrBreakerNotClosed
	}
	return TrunkGrant{}, false, nil
}

// Held is the number of leases the daemon holds on the trunk.
func (g *TrunkGate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// Release gives back leases' slots and wakes the waiter, which may be
// waiting for one.
func (g *TrunkGate) Release(ctx context.Context, leases ...string) error {
	g.mu.Lock()
	for _, l := range leases {
		delete(g.held, l)
	}
	g.mu.Unlock()
	err := g.lim.Release(ctx, leases...)
	select {
	case g.freed <- struct{}{}:
	default:
	}
	return err
}

// Renew extends every lease the daemon holds: the heartbeat calls it every
// DefaultTrunkRenewEvery. It returns the leases Redis no longer had (the
// daemon was cut off longer than the lease TTL): they are forgotten, and
// their calls go on over the cap until they end; the caller logs them. A
// lease released while the renewal was on its way is not reported, nor one
// released and taken again (another attempt of its call) meanwhile.
func (g *TrunkGate) Renew(ctx context.Context) (lost []string, err error) {
	g.mu.Lock()
	snap := make(map[string]uint64, len(g.held))
	leases := make([]string, 0, len(g.held))
	for l, gen := range g.held {
		snap[l] = gen
		leases = append(leases, l)
	}
	g.mu.Unlock()
	gone, err := g.lim.Renew(ctx, leases)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range gone {
		if gen, ok := g.held[l]; ok && gen == snap[l] {
			delete(g.held, l)
			lost = append(lost, l)
		}
	}
	return lost, err
}

// hold records leases as held (g.mu held).
func (g *TrunkGate) hold(leases ...string) {
	for _, l := range leases {
		g.gen++
		g.held[l] = g.gen
	}
}

// Adopt takes over leases of calls recovery adopted (TrunkLimiter.Adopt),
// and renews them from then on.
func (g *TrunkGate) Adopt(ctx context.Context, leases ...string) error {
	if err := g.lim.Adopt(ctx, leases); err != nil {
		return err
	}
	g.mu.Lock()
	g.hold(leases...)
	g.mu.Unlock()
	return nil
}

// Run is the waiter; it returns when ctx ends. Redis calls use ctx, not the
// caller's: a script cut off by the caller's deadline may have granted, and
// its slot would then stay taken until its lease expired.
func (g *TrunkGate) Run(ctx context.Context) error {
	defer close(g.stopped)
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-g.reqs:
			g.serve(ctx, r)
		}
	}
}

// gateBatch bounds the requests one script serves: at cps 5,000 the
// reserve-ahead window holds about 100 tokens, and 64 leases keep one
// script short on Redis's single thread.
const gateBatch = 64

// gateCoalesce is how much later than the refusal's wait the waiter asks
// again for want of a token. Back exactly when one token fits in the
// reserve-ahead window, a saturated trunk would grant one token (and
// refuse the next) per script, one round trip per Originate again; half a
// window later, the script grants half a window's worth (50 at cps 5,000).
// No token's turn is later for it: each is still granted reserveAhead −
// gateCoalesce before its turn, more than a round trip, and the caller
// waits for the turn on its own.
const gateCoalesce = reserveAhead / 2

// serve takes r, and the requests that queue behind it while it is
// served, each to a grant, an error, or its caller's departure. The
// requests waiting at a moment go through the limiter together, in order,
// in one script (TrunkLimiter.acquireN): on a saturated trunk every call
// the reserve-ahead window can grant is granted in one round trip, not one
// round trip each. Those the script did not grant keep their place at the
// head, and are asked again after the refusal's wait.
func (g *TrunkGate) serve(ctx context.Context, r *gateReq) {
	fifo := []*gateReq{r}
	for {
		if ctx.Err() != nil {
			for _, q := range fifo {
				g.deliver(ctx, q, gateResp{err: ErrTrunkGateStopped})
			}
			return
		}
		// Take what queued meanwhile, without waiting: those callers are
		// blocked sending, so their order is the queue's.
	take:
		for len(fifo) < gateBatch {
			select {
			case q := <-g.reqs:
				fifo = append(fifo, q)
			default:
				break take
			}
		}
		live := fifo[:0]
		for _, q := range fifo {
			if q.ctx.Err() != nil {
				g.deliver(ctx, q, gateResp{err: q.ctx.Err()})
				continue
			}
			live = append(live, q)
		}
		clear(fifo[len(live):])
		if fifo = live; len(fifo) == 0 {
			return
		}
		// One script peeks one breaker: the batch is the leading run of
		// requests with the head's.
		n := 1
		for n < len(fifo) && fifo[n].breaker == fifo[0].breaker {
			n++
		}
		leases := make([]string, n)
		for i, q := range fifo[:n] {
			leases[i] = q.lease
		}
		gs, err := g.lim.acquireN(ctx, leases, fifo[0].breaker, reserveAhead)
		if err != nil {
			// Every request of the batch was in the failed script; each
			// would have had its own failure one after another.
			if ctx.Err() != nil {
				err = fmt.Errorf("%w: %w", ErrTrunkGateStopped, err)
			}
			for _, q := range fifo[:n] {
				g.deliver(ctx, q, gateResp{err: err})
			}
			fifo = slices.Delete(fifo, 0, n)
			continue
		}
		// Grants and breaker refusals are answers; a refusal for want of
		// a token or a channel is the script's last answer and took
		// nothing, nor did the requests after it.
		var refusal *TrunkGrant
		answered := 0
	answers:
		for i := range gs {
			switch gr := gs[i]; {
			case gr.OK:
				g.deliver(ctx, fifo[i], gateResp{g: gr})
			case gr.Refused == TrunkBreaker:
				g.deliver(ctx, fifo[i], gateResp{err: ErrBreakerNotClosed})
			default:
				refusal = &gs[i]
				break answers
			}
			answered++
		}
		fifo = slices.Delete(fifo, 0, answered)
		if refusal == nil {
			continue
		}
		var wake <-chan struct{}
		wait := refusal.Wait
		switch refusal.Refused {
		case TrunkNoChannel:
			wake, wait = g.freed, min(wait, time.Duration(g.poll.Load()))
		case TrunkNoToken:
			wait += gateCoalesce
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-t.C:
		case <-wake:
		case <-fifo[0].ctx.Done():
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// deliver hands the response over, or releases a grant nobody waits for.
func (g *TrunkGate) deliver(ctx context.Context, r *gateReq, resp gateResp) {
	r.mu.Lock()
	if !r.gone {
		if resp.err == nil && r.lease != "" {
			g.mu.Lock()
			g.hold(r.lease)
			g.mu.Unlock()
		}
		r.delivered = true
		r.done <- resp
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	if resp.err == nil && r.lease != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = g.lim.Release(rctx, r.lease) // failing, the lease expires unrenewed
	}
}
