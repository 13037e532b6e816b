package redisq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// Defaults of a Queue.
const (
	// DefaultCallTTL is the safety expiry of a call hash in progress, so that
	// a hash abandoned by some failure cannot live forever.
	DefaultCallTTL = 7 * 24 * time.Hour
	// DefaultResultTTL is how long a call hash lives after its result.
	DefaultResultTTL = 24 * time.Hour
	// DeadRawMax is how much of a buried command's raw bytes the dead entry
	// keeps.
	DeadRawMax = 4 << 10
	// claimBlock is how long ClaimNext blocks. go-redis rounds anything
	// under a second up to one second (and logs), and adds 10 s to its read
	// deadline for blocking commands by itself.
	claimBlock = time.Second
	// settledMarkerTTL bounds how long a settle marker (see Keys.Settled)
	// lives: long enough for the retries of one operation (bridge retries
	// with a backoff capped at 2 s), short enough that a flood of duplicate
	// commands leaves few markers behind.
	settledMarkerTTL = time.Hour
	// maxPendingNonces bounds the memory of settle operations whose outcome
	// is unknown (their caller may retry).
	maxPendingNonces = 100000
)

// Queue is the Redis side of one cell for one instance: it implements
// bridge.Store. It is safe for concurrent use.
type Queue struct {
	rdb       redis.UniversalClient
	keys      Keys
	instance  string
	claimed   string // Keys.Claimed(instance), precomputed
	callTTL   time.Duration
	resultTTL time.Duration
	now       func() time.Time

	// pending maps a settle operation whose last attempt failed with an
	// unknown outcome (its reply may have been lost) to the nonce it ran
	// with, so that the caller's retry, which passes the same *Result,
	// reuses the nonce and the script recognises it already ran. Only the
	// results that do not own the call hash (duplicate, invalid) use it.
	mu      sync.Mutex
	pending map[*bridge.Result]string

	// acdInbox ("" = off) is the queue manager's inbox, fed by
	// MarkAnswered and Finish; acdCap bounds it.
	acdInbox string
	acdCap   int
	// opf (nil = off) completes results with the queue manager's operator
	// fields (pacing_result.go).
	opf *operatorFields

	// scannedOnce: the first recovery pass also SCANs for claimed lists of
	// instances missing from the instance set.
	scannedOnce atomic.Bool

	// batch runs the calls' Lua steps in shared pipelines (batch.go).
	batch *batcher

	// pbx is the AMI address recorded in each call hash when dialing.
	pbx string

	// dur (nil = off) makes Begin, MarkDialing, Finish and Bury durable
	// (durable.go).
	dur *Durable

	// backlog is what the dial list held right after the last ClaimNext
	// took a command (-1: unknown); ClaimMore asks for no more than that.
	backlog atomic.Int64
}

var _ bridge.Store = (*Queue)(nil)

// QueueOption adjusts a Queue.
type QueueOption func(*Queue)

// WithCallTTL sets the safety expiry of call hashes in progress (default
// DefaultCallTTL).
func WithCallTTL(d time.Duration) QueueOption {
	return func(q *Queue) {
		if d > 0 {
			q.callTTL = d
		}
	}
}

// WithACDInbox makes MarkAnswered and Finish feed the cell's call queue
// manager (docs/ACD.md) in the same Lua step: {"command":"call"} when a
// call is answered, {"command":"hangup"} when its result is pushed. The
// inbox keeps the newest maxLen events, so a cell run without a queue
// manager does not grow it forever.
func WithACDInbox(maxLen int) QueueOption {
	return func(q *Queue) {
		if maxLen > 0 {
			q.acdInbox = q.keys.Base() + "acd:inbox"
			q.acdCap = maxLen
		}
	}
}

// acdEventJSON is the inbox message format of ACDPushEvent.
func acdEventJSON(command, id string) string {
	b, _ := json.Marshal(acdEvent{Command: command, ID: id})
	return string(b)
}

// WithPBX records addr (ami.host:port) as the call hash's "pbx" when a call
// is dialed: after a crash, a daemon on the same PBX adopts the call's live
// channel instead of reporting it unknown (bridge.Options.PBX).
func WithPBX(addr string) QueueOption {
	return func(q *Queue) { q.pbx = addr }
}

// WithResultTTL sets how long a call hash lives after its result (default
// DefaultResultTTL, the contract's 24 h).
func WithResultTTL(d time.Duration) QueueOption {
	return func(q *Queue) {
		if d > 0 {
			q.resultTTL = d
		}
	}
}

// WithClock sets the clock used for the times the Queue writes itself (the
// dead list's "at"); for tests.
func WithClock(now func() time.Time) QueueOption {
	return func(q *Queue) {
		if now != nil {
			q.now = now
		}
	}
}

// NewQueue returns the Store of cell for instance.
func NewQueue(rdb redis.UniversalClient, prefix, cell, instance string, opts ...QueueOption) *Queue {
	k := NewKeys(prefix, cell)
	q := &Queue{
		rdb:       rdb,
		keys:      k,
		instance:  instance,
		claimed:   k.Claimed(instance),
		callTTL:   DefaultCallTTL,
		resultTTL: DefaultResultTTL,
		now:       time.Now,
		pending:   make(map[*bridge.Result]string),
		batch:     &batcher{rdb: rdb},
	}
	q.backlog.Store(-1)
	for _, o := range opts {
		o(q)
	}
	return q
}

// Keys returns the key names of the queue's cell.
func (q *Queue) Keys() Keys { return q.keys }

// Instance returns the instance the queue claims for.
func (q *Queue) Instance() string { return q.instance }

// Client returns the Redis client.
func (q *Queue) Client() redis.UniversalClient { return q.rdb }

// ClaimNext implements bridge.Store: BLMOVE dial → claimed:<instance>, from
// the right (oldest) to the left, blocking at most one second. It returns
// (nil, nil) when nothing arrived. An empty element is returned as a
// non-nil empty slice: it is a (bad) command that must be buried.
//
// An LLEN of dial rides in the same round trip, run right after the move:
// it tells ClaimMore how many more there are, so that a command arriving
// alone costs no second round trip of LMOVEs that find nothing. (A
// pipeline is read with ReadTimeout, not the blocking commands' longer
// deadline: ReadTimeout must exceed claimBlock, as Dial's does.)
func (q *Queue) ClaimNext(ctx context.Context) ([]byte, error) {
	var move *redis.StringCmd
	var left *redis.IntCmd
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		move = p.BLMove(ctx, q.keys.Dial(), q.claimed, "RIGHT", "LEFT", claimBlock)
		left = p.LLen(ctx, q.keys.Dial())
		return nil
	})
	s, err := move.Result()
	if n, lerr := left.Result(); lerr == nil {
		q.backlog.Store(n)
	} else {
		q.backlog.Store(-1)
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if errors.Is(err, ErrItemTooBig) {
		// The item is in our claimed list; it is settled there unread.
		if _, serr := q.screen(ctx, q.claimed); serr != nil {
			return nil, fmt.Errorf("claim from %s: %w", q.keys.Dial(), serr)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim from %s: %w", q.keys.Dial(), err)
	}
	if s == "" {
		return []byte{}, nil
	}
	return []byte(s), nil
}

// ClaimMore implements bridge.BatchClaimer: up to n more commands, without
// blocking, in one round trip (a pipeline of LMOVEs: each is atomic, so a
// command is in dial or in our claimed list, never lost between them). It
// returns fewer when the dial list runs dry, and asks for no more than the
// dial list held after the last ClaimNext: none, without a round trip, when
// it was empty.
func (q *Queue) ClaimMore(ctx context.Context, n int) ([][]byte, error) {
	if b := q.backlog.Load(); b >= 0 && int64(n) > b {
		n = int(b)
	}
	if n <= 0 {
		return nil, nil
	}
	// One Lua step: each item's size is looked at inside Redis, so an
	// oversized one is buried without crossing the wire.
	items, err := claimBatchScript.Run(ctx, q.rdb, []string{q.keys.Dial(), q.claimed, q.keys.Dead(), q.keys.Stats()},
		append([]any{n}, q.buryArgs()...)...).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		// Nothing claimed, or (reply lost) commands in our list that no
		// call holds: ReconcileOwn settles those after the outage.
		return nil, fmt.Errorf("claim more from %s: %w", q.keys.Dial(), err)
	}
	out := make([][]byte, len(items))
	for i, s := range items {
		out[i] = []byte(s)
	}
	return out, nil
}

// Begin implements bridge.Store with beginScript. The hash gets id, cell,
// instance, number, state=acked, received_at, attempts=0, token and raw (the
// command as claimed, for crash recovery), and the safety TTL.
func (q *Queue) Begin(ctx context.Context, c *bridge.Call) (bool, error) {
	if c == nil || c.Cmd == nil {
		return false, errors.New("begin: call without a command")
	}
	id := c.Cmd.ID
	ack, err := json.Marshal(c.Ack())
	if err != nil {
		return false, fmt.Errorf("begin %s: encode ack: %w", id, err)
	}
	args := []any{
		c.Token, ack, ttlSeconds(q.callTTL),
		"id", id,
		"cell", c.Cell,
		"instance", c.Instance,
		"number", c.Cmd.Number,
		"state", string(bridge.StateAcked),
		"received_at", bridge.FormatTime(c.ReceivedAt),
		"attempts", 0,
		"token", c.Token,
		"raw", c.Raw,
	}
	// Durable: a WAIT that falls short stops claiming (the Durable
	// records it) but not this call: the ACK is out, and MarkDialing's
	// WAIT, later in the same replication stream, covers these writes
	// before anything is dialed.
	cmd, _ := q.batch.runDurable(ctx, beginScript, []string{q.keys.Call(id), q.keys.Ack(), q.keys.Stats()}, args...)
	n, err := cmd.Int64()
	if err != nil {
		return false, fmt.Errorf("begin %s: %w", id, err)
	}
	return n == 1, nil
}

// MarkDialing implements bridge.Store (one script run): state=originating,
// call_code, confirmed_at, dialed_at, attempts, channel_id, pbx (see
// WithPBX); "dialed" is
// counted once per call, when the state first becomes originating. A hash
// already "done" is left unchanged.
func (q *Queue) MarkDialing(ctx context.Context, c *bridge.Call) error {
	id := c.Cmd.ID
	args := []any{
		"dialed", ttlSeconds(q.callTTL), c.Token,
		"state", string(bridge.StateOriginating),
		"call_code", c.CallCode,
		"confirmed_at", bridge.FormatTime(c.ConfirmedAt),
		"dialed_at", bridge.FormatTime(c.DialedAt),
		"attempts", c.Attempts,
		"channel_id", c.ChannelID,
	}
	if q.pbx != "" {
		// Which Asterisk the Originate goes to: only a daemon on the same
		// PBX may adopt the call if we die (bridge/adopt.go).
		args = append(args, "pbx", q.pbx)
	}
	cmd, waitErr := q.batch.runDurable(ctx, markScript, []string{q.keys.Call(id), q.keys.Stats()}, args...)
	n, err := cmd.Int()
	if err != nil {
		return fmt.Errorf("mark dialing %s: %w", id, err)
	}
	if n != 1 {
		// Settled or requeued by recovery while we were presumed dead:
		// dialing now could dial it twice.
		return fmt.Errorf("mark dialing %s: %w", id, bridge.ErrNotOwner)
	}
	// The replicas must hold "originating" before the Originate is
	// written (bridge.ErrNotDurable: the caller tries again).
	return waitErr
}

// MarkAnswered implements bridge.Store: state=answered, answered_at, channel,
// uniqueid (our ChannelId). Nothing is counted: the final status is counted
// by Finish. A hash already "done" is left unchanged.
func (q *Queue) MarkAnswered(ctx context.Context, c *bridge.Call) error {
	id := c.Cmd.ID
	if q.acdInbox != "" {
		// State and the queue manager's "call" event in one step: the
		// event is pushed once, on the change to answered.
		args := []any{ttlSeconds(q.callTTL), c.Token, acdEventJSON("call", id), q.acdCap,
			"state", string(bridge.StateAnswered),
			"answered_at", bridge.FormatTime(c.AnsweredAt),
			"channel", c.Channel,
			"uniqueid", c.ChannelID,
		}
		if err := q.batch.run(ctx, answeredScript, []string{q.keys.Call(id), q.acdInbox}, args...).Err(); err != nil {
			return fmt.Errorf("mark answered %s: %w", id, err)
		}
		return nil
	}
	args := []any{
		"", ttlSeconds(q.callTTL), c.Token,
		"state", string(bridge.StateAnswered),
		"answered_at", bridge.FormatTime(c.AnsweredAt),
		"channel", c.Channel,
		"uniqueid", c.ChannelID,
	}
	if err := q.batch.run(ctx, markScript, []string{q.keys.Call(id), q.keys.Stats()}, args...).Err(); err != nil {
		return fmt.Errorf("mark answered %s: %w", id, err)
	}
	return nil
}

// Finish implements bridge.Store with finishScript.
//
// Retries: a second Finish for the same command returns settled=false and
// changes nothing, even when another claim holds an identical copy of raw
// (Multcall pushed the same command twice: the copy belongs to the
// duplicate's own Finish). For statuses that own the call hash the script
// sees the hash already "done". Duplicate and invalid results do not own
// it, so their script also sets a marker named by a random nonce (1 h
// TTL); when an attempt fails (its reply may be lost after the script ran),
// the nonce is kept and the next Finish with the same *Result — bridge's
// retry loop passes the same pointer — reuses it, and the script sees the
// marker. go-redis' own retries resend the same arguments, nonce included.
//
// Durable (WithDurable): a result the replicas did not acknowledge is held
// in memory and pushed again if a failover lost it (Durable.Run).
func (q *Queue) Finish(ctx context.Context, raw []byte, r *bridge.Result) (bool, error) {
	settled, waitErr, err := q.finish(ctx, raw, r, true)
	if err == nil && waitErr != nil {
		q.dur.hold(raw, r, nil)
	}
	return settled, err
}

// finish is Finish without holding the result; waitErr is the WAIT's
// shortfall (durable only). seal false pushes r as it is: a held result
// pushed again must be identical to the first push.
func (q *Queue) finish(ctx context.Context, raw []byte, r *bridge.Result, seal bool) (settled bool, waitErr, err error) {
	if r == nil {
		return false, nil, errors.New("finish: nil result")
	}
	if seal {
		if err := q.sealOperator(ctx, r); err != nil {
			return false, nil, fmt.Errorf("finish %s: %w", r.ID, err)
		}
	}
	// A result without an id (never from the bridge) has no hash to own.
	owns := r.Status.OwnsHash() && r.ID != ""
	// The inbox is declared even when this result does not feed it: the
	// marker's position stays fixed.
	keys := []string{q.claimed, q.keys.Results(), q.keys.Call(r.ID), q.keys.Stats(), q.keys.Base() + "acd:inbox"}
	var nonce string
	if !owns {
		nonce = q.nonceFor(r)
		keys = append(keys, q.keys.Settled(nonce))
	}
	body := r.JSON()
	args := make([]any, 0, 8+2*18)
	args = append(args, raw, body, string(r.Status), boolArg(owns),
		ttlSeconds(q.resultTTL), ttlSeconds(settledMarkerTTL))
	// The queue manager hears that an answered call ended in the same step.
	if q.acdInbox != "" && r.Status == bridge.StatusAnswered && r.ID != "" {
		args = append(args, acdEventJSON("hangup", r.ID), q.acdCap)
	} else {
		args = append(args, "", 0)
	}
	if owns {
		args = append(args,
			"state", string(bridge.StateDone),
			"status", string(r.Status),
			"result", body,
			"reason", r.Reason,
			"cause", r.Cause,
			"attempts", r.Attempts,
			"talk_ms", r.TalkMS,
			"error", r.Error,
		)
		args = appendNonEmpty(args,
			"call_code", r.CallCode,
			"cause_txt", r.CauseText,
			"uniqueid", r.Uniqueid,
			"channel", r.Channel,
			"confirmed_at", r.ConfirmedAt,
			"dialed_at", r.DialedAt,
			"answered_at", r.AnsweredAt,
			"ended_at", r.EndedAt,
		)
	}
	cmd, waitErr := q.batch.runDurable(ctx, finishScript, keys, args...)
	n, err := cmd.Int64()
	if nonce != "" {
		q.settleDone(r, nonce, err)
	}
	if err != nil {
		return false, nil, fmt.Errorf("finish %s: %w", r.ID, err)
	}
	return n == 1, waitErr, nil
}

// deadEntry is one element of the dead list.
type deadEntry struct {
	Error       string `json:"error"`
	ID          string `json:"id,omitempty"`
	Raw         string `json:"raw"`
	RawEncoding string `json:"raw_encoding,omitempty"` // "base64" when raw is not valid UTF-8
	Truncated   bool   `json:"truncated,omitempty"`    // raw holds only the first DeadRawMax bytes
	Bytes       int    `json:"bytes"`                  // length of the whole command
	At          string `json:"at"`
	Instance    string `json:"instance"`
}

// Bury implements bridge.Store with buryScript. The dead entry is
// {"error", "id" (when r is set), "raw" (the first 4 KB; base64 with
// "raw_encoding":"base64" when not valid UTF-8), "truncated", "bytes",
// "at", "instance"}.
//
// Durable (WithDurable): like Finish, a result not acknowledged is held.
func (q *Queue) Bury(ctx context.Context, raw []byte, cause error, r *bridge.Result) (bool, error) {
	settled, waitErr, err := q.bury(ctx, raw, cause, r)
	if err == nil && waitErr != nil && r != nil {
		if cause == nil {
			cause = errors.New("invalid command")
		}
		q.dur.hold(raw, r, cause)
	}
	return settled, err
}

func (q *Queue) bury(ctx context.Context, raw []byte, cause error, r *bridge.Result) (settled bool, waitErr, err error) {
	msg := "invalid command"
	if cause != nil {
		msg = cause.Error()
	}
	e := deadEntry{Error: msg, Bytes: len(raw), At: bridge.FormatTime(q.now()), Instance: q.instance}
	e.Raw, e.RawEncoding, e.Truncated = deadRaw(raw)
	var resJSON []byte
	status := ""
	if r != nil {
		e.ID = r.ID
		resJSON = r.JSON()
		status = string(r.Status)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return false, nil, fmt.Errorf("bury: encode dead entry: %w", err)
	}
	entry := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))

	keys := []string{q.claimed, q.keys.Dead(), q.keys.Results(), q.keys.Stats()}
	// Without a result a retry that took an identical copy of raw would only
	// move the same bytes to dead once more, in place of the other claim's
	// Bury: no marker needed.
	var nonce string
	if r != nil {
		nonce = q.nonceFor(r)
		keys = append(keys, q.keys.Settled(nonce))
	}
	cmd, waitErr := q.batch.runDurable(ctx, buryScript, keys, raw, entry, resJSON, status, ttlSeconds(settledMarkerTTL), DeadCap)
	n, err := cmd.Int64()
	if nonce != "" {
		q.settleDone(r, nonce, err)
	}
	if err != nil {
		what := "bury"
		if r != nil {
			what += " " + r.ID
		}
		return false, nil, fmt.Errorf("%s: %w", what, err)
	}
	return n == 1, waitErr, nil
}

// Count implements bridge.Store: HINCRBY on the stats hash.
func (q *Queue) Count(ctx context.Context, field string, n int64) error {
	if err := q.rdb.HIncrBy(ctx, q.keys.Stats(), field, n).Err(); err != nil {
		return fmt.Errorf("count %s: %w", field, err)
	}
	return nil
}

// Stats reads the cell's counters (see ReadStats).
func (q *Queue) Stats(ctx context.Context) (map[string]int64, error) {
	return ReadStats(ctx, q.rdb, q.keys)
}

// Depths reads the cell's list lengths (see ReadDepths).
func (q *Queue) Depths(ctx context.Context) (Depths, error) {
	return ReadDepths(ctx, q.rdb, q.keys)
}

// nonceFor returns the nonce of the settle operation identified by op: the
// one its last failed attempt used, or a fresh one.
func (q *Queue) nonceFor(op *bridge.Result) string {
	q.mu.Lock()
	n, ok := q.pending[op]
	q.mu.Unlock()
	if ok {
		return n
	}
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// settleDone records the outcome of a settle attempt: after an error the
// script may or may not have run, so the nonce is kept for a retry;
// otherwise it is forgotten.
func (q *Queue) settleDone(op *bridge.Result, nonce string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err == nil {
		delete(q.pending, op)
		return
	}
	if len(q.pending) >= maxPendingNonces {
		// Callers that never retry (hard stops) would otherwise grow this
		// without bound; losing an entry only weakens retry detection.
		for k := range q.pending {
			delete(q.pending, k)
			break
		}
	}
	q.pending[op] = nonce
}

// deadRaw renders the first DeadRawMax bytes of raw for the dead list: as
// text when valid UTF-8 (a rune cut by the limit is dropped), else base64.
func deadRaw(raw []byte) (s, encoding string, truncated bool) {
	p := raw
	if len(p) > DeadRawMax {
		p = p[:DeadRawMax]
		truncated = true
	}
	if utf8.Valid(p) {
		return string(p), "", truncated
	}
	if truncated {
		// The limit may have cut a multi-byte rune in two.
		for cut := 1; cut < utf8.UTFMax && cut < len(p); cut++ {
			if q := p[:len(p)-cut]; utf8.Valid(q) {
				return string(q), "", truncated
			}
		}
	}
	return base64.StdEncoding.EncodeToString(p), "base64", truncated
}

func ttlSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendNonEmpty appends the field/value pairs whose value is not empty.
func appendNonEmpty(args []any, kv ...string) []any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			args = append(args, kv[i], kv[i+1])
		}
	}
	return args
}
