package redisq

// The call queue manager's state in Redis (contract section 5, keys
// P:{C}:acd:*), so that redis-cli shows the floor, the monitor can draw it
// and a restarted queue manager resumes where it was:
//
//	P:{C}:acd:operators   hash  operator id → JSON acd.OperatorInfo
//	                            {"id":"A","tier":"operator","state":"busy","call":"2","since":"…"}
//	P:{C}:acd:calls       hash  call id → JSON acd.CallInfo (every call in progress)
//	                            {"id":"2","state":"answered","operator":"A","received":"…","since":"…"}
//	P:{C}:acd:queue       list  waiting call ids, head (next delivered) first: LRANGE 0 -1
//	P:{C}:acd:log         stream one entry per message: time (RFC 3339, ms, UTC), message,
//	                            kind, call, operator; MAXLEN ~ 10000
//	P:{C}:acd:lease       string the running queue manager's instance, PX 15 s, renewed every 5 s
//	P:{C}:acd:inbox       list  events from the bridge, LPUSH by ACDPushEvent:
//	                            {"command":"call"|"hangup","id":"<call id>"}
//	P:{C}:acd:inbox:taken list  events taken (BLMOVE from inbox) whose effect is not saved yet
//
// Every write of the queue manager is one Lua script that first checks the
// lease is still its own, so a queue manager that lost its lease can never
// overwrite its successor's floor. Identifiers of this file start with
// ACD/acd: the rest of the package belongs to the bridge.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/acd"
)

// ACD defaults.
const (
	ACDLeaseTTL  = 15 * time.Second
	ACDLogMaxLen = 10000
)

// ErrACDLeaseLost: another queue manager holds the cell's lease now.
var ErrACDLeaseLost = errors.New("the queue manager lease of this cell was lost")

// ACDLeaseError is returned by ACDOpen when another queue manager runs the
// cell.
type ACDLeaseError struct {
	Key    string
	Holder string
	TTL    time.Duration
}

func (e *ACDLeaseError) Error() string {
	return fmt.Sprintf("another queue manager (%s) is running this cell: %s is held for %s more; stop it first, or wait for the lease to expire if it died",
		e.Holder, e.Key, e.TTL.Round(100*time.Millisecond))
}

// ACDKey is P:{C}:acd:<name>.
func ACDKey(prefix, cell, name string) string {
	return prefix + ":{" + cell + "}:acd:" + name
}

// ACDOptions tune an ACDStore.
type ACDOptions struct {
	// Instance names this queue manager in the lease (default
	// host-pid-time).
	Instance string
	// LeaseTTL is the lease's time to live (default 15s); KeepLease
	// renews it every third of that.
	LeaseTTL time.Duration
	// LogMaxLen is the approximate length the log stream is trimmed to
	// (default 10000).
	LogMaxLen int64
	// Logf receives notes (lease renewal failures); nil discards.
	Logf func(format string, args ...any)
}

// ACDStore is one cell's queue manager state in Redis. It implements
// acdserver.Store and acdserver.Inbox. It holds the cell's lease from
// ACDOpen to Close.
type ACDStore struct {
	rdb    redis.Cmdable
	prefix string
	cell   string
	opt    ACDOptions
	keys   []string // KEYS of the write script, see acdK*
}

// Indexes in ACDStore.keys (Lua KEYS, 1-based there).
const (
	acdKLease = iota
	acdKOperators
	acdKCalls
	acdKQueue
	acdKLog
	acdKTaken
	acdKInbox
)

// ACDOpen takes the cell's lease (SET NX PX) for this queue manager. If
// another one holds it, the error is an *ACDLeaseError saying who and for
// how long.
func ACDOpen(ctx context.Context, rdb redis.Cmdable, prefix, cell string, opt ACDOptions) (*ACDStore, error) {
	if opt.Instance == "" {
		host, _ := os.Hostname()
		opt.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), strconv.FormatInt(time.Now().UnixNano(), 36))
	}
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = ACDLeaseTTL
	}
	if opt.LogMaxLen <= 0 {
		opt.LogMaxLen = ACDLogMaxLen
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	s := &ACDStore{rdb: rdb, prefix: prefix, cell: cell, opt: opt}
	for _, name := range []string{"lease", "operators", "calls", "queue", "log", "inbox:taken", "inbox"} {
		s.keys = append(s.keys, ACDKey(prefix, cell, name))
	}
	ok, err := rdb.SetNX(ctx, s.keys[acdKLease], opt.Instance, opt.LeaseTTL).Result()
	if err != nil {
		return nil, fmt.Errorf("taking the queue manager lease %s: %w", s.keys[acdKLease], err)
	}
	if !ok {
		holder, _ := rdb.Get(ctx, s.keys[acdKLease]).Result()
		ttl, _ := rdb.PTTL(ctx, s.keys[acdKLease]).Result()
		return nil, &ACDLeaseError{Key: s.keys[acdKLease], Holder: holder, TTL: max(ttl, 0)}
	}
	return s, nil
}

// callKey is the bridge's hash of call id, P:{C}:call:<id> (same hash tag
// as the store's keys: one Cluster slot).
func (s *ACDStore) callKey(id string) string { return NewKeys(s.prefix, s.cell).Call(id) }

// Instance is the name this queue manager holds the lease under.
func (s *ACDStore) Instance() string { return s.opt.Instance }

// acdLeaseScript renews the lease if it is ours, takes it again if it
// expired meanwhile; returns 0 if someone else holds it.
var acdLeaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// acdReleaseScript deletes the lease if it is ours.
var acdReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// RenewLease extends the lease; ErrACDLeaseLost if another queue manager
// holds it.
func (s *ACDStore) RenewLease(ctx context.Context) error {
	n, err := acdLeaseScript.Run(ctx, s.rdb, s.keys[acdKLease:acdKLease+1], s.opt.Instance, s.opt.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renewing the queue manager lease: %w", err)
	}
	if n == 0 {
		return ErrACDLeaseLost
	}
	return nil
}

// KeepLease renews the lease every third of its TTL until ctx ends (nil)
// or another queue manager holds it (ErrACDLeaseLost). Redis errors are
// logged and retried.
func (s *ACDStore) KeepLease(ctx context.Context) error {
	t := time.NewTicker(s.opt.LeaseTTL / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := s.RenewLease(ctx)
		switch {
		case errors.Is(err, ErrACDLeaseLost):
			return err
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.opt.Logf("acd: %v (retrying)", err)
			}
			failing = true
		case err == nil && failing:
			s.opt.Logf("acd: queue manager lease renewed again")
			failing = false
		}
	}
}

// Close releases the lease if it is still ours. The floor stays in Redis.
func (s *ACDStore) Close(ctx context.Context) error {
	return acdReleaseScript.Run(ctx, s.rdb, s.keys[acdKLease:acdKLease+1], s.opt.Instance).Err()
}

// ACDLoad reads a cell's floor (one MULTI, so a consistent one); found is
// false when nothing was ever saved. The monitor may call it too.
func ACDLoad(ctx context.Context, rdb redis.Cmdable, prefix, cell string) (snap acd.Snapshot, found bool, err error) {
	var ops, calls *redis.MapStringStringCmd
	var queue *redis.StringSliceCmd
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ops = p.HGetAll(ctx, ACDKey(prefix, cell, "operators"))
		calls = p.HGetAll(ctx, ACDKey(prefix, cell, "calls"))
		queue = p.LRange(ctx, ACDKey(prefix, cell, "queue"), 0, -1)
		return nil
	})
	if err != nil {
		return snap, false, fmt.Errorf("reading the floor of cell %s: %w", cell, err)
	}
	for id, v := range ops.Val() {
		var oi acd.OperatorInfo
		if err := json.Unmarshal([]byte(v), &oi); err != nil || oi.ID != id {
			return snap, false, fmt.Errorf("%s field %s: bad value %q", ACDKey(prefix, cell, "operators"), id, acdShorten(v, 200))
		}
		snap.Operators = append(snap.Operators, oi)
	}
	slices.SortFunc(snap.Operators, func(a, b acd.OperatorInfo) int { return strings.Compare(a.ID, b.ID) })
	for id, v := range calls.Val() {
		var ci acd.CallInfo
		if err := json.Unmarshal([]byte(v), &ci); err != nil || ci.ID != id {
			return snap, false, fmt.Errorf("%s field %s: bad value %q", ACDKey(prefix, cell, "calls"), id, acdShorten(v, 200))
		}
		snap.Calls = append(snap.Calls, ci)
	}
	slices.SortFunc(snap.Calls, func(a, b acd.CallInfo) int { return strings.Compare(a.ID, b.ID) })
	snap.Queue = queue.Val()
	found = len(snap.Operators) > 0 || len(snap.Calls) > 0 || len(snap.Queue) > 0
	return snap, found, nil
}

// Load reads the floor saved by the previous queue manager of the cell.
func (s *ACDStore) Load(ctx context.Context) (acd.Snapshot, bool, error) {
	return ACDLoad(ctx, s.rdb, s.prefix, s.cell)
}

// acdWriteScript checks the lease is ours, then runs the commands encoded
// in ARGV[2…] as: name, key index (1-based in KEYS), argument count,
// arguments. Only the commands below are allowed; CALLNOTE records on a
// call of the bridge (P:{C}:call:<id>, a key passed after the fixed ones)
// when an operator was rung for it and who answered it, on Redis's clock
// (contract section 2: operator, connected_at).
var acdWriteScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('ACDLEASE the queue manager lease is not ours')
end
local allowed = {HSET=true, HDEL=true, DEL=true, RPUSH=true, LPUSH=true, LREM=true, XADD=true, CALLNOTE=true}
local i = 2
while i <= #ARGV do
  local cmd = ARGV[i]
  local key = KEYS[tonumber(ARGV[i+1])]
  local n = tonumber(ARGV[i+2])
  if not allowed[cmd] or not key then
    return redis.error_reply('ERR acd write script: bad operation ' .. tostring(cmd))
  end
  local args = {}
  for j = 1, n do args[j] = ARGV[i+2+j] end
  if cmd == 'CALLNOTE' then
    -- args: "ring" or "answer", operator. Only a call of the bridge that
    -- is answered and not yet settled (pacing_result.go seals it) takes
    -- the note; ids typed on the console have no such hash.
    local h = redis.call('HMGET', key, 'state', 'operator', 'sealed')
    if h[1] == 'answered' and not h[2] and not h[3] then
      local t = redis.call('TIME')
      local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
      if args[1] == 'answer' then
        redis.call('HSET', key, 'operator', args[2], 'connected_ms', ms)
      else
        redis.call('HSET', key, 'delivered_ms', ms)
      end
    end
  else
    redis.call(cmd, key, unpack(args))
  end
  i = i + 3 + n
end
return 1
`)

// acdChunk bounds the arguments of one command of the write script (Lua's
// unpack has a stack limit).
const acdChunk = 500

// acdWrite builds one run of the write script.
type acdWrite struct {
	args  []any
	calls []string // call hash keys, KEYS after the store's fixed ones
}

// note adds a CALLNOTE on the call hash key (its index counts from the
// store's fixed keys).
func (w *acdWrite) note(fixed int, key, kind, operator string) {
	w.calls = append(w.calls, key)
	w.args = append(w.args, "CALLNOTE", fixed+len(w.calls), 2, kind, operator)
}

func (w *acdWrite) add(cmd string, key int, args ...any) {
	w.args = append(w.args, cmd, key+1, len(args))
	w.args = append(w.args, args...)
}

func (s *ACDStore) logEntries(w *acdWrite, msgs []acd.Message, at time.Time) {
	ts := at.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	for _, m := range msgs {
		switch m.Kind {
		case acd.MsgRinging:
			w.note(len(s.keys), s.callKey(m.Call), "ring", m.Operator)
		case acd.MsgAnswered:
			w.note(len(s.keys), s.callKey(m.Call), "answer", m.Operator)
		}
		w.add("XADD", acdKLog, "MAXLEN", "~", s.opt.LogMaxLen, "*",
			"time", ts, "message", m.String(), "kind", m.Kind.String(), "call", m.Call, "operator", m.Operator)
	}
}

func (s *ACDStore) ackEntries(w *acdWrite, acks []string) {
	for _, a := range acks {
		w.add("LREM", acdKTaken, 1, a)
	}
}

func (s *ACDStore) run(ctx context.Context, w *acdWrite) error {
	if len(w.args) == 0 {
		return nil
	}
	argv := append([]any{s.opt.Instance}, w.args...)
	keys := s.keys
	if len(w.calls) > 0 {
		keys = append(slices.Clip(s.keys), w.calls...)
	}
	err := acdWriteScript.Run(ctx, s.rdb, keys, argv...).Err()
	if err != nil && strings.Contains(err.Error(), "ACDLEASE") {
		return ErrACDLeaseLost
	}
	return err
}

func acdJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings, times and enums
	}
	return string(b)
}

// Save writes the changes of one event, logs its messages and forgets the
// acknowledged inbox events, atomically.
func (s *ACDStore) Save(ctx context.Context, ch acd.Changes, msgs []acd.Message, at time.Time, acks []string) error {
	var w acdWrite
	if len(ch.Operators) > 0 {
		args := make([]any, 0, 2*len(ch.Operators))
		for _, o := range ch.Operators {
			args = append(args, o.ID, acdJSON(o))
		}
		w.add("HSET", acdKOperators, args...)
	}
	var set []any
	for _, c := range ch.Calls {
		if c.State == acd.Ended {
			w.add("HDEL", acdKCalls, c.ID)
		} else {
			set = append(set, c.ID, acdJSON(c))
		}
	}
	if len(set) > 0 {
		w.add("HSET", acdKCalls, set...)
	}
	for _, q := range ch.Queue {
		switch q.Kind {
		case acd.QueuePushBack:
			w.add("RPUSH", acdKQueue, q.Call)
		case acd.QueuePushFront:
			w.add("LPUSH", acdKQueue, q.Call)
		case acd.QueuePopFront, acd.QueueRemove:
			// LREM from the head: O(1) for the head, and right even if
			// the list were out of step.
			w.add("LREM", acdKQueue, 1, q.Call)
		}
	}
	s.logEntries(&w, msgs, at)
	s.ackEntries(&w, acks)
	return s.run(ctx, &w)
}

// SaveAll replaces the saved floor with snap, logs msgs and forgets the
// acknowledged inbox events, atomically.
func (s *ACDStore) SaveAll(ctx context.Context, snap acd.Snapshot, msgs []acd.Message, at time.Time, acks []string) error {
	var w acdWrite
	w.add("DEL", acdKOperators)
	w.add("DEL", acdKCalls)
	w.add("DEL", acdKQueue)
	for i := 0; i < len(snap.Operators); i += acdChunk {
		var args []any
		for _, o := range snap.Operators[i:min(i+acdChunk, len(snap.Operators))] {
			args = append(args, o.ID, acdJSON(o))
		}
		w.add("HSET", acdKOperators, args...)
	}
	for i := 0; i < len(snap.Calls); i += acdChunk {
		var args []any
		for _, c := range snap.Calls[i:min(i+acdChunk, len(snap.Calls))] {
			args = append(args, c.ID, acdJSON(c))
		}
		w.add("HSET", acdKCalls, args...)
	}
	for i := 0; i < len(snap.Queue); i += acdChunk {
		var args []any
		for _, id := range snap.Queue[i:min(i+acdChunk, len(snap.Queue))] {
			args = append(args, id)
		}
		w.add("RPUSH", acdKQueue, args...)
	}
	s.logEntries(&w, msgs, at)
	s.ackEntries(&w, acks)
	return s.run(ctx, &w)
}

// Reset forgets the saved floor (operators, calls, queue); the log and the
// inbox stay.
func (s *ACDStore) Reset(ctx context.Context) error {
	var w acdWrite
	w.add("DEL", acdKOperators)
	w.add("DEL", acdKCalls)
	w.add("DEL", acdKQueue)
	return s.run(ctx, &w)
}

// Pending returns the inbox events a previous run took but whose effect
// was never saved, oldest first.
func (s *ACDStore) Pending(ctx context.Context) ([]string, error) {
	taken, err := s.rdb.LRange(ctx, s.keys[acdKTaken], 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.keys[acdKTaken], err)
	}
	slices.Reverse(taken) // BLMOVE pushes on the left: the oldest is last
	return taken, nil
}

// Take waits up to wait (at least 1 s: go-redis rounds up) for the next
// inbox event and moves it to inbox:taken, where it stays until the save
// that includes its effect acknowledges it.
func (s *ACDStore) Take(ctx context.Context, wait time.Duration) (string, bool, error) {
	wait = max(wait, time.Second)
	ev, err := s.rdb.BLMove(ctx, s.keys[acdKInbox], s.keys[acdKTaken], "RIGHT", "LEFT", wait).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return ev, true, nil
}

// acdEvent is one inbox event.
type acdEvent struct {
	Command string `json:"command"`
	ID      string `json:"id"`
}

// ACDPushEvent hands an event of the bridge to the cell's queue manager:
// command "call" when a call was answered (it joins the operators' queue),
// "hangup" when it ended. Events wait in P:{C}:acd:inbox (FIFO) until the
// queue manager takes them, so none is lost while it is down.
func ACDPushEvent(ctx context.Context, rdb redis.Cmdable, prefix, cell, command, id string) error {
	if command != "call" && command != "hangup" {
		return fmt.Errorf("acd event: command must be call or hangup, got %q", command)
	}
	if !acd.ValidID(id) {
		return fmt.Errorf("acd event: invalid call id %q", acdShorten(id, 80))
	}
	b, _ := json.Marshal(acdEvent{Command: command, ID: id})
	return rdb.LPush(ctx, ACDKey(prefix, cell, "inbox"), b).Err()
}

func acdShorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
