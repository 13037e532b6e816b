package redisq

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// What the call queue manager saw of a call, in its result (contract
// section 2: operator, connected_at, wait_ms, abandoned), and the log the
// pacer measures the cell from (section 6).
//
// The call hash collects, each on Redis's clock (TIME): answered_ms when the
// daemon marks the call answered (answeredScript), delivered_ms each time
// the queue manager rings an operator for it and operator + connected_ms
// when one answers (acdWriteScript's CALLNOTE). When the result is settled,
// sealScript reads them, decides wait and abandonment, marks the hash
// "sealed" (a late operator answer no longer writes: the customer was gone)
// and appends one entry to the pacing log; Finish then pushes the result
// with the four fields. The seal runs before the finish script and rides in
// the same shared pipelines (batch.go), so it adds no round trip of its own
// under load.
//
//	P:{C}:pacing:log  stream, one entry per settled attempt (MAXLEN ~):
//	                  s status, d dial→end ms, r dial→answer ms, t talk ms,
//	                  w wait ms, a abandoned 0/1, o operator delay ms (-1 none),
//	                  q "1" when the queue manager was in use
//	P:{C}:pacing:day  hash <YYYY-MM-DD>:answered, <YYYY-MM-DD>:abandoned (the
//	                  day in pacing.timezone; 3-day expiry renewed)

// PacingLogMaxLen bounds the pacing log (a day of a large cell; the pacer
// needs the sliding window, at most a day).
const PacingLogMaxLen = 200000

// PacingLogKey is P:{C}:pacing:log.
func PacingLogKey(k Keys) string { return k.Base() + "pacing:log" }

// PacingDayKey is P:{C}:pacing:day.
func PacingDayKey(k Keys) string { return k.Base() + "pacing:day" }

// OperatorFieldsOptions turn on the operator fields of results.
type OperatorFieldsOptions struct {
	// AbandonAfter is pacing.abandon_after (2 s): an answered call no
	// operator answered within it, its customer still on the line, is
	// abandoned.
	AbandonAfter time.Duration
	// Paced: the cell is paced, so the queue manager is in use by
	// definition and every result carries the fields. Otherwise it is in
	// use when its lease is held (QueueManagerSeen).
	Paced bool
	// Location is the time zone of the day's counters (pacing.timezone).
	Location *time.Location
}

// operatorFields is a Queue's state for the operator fields.
type operatorFields struct {
	opt OperatorFieldsOptions
	// seen: the queue manager's lease was held at the last look
	// (WatchQueueManager); unpaced cells use it for results of calls that
	// were never answered, which need no round trip.
	seen atomic.Bool
}

// WithOperatorFields makes Finish complete results with the queue manager's
// operator fields and feed the pacing log.
func WithOperatorFields(o OperatorFieldsOptions) QueueOption {
	return func(q *Queue) {
		if o.AbandonAfter <= 0 {
			o.AbandonAfter = 2 * time.Second
		}
		if o.Location == nil {
			o.Location = time.UTC
		}
		q.opf = &operatorFields{opt: o}
	}
}

// SetQueueManagerSeen records whether the cell's queue manager holds its
// lease (the daemon looks every second).
func (q *Queue) SetQueueManagerSeen(v bool) {
	if q.opf != nil {
		q.opf.seen.Store(v)
	}
}

// sealScript settles what the queue manager saw of one call.
//
//	KEYS[1] call:<id>   KEYS[2] acd:lease   KEYS[3] pacing:log   KEYS[4] pacing:day
//	ARGV[1] "1" paced   ARGV[2] status   ARGV[3] talk ms   ARGV[4] dial→end ms
//	ARGV[5] dial→answer ms   ARGV[6] abandon_after ms   ARGV[7] day (YYYY-MM-DD)
//	ARGV[8] log MAXLEN
//
// Returns {in use 0/1, operator, connected_ms, wait_ms, abandoned 0/1,
// answered_ms ("" when the answer step did not record it)}. The
// first run stores its answer in the hash field "sealed"; a second run (a
// retried Finish) returns it unchanged and logs nothing again.
var sealScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'sealed', 'operator', 'connected_ms', 'answered_ms', 'delivered_ms', 'state')
if h[1] then return cjson.decode(h[1]) end
if not h[6] then return {0, '', '', 0, 0, ''} end
local inuse = 0
if ARGV[1] == '1' or h[2] or redis.call('EXISTS', KEYS[2]) == 1 then inuse = 1 end
local op, conn, wait, ab, delay = '', '', 0, 0, -1
local after = tonumber(ARGV[6])
local answered = ARGV[2] == 'answered'
if answered and h[2] then
  op, conn = h[2], h[3]
  local a = tonumber(h[4]) or tonumber(h[3])
  wait = tonumber(h[3]) - a
  if wait < 0 then wait = 0 end
  if wait > after then ab = 1 end
  if h[5] then
    delay = tonumber(h[3]) - tonumber(h[5])
    if delay < 0 then delay = 0 end
  end
elseif answered then
  wait = tonumber(ARGV[3])
  if wait > after then ab = 1 end
end
local ans = ''
if answered and h[4] then ans = h[4] end
local res = {inuse, op, conn, wait, ab, ans}
redis.call('HSET', KEYS[1], 'sealed', cjson.encode(res))
if inuse == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 's', ARGV[2], 'd', ARGV[4], 'r', ARGV[5],
    't', ARGV[3], 'w', string.format('%d', wait), 'a', ab, 'o', string.format('%d', delay))
  if answered then
    redis.call('HINCRBY', KEYS[4], ARGV[7] .. ':answered', 1)
    if ab == 1 then redis.call('HINCRBY', KEYS[4], ARGV[7] .. ':abandoned', 1) end
    redis.call('EXPIRE', KEYS[4], 259200)
  end
end
return res
`)

// sealOperator completes r with the operator fields (nothing when the
// Queue has none, or the status does not own the call hash).
func (q *Queue) sealOperator(ctx context.Context, r *bridge.Result) error {
	f := q.opf
	if f == nil || !r.Status.OwnsHash() || r.ID == "" {
		return nil
	}
	if r.Status != bridge.StatusAnswered && !f.opt.Paced {
		// Never answered: nothing to read, the fields are empty when the
		// queue manager is in use.
		if f.seen.Load() {
			r.OperatorFields = &bridge.OperatorFields{}
		} else {
			r.OperatorFields = nil
		}
		return nil
	}
	dialed, answered, ended := parseWire(r.DialedAt), parseWire(r.AnsweredAt), parseWire(r.EndedAt)
	if ended.IsZero() && !dialed.IsZero() {
		// Only answered results carry ended_at; an attempt that was not
		// answered ended now, when its outcome is settled (the pacer's
		// attempt time and answer rate count it).
		ended = q.now()
	}
	span := func(a, b time.Time) int64 {
		if a.IsZero() || b.IsZero() || b.Before(a) {
			return -1
		}
		return b.Sub(a).Milliseconds()
	}
	keys := []string{q.keys.Call(r.ID), q.keys.Base() + "acd:lease", PacingLogKey(q.keys), PacingDayKey(q.keys)}
	day := q.now().In(f.opt.Location).Format(time.DateOnly)
	v, err := q.batch.run(ctx, sealScript, keys, boolArg(f.opt.Paced), string(r.Status), max(r.TalkMS, 0),
		span(dialed, ended), span(dialed, answered), f.opt.AbandonAfter.Milliseconds(), day, PacingLogMaxLen).Slice()
	if err != nil {
		return fmt.Errorf("seal %s: %w", r.ID, err)
	}
	if len(v) != 5 && len(v) != 6 { // 5: sealed by a version before answered_ms
		return fmt.Errorf("seal %s: unexpected reply %v", r.ID, v)
	}
	if luaInt(v[0]) == 0 {
		r.OperatorFields = nil
		return nil
	}
	of := &bridge.OperatorFields{Operator: fmt.Sprint(v[1]), WaitMS: luaInt(v[3]), Abandoned: luaInt(v[4]) == 1}
	if ms, err := strconv.ParseInt(fmt.Sprint(v[2]), 10, 64); err == nil && ms > 0 {
		of.ConnectedAt = bridge.FormatTime(time.UnixMilli(ms))
	}
	// answered_at on the clock connected_at is on (contract section 2:
	// both on Redis TIME), so that connected_at − answered_at is wait_ms
	// whatever this host's clock says.
	if len(v) == 6 && r.Status == bridge.StatusAnswered {
		if ms, err := strconv.ParseInt(fmt.Sprint(v[5]), 10, 64); err == nil && ms > 0 {
			r.AnsweredAt = bridge.FormatTime(time.UnixMilli(ms))
		}
	}
	r.OperatorFields = of
	return nil
}

// luaInt reads an integer of a script's reply (cjson gives floats back as
// integers in RESP, plain numbers as int64).
func luaInt(x any) int64 {
	switch n := x.(type) {
	case int64:
		return n
	case string:
		i, _ := strconv.ParseInt(n, 10, 64)
		return i
	}
	return 0
}

// parseWire reads a result's time (bridge.TimeFormat); zero when empty.
func parseWire(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(bridge.TimeFormat, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
