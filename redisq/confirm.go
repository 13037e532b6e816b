package redisq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/retry"
)

// Limits of a confirmation message.
const (
	MaxConfirmBytes    = 4 << 10 // a larger message is malformed without parsing
	MaxCallCodeLen     = 64
	confirmDrain       = 256             // RPOP count after a BRPOP returns
	confirmBlock       = time.Second     // BRPOP timeout (go-redis' minimum)
	forwardListTTL     = 5 * time.Minute // private list left by a dead instance
	routerShards       = 64              // registration map shards
	handBackBuffer     = 1024            // confirmations handed back by waiters
	routerLogRate      = 5               // warn lines per second per kind …
	routerLogBurst     = 10              // … with this burst
	routerFlushTimeout = 2 * time.Second
)

// ConfirmRouter reads a cell's confirm list and hands each confirmation to
// the call waiting for it: one reader per cell feeds every waiter. It
// implements bridge.Confirmations. Run (called once per router) must be
// running for Expect's channels to receive anything.
//
// Several instances may serve one cell and share its confirm list; a
// confirmation for a call another instance acked is forwarded to that
// instance's private list (Keys.ConfirmFor), which its router reads first.
// A message read from the private list is never forwarded again.
type ConfirmRouter struct {
	rdb      redis.UniversalClient
	keys     Keys
	instance string
	private  string
	log      zerolog.Logger
	now      func() time.Time

	seed   maphash.Seed
	shards [routerShards]routerShard

	handBack chan confirmMsg

	// lastTurn is when Run last went round (unix ns), for the watchdog.
	lastTurn atomic.Int64

	// counters not yet written to the stats hash (written with the next
	// round trip, so an outage loses none)
	invalid atomic.Int64
	unknown atomic.Int64

	invalidLog logLimiter
	unknownLog logLimiter
	health     *retry.Health

	// backlog holds messages popped from Redis whose handling needs Redis
	// and failed: they are handled first on the next turn.
	backlog []confirmMsg
}

var _ bridge.Confirmations = (*ConfirmRouter)(nil)

type routerShard struct {
	mu sync.Mutex
	m  map[string][]*waiter
}

// waiter is one Expect registration.
type waiter struct {
	ch chan bridge.Confirmation
	// Set under the shard lock together with the send on ch:
	msg   confirmMsg
	group *deliveryGroup // when the confirmation went to several waiters of the id
}

// deliveryGroup is one confirmation delivered to several registrations of
// one id (a command and its duplicates): it is handed back only when every
// one of them gave it back unread.
type deliveryGroup struct {
	n      int32
	unread atomic.Int32
}

// confirmMsg is one message read from a confirm list.
type confirmMsg struct {
	raw     []byte
	private bool // read from our private list: never forwarded
	id      string
	code    string
	at      time.Time
}

// NewConfirmRouter builds the router of cell for instance.
func NewConfirmRouter(rdb redis.UniversalClient, prefix, cell, instance string, log zerolog.Logger) *ConfirmRouter {
	k := NewKeys(prefix, cell)
	r := &ConfirmRouter{
		rdb:        rdb,
		keys:       k,
		instance:   instance,
		private:    k.ConfirmFor(instance),
		log:        log.With().Str("component", "confirm").Str("cell", cell).Logger(),
		now:        time.Now,
		seed:       maphash.MakeSeed(),
		handBack:   make(chan confirmMsg, handBackBuffer),
		invalidLog: logLimiter{rate: routerLogRate, burst: routerLogBurst},
		unknownLog: logLimiter{rate: routerLogRate, burst: routerLogBurst},
	}
	r.health = retry.NewHealth("redis", r.log)
	r.lastTurn.Store(time.Now().UnixNano())
	for i := range r.shards {
		r.shards[i].m = make(map[string][]*waiter)
	}
	return r
}

func (r *ConfirmRouter) shard(id string) *routerShard {
	return &r.shards[maphash.String(r.seed, id)%routerShards]
}

// Expect implements bridge.Confirmations. The channel has a buffer of one and
// receives at most one value; the router never blocks on it. Several Expects
// for one id (a command and its duplicate) all receive the confirmation.
//
// cancel removes the registration; it is idempotent. If a confirmation was
// delivered but not received when cancel is called, the router treats it
// as one nobody here waits for: it may belong to a call of another instance
// (forwarded) or is counted as unknown. Call cancel only once no goroutine
// is receiving from the channel any more.
func (r *ConfirmRouter) Expect(id string) (<-chan bridge.Confirmation, func()) {
	w := &waiter{ch: make(chan bridge.Confirmation, 1)}
	sh := r.shard(id)
	sh.mu.Lock()
	sh.m[id] = append(sh.m[id], w)
	sh.mu.Unlock()
	return w.ch, func() { r.cancel(sh, id, w) }
}

func (r *ConfirmRouter) cancel(sh *routerShard, id string, w *waiter) {
	sh.mu.Lock()
	ws := sh.m[id]
	for i, x := range ws {
		if x == w {
			last := len(ws) - 1
			ws[i] = ws[last]
			ws[last] = nil
			ws = ws[:last]
			if len(ws) == 0 {
				delete(sh.m, id)
			} else {
				sh.m[id] = ws
			}
			break
		}
	}
	// Deliveries happen under the lock: past this point none can arrive.
	var unread bool
	select {
	case <-w.ch:
		unread = true
	default:
	}
	msg, group := w.msg, w.group
	sh.mu.Unlock()
	if !unread {
		return // received, or never delivered
	}
	if group != nil && group.unread.Add(1) < group.n {
		return // another registration of the id may still read it
	}
	if msg.private {
		r.countUnknown(msg)
		return
	}
	select {
	case r.handBack <- msg:
	default:
		r.countUnknown(msg)
	}
}

// Waiting is the number of ids with a registration (for tests and metrics).
func (r *ConfirmRouter) Waiting() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// deliver hands msg to every waiter of its id and removes them. It reports
// whether there was any.
func (r *ConfirmRouter) deliver(msg confirmMsg) bool {
	sh := r.shard(msg.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws := sh.m[msg.id]
	if len(ws) == 0 {
		return false
	}
	delete(sh.m, msg.id)
	c := bridge.Confirmation{ID: msg.id, CallCode: msg.code, At: msg.at}
	var group *deliveryGroup
	if len(ws) > 1 {
		group = &deliveryGroup{n: int32(len(ws))}
	}
	for _, w := range ws {
		w.msg, w.group = msg, group
		select {
		case w.ch <- c:
		default: // cannot happen: one value per registration, buffer 1
		}
	}
	return true
}

// LastRound is when the reading loop last went round: at least every
// couple of seconds while it runs (BRPOP blocks one second).
func (r *ConfirmRouter) LastRound() time.Time { return time.Unix(0, r.lastTurn.Load()) }

// Run reads confirmations until ctx ends, then returns nil. Redis errors are
// logged once per outage and retried with a capped backoff; messages already
// popped when an error strikes are kept and handled after it.
func (r *ConfirmRouter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.handBackLoop(ctx)
	}()
	defer wg.Wait()

	var backoff time.Duration
	for ctx.Err() == nil {
		r.lastTurn.Store(time.Now().UnixNano())
		err := r.turn(ctx)
		if err == nil {
			backoff = 0
			r.health.Up()
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r.health.Down(err)
		backoff = retry.Next(backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if n := len(r.backlog); n > 0 {
		r.log.Warn().Int("messages", n).Msg("stopping with confirmations not handled (Redis unavailable)")
	}
	r.flushCounters()
	return nil
}

// turn is one iteration: handle the backlog, or block for a message and
// drain what else is there, then handle them.
func (r *ConfirmRouter) turn(ctx context.Context) error {
	if len(r.backlog) > 0 {
		return r.settle(ctx)
	}
	kv, err := r.rdb.BRPop(ctx, confirmBlock, r.private, r.keys.Confirm()).Result()
	if errors.Is(err, redis.Nil) {
		return r.flushCountersCtx(ctx)
	}
	if errors.Is(err, ErrItemTooBig) {
		// Popped and refused unread: garbage no call can be waiting for.
		r.invalid.Add(1)
		r.log.Warn().Int("max_bytes", MaxItemBytes).Msg("oversized confirmation dropped unread")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", r.keys.Confirm(), err)
	}
	now := r.now()
	if len(kv) == 2 {
		// Delivered at once: its call need not wait for the drain's round trip.
		r.handle([]confirmMsg{{raw: []byte(kv[1]), private: kv[0] == r.private, at: now}})
	}
	var msgs []confirmMsg
	// Drain more in one round trip: private first, as BRPOP does. The
	// script drops messages over MaxConfirmBytes where they lie, so one
	// oversized message (the connection refuses it, guard.go) cannot cost
	// the others popped with it.
	drained, err := confirmDrainScript.Run(ctx, r.rdb, []string{r.private, r.keys.Confirm(), r.keys.Stats()},
		confirmDrain, MaxConfirmBytes).StringSlice()
	if len(drained) > 0 {
		nPriv, _ := strconv.Atoi(drained[0])
		for i, s := range drained[1:] {
			msgs = append(msgs, confirmMsg{raw: []byte(s), private: i < nPriv, at: now})
		}
	}
	r.handle(msgs)
	if err != nil && !errors.Is(err, redis.Nil) {
		// What was popped is in hand; the next turn handles the backlog.
		return fmt.Errorf("drain %s: %w", r.keys.Confirm(), err)
	}
	return r.settle(ctx)
}

// confirmDrainScript pops up to n messages from the private list, then the
// shared one, dropping (and counting as confirm_invalid) those over max
// bytes. Returns {count from the private list, messages…}.
//
//	KEYS[1] private   KEYS[2] confirm   KEYS[3] stats   ARGV[1] n   ARGV[2] max
var confirmDrainScript = redis.NewScript(`
local n, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {'0'}
local dropped = 0
for k = 1, 2 do
  for i = 1, n do
    local m = redis.call('RPOP', KEYS[k])
    if not m then break end
    if #m > max then dropped = dropped + 1 else out[#out + 1] = m end
  end
  if k == 1 then out[1] = tostring(#out - 1) end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[3], 'confirm_invalid', dropped) end
return out
`)

// handle parses and delivers what needs no Redis; messages for ids nobody
// here waits for that may belong to another instance go to the backlog.
func (r *ConfirmRouter) handle(msgs []confirmMsg) {
	for _, m := range msgs {
		id, code, err := ParseConfirmation(m.raw)
		if err != nil {
			r.invalid.Add(1)
			if ok, suppressed := r.invalidLog.allow(r.now()); ok {
				r.log.Warn().Err(err).Int("bytes", len(m.raw)).Str("message", snippet(m.raw)).
					Bool("forwarded", m.private).Int64("suppressed", suppressed).
					Msg("malformed confirmation ignored")
			}
			continue
		}
		m.id, m.code = id, code
		if r.deliver(m) {
			continue
		}
		if m.private {
			// Already forwarded once: never again.
			r.countUnknown(m)
			continue
		}
		r.backlog = append(r.backlog, m)
	}
}

// settle runs the forward script for the backlog and writes the pending
// counters, in one pipeline.
func (r *ConfirmRouter) settle(ctx context.Context) error {
	// A waiter may have registered since (not in practice: Expect precedes
	// the ACK), so deliver if possible.
	todo := r.backlog[:0]
	for _, m := range r.backlog {
		if !r.deliver(m) {
			todo = append(todo, m)
		}
	}
	r.backlog = todo

	inv, unk := r.invalid.Swap(0), r.unknown.Swap(0)
	if len(todo) == 0 && inv == 0 && unk == 0 {
		return nil
	}
	// Two round trips, only for confirmations nobody here waits for: the
	// owners of their calls, then the forward scripts (with the counters).
	owners := make([]*redis.SliceCmd, len(todo))
	if len(todo) > 0 {
		_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range todo {
				owners[i] = p.HMGet(ctx, r.keys.Call(m.id), "state", "instance")
			}
			return nil
		})
	}
	scripts := make([]*redis.Cmd, len(todo))
	var counters []*redis.IntCmd
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range todo {
			if owners[i].Err() != nil {
				continue // retried below, one by one
			}
			owner := r.ownerOf(owners[i].Val())
			scripts[i] = forwardScript.EvalSha(ctx, p, r.forwardKeys(m.id, owner), r.instance, m.raw, forwardListTTL.Milliseconds(), owner)
		}
		counters = r.queueCounters(ctx, p, inv, unk)
		return nil
	})
	var firstErr error
	for _, c := range counters {
		if err := c.Err(); err != nil {
			// Not written: keep the counts for the next round trip.
			r.invalid.Add(inv)
			r.unknown.Add(unk)
			firstErr = err
			break
		}
	}
	var retry []confirmMsg
	for i, m := range todo {
		var owner string
		var err error
		if scripts[i] != nil {
			owner, err = forwardReply(scripts[i])
		}
		if scripts[i] == nil || isNoScript(err) || errors.Is(err, errOwnerChanged) {
			// Not read, not in the server's script cache (a restarted
			// Redis), or the owner changed since the read: one by one.
			owner, err = r.forward(ctx, m)
		}
		if err != nil {
			if isReplyError(err) {
				// Redis refused this message's script for good (say the
				// call key holds another type): retrying would wedge the
				// router. Count it and move on.
				r.countUnknown(m)
				r.log.Warn().Err(err).Str("id", m.id).Msg("confirmation could not be routed: ignored")
				continue
			}
			retry = append(retry, m)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		r.logRouted(m, owner)
	}
	r.backlog = retry
	if firstErr != nil {
		return fmt.Errorf("route confirmations: %w", firstErr)
	}
	return nil
}

// errOwnerChanged: the call hash named another owner when the forward
// script ran than when it was read.
var errOwnerChanged = errors.New("the call's owner changed while its confirmation was routed")

// ownerOf is the instance a call hash's HMGET state, instance names as the
// one that waits for the confirmation ("" = none, or us).
func (r *ConfirmRouter) ownerOf(v []any) string {
	if len(v) != 2 {
		return ""
	}
	state, _ := v[0].(string)
	owner, _ := v[1].(string)
	if state != "acked" || owner == r.instance {
		return ""
	}
	return owner
}

// forward routes one confirmation: reads the owner, then runs the script
// on that owner's list; again when the owner changed in between (a
// handful of times at most: a call is acked once).
func (r *ConfirmRouter) forward(ctx context.Context, m confirmMsg) (string, error) {
	for try := 0; ; try++ {
		v, err := r.rdb.HMGet(ctx, r.keys.Call(m.id), "state", "instance").Result()
		if err != nil {
			return "", err
		}
		owner := r.ownerOf(v)
		got, err := forwardReply(forwardScript.Run(ctx, r.rdb, r.forwardKeys(m.id, owner), r.instance, m.raw, forwardListTTL.Milliseconds(), owner))
		if !errors.Is(err, errOwnerChanged) || try == 3 {
			return got, err
		}
	}
}

// forwardReply reads the script's {code, owner}: the owner when forwarded,
// "" when unknown, errOwnerChanged when the read went stale.
func forwardReply(c *redis.Cmd) (string, error) {
	v, err := c.Slice()
	if err != nil {
		return "", err
	}
	if len(v) != 2 {
		return "", fmt.Errorf("forward script: unexpected reply %v", v)
	}
	code, _ := v[0].(int64)
	owner, _ := v[1].(string)
	switch code {
	case 1:
		return owner, nil
	case 2:
		return "", errOwnerChanged
	}
	return "", nil
}

// forwardKeys: the call, the owner's private list (the shared confirm list
// when there is no owner: declared, never written), the counters.
func (r *ConfirmRouter) forwardKeys(id, owner string) []string {
	dest := r.keys.Confirm()
	if owner != "" {
		dest = r.keys.ConfirmFor(owner)
	}
	return []string{r.keys.Call(id), dest, r.keys.Stats()}
}

// logRouted logs the outcome of the forward script (it counted it).
func (r *ConfirmRouter) logRouted(m confirmMsg, owner string) {
	if owner != "" {
		r.log.Debug().Str("id", m.id).Str("owner", owner).Msg("confirmation forwarded to the instance that acked the call")
		return
	}
	r.logUnknown(m)
}

// countUnknown counts a confirmation nobody waits for without the script
// (already forwarded once, or handed back).
func (r *ConfirmRouter) countUnknown(m confirmMsg) {
	r.unknown.Add(1)
	r.logUnknown(m)
}

func (r *ConfirmRouter) logUnknown(m confirmMsg) {
	if ok, suppressed := r.unknownLog.allow(r.now()); ok {
		r.log.Warn().Str("id", m.id).Str("call_code", m.code).Bool("forwarded", m.private).
			Int64("suppressed", suppressed).
			Msg("confirmation for a call nobody waits for (unknown id, or it came after ack_timeout): ignored")
	}
}

func (r *ConfirmRouter) queueCounters(ctx context.Context, p redis.Pipeliner, inv, unk int64) []*redis.IntCmd {
	var cmds []*redis.IntCmd
	if inv > 0 {
		cmds = append(cmds, p.HIncrBy(ctx, r.keys.Stats(), "confirm_invalid", inv))
	}
	if unk > 0 {
		cmds = append(cmds, p.HIncrBy(ctx, r.keys.Stats(), "confirm_unknown", unk))
	}
	return cmds
}

// flushCountersCtx writes pending counters (after an idle BRPOP).
func (r *ConfirmRouter) flushCountersCtx(ctx context.Context) error {
	inv, unk := r.invalid.Swap(0), r.unknown.Swap(0)
	if inv == 0 && unk == 0 {
		return nil
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		_ = r.queueCounters(ctx, p, inv, unk)
		return nil
	})
	if err != nil {
		r.invalid.Add(inv)
		r.unknown.Add(unk)
		return fmt.Errorf("write confirmation counters: %w", err)
	}
	return nil
}

// flushCounters is the last write at shutdown, on its own short deadline.
func (r *ConfirmRouter) flushCounters() {
	ctx, cancel := context.WithTimeout(context.Background(), routerFlushTimeout)
	defer cancel()
	_ = r.flushCountersCtx(ctx)
}

// handBackLoop handles confirmations a waiter gave back unread (the caller
// stopped waiting just as it arrived, or it went to a duplicate's
// registration): they may belong to another instance's call.
func (r *ConfirmRouter) handBackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-r.handBack:
			var backoff time.Duration
			for {
				owner, err := r.forward(ctx, m)
				if err == nil {
					r.logRouted(m, owner)
					break
				}
				if isReplyError(err) {
					r.countUnknown(m)
					r.log.Warn().Err(err).Str("id", m.id).Msg("confirmation could not be routed: ignored")
					break
				}
				if ctx.Err() != nil {
					return
				}
				r.health.Down(err)
				backoff = retry.Next(backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
	}
}

// ParseConfirmation validates one confirmation message:
// {"id": "<A-Za-z0-9._:->{1,64}", "call_code": "<1-64 printable>" | <digits>}.
// A numeric call_code is kept as the digits it was written with (no float
// rounding); other numbers (negative, fraction, exponent) are refused.
// Unknown fields are ignored.
func ParseConfirmation(raw []byte) (id, callCode string, err error) {
	if len(raw) > MaxConfirmBytes {
		return "", "", fmt.Errorf("message is %d bytes, more than the %d allowed", len(raw), MaxConfirmBytes)
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return "", "", errors.New("message is not a JSON object")
	}
	var w struct {
		ID       json.RawMessage `json:"id"`
		CallCode json.RawMessage `json:"call_code"`
	}
	if err := json.Unmarshal(t, &w); err != nil {
		return "", "", fmt.Errorf("malformed JSON: %s", shorten(err.Error(), 120))
	}
	if len(w.ID) == 0 || w.ID[0] != '"' {
		return "", "", errors.New("id must be a string")
	}
	if err := json.Unmarshal(w.ID, &id); err != nil {
		return "", "", fmt.Errorf("id: %s", shorten(err.Error(), 120))
	}
	if !validID(id) {
		return "", "", fmt.Errorf("id %s is not 1-64 characters of A-Z a-z 0-9 . _ : -", strconv.Quote(shorten(id, 70)))
	}
	switch {
	case len(w.CallCode) == 0 || string(w.CallCode) == "null":
		return "", "", errors.New("call_code is required")
	case w.CallCode[0] == '"':
		if err := json.Unmarshal(w.CallCode, &callCode); err != nil {
			return "", "", fmt.Errorf("call_code: %s", shorten(err.Error(), 120))
		}
	case w.CallCode[0] >= '0' && w.CallCode[0] <= '9':
		callCode = string(w.CallCode)
		for i := 0; i < len(callCode); i++ {
			if callCode[i] < '0' || callCode[i] > '9' {
				return "", "", fmt.Errorf("call_code must be a string or a whole non-negative number, got %s", shorten(callCode, 70))
			}
		}
	default:
		return "", "", errors.New("call_code must be a string or a number")
	}
	if callCode == "" || len(callCode) > MaxCallCodeLen {
		return "", "", fmt.Errorf("call_code must be 1-%d characters, got %d", MaxCallCodeLen, len(callCode))
	}
	for i, c := range callCode {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u2028' || c == '\u2029' || c == utf8.RuneError {
			return "", "", fmt.Errorf("call_code contains a control or invalid character (%U) at byte %d", c, i)
		}
	}
	return id, callCode, nil
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
			b == '.' || b == '_' || b == ':' || b == '-') {
			return false
		}
	}
	return true
}

// snippet renders the start of a message for a log line, quoted so that
// control bytes cannot forge log lines.
func snippet(raw []byte) string {
	const max = 120
	if len(raw) > max {
		return strconv.Quote(string(raw[:max])) + "…"
	}
	return strconv.Quote(string(raw))
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// isReplyError reports whether err is an error reply of the server that a
// retry of the same command will get again, as opposed to a network error
// or a transient server state (loading, busy script, failover, cluster
// changes, out of memory).
func isReplyError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) || errors.Is(err, redis.Nil) {
		return false
	}
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "MOVED", "ASK", "OOM", "NOSCRIPT"} {
		if redis.HasErrorPrefix(err, p) {
			return false
		}
	}
	return true
}

// logLimiter is a token bucket for log lines: rate per second, burst at
// most; it counts the lines it suppressed and reports them with the next
// line it allows.
type logLimiter struct {
	rate, burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64
}

func (l *logLimiter) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = l.burst
	} else if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens += el * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
