package redisq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// The cell-wide pacing budget (contract section 6): one pacer per cell (the
// leader, pacing_leader.go) writes how many calls may be dialing in
// P:{C}:pacing; every daemon of the cell starts calls against it through
// PacingAdmission, whose script takes a slot only while dialing < budget.
//
//	P:{C}:pacing        hash  the pacer's state (section 6: mode, level,
//	                          available, busy, ringing, waiting, dialing,
//	                          answer_rate, abandon_rate_window,
//	                          abandon_rate_day, updated_at) and ours: budget,
//	                          budget_us (Redis TIME of the decision), reason,
//	                          hard_limit, leader, state (the controller's)
//	P:{C}:pacing:slots  zset  one member per call dialing,
//	                          "<taken ms>|<instance>|<n>", scored by its
//	                          lease's expiry (Redis TIME, µs): a dead
//	                          daemon's slots come back within PacingSlotTTL
//	P:{C}:pacing:answered zset slots of calls answered lately, scored by
//	                          the answer's Redis TIME (ms): the admission
//	                          counts the ones answered after the pacer's
//	                          look at the operators (obs_ms) against the
//	                          budget, since that look cannot have seen
//	                          them take an operator or join the queue
//	P:{C}:pacing:leader string the pacer's lease (SET NX PX, renewed)

// Pacing timings.
const (
	// PacingSlotTTL is how long a slot outlives its last renewal (every
	// PacingRenewEvery): a daemon killed with -9 holds its calls' slots
	// 12–15 s, the contract's recovery bound.
	PacingSlotTTL    = 15 * time.Second
	PacingRenewEvery = 3 * time.Second
	// PacingBudgetMaxAge: a budget older than this is not used (its pacer
	// is gone); the cell dials nothing until a pacer writes a fresh one.
	PacingBudgetMaxAge = 5 * time.Second
)

// PacingKeys are the pacing keys of a cell.
type PacingKeys struct{ k Keys }

// NewPacingKeys returns the pacing keys of the cell of k.
func NewPacingKeys(k Keys) PacingKeys { return PacingKeys{k} }

// State is P:{C}:pacing.
func (p PacingKeys) State() string { return p.k.Base() + "pacing" }

// Slots is P:{C}:pacing:slots.
func (p PacingKeys) Slots() string { return p.k.Base() + "pacing:slots" }

// Leader is P:{C}:pacing:leader.
func (p PacingKeys) Leader() string { return p.k.Base() + "pacing:leader" }

// Log is P:{C}:pacing:log.
func (p PacingKeys) Log() string { return PacingLogKey(p.k) }

// Answered is P:{C}:pacing:answered.
func (p PacingKeys) Answered() string { return p.k.Base() + "pacing:answered" }

// Day is P:{C}:pacing:day.
func (p PacingKeys) Day() string { return PacingDayKey(p.k) }

// pacingAdmitScript takes up to want slots while dialing < budget.
//
//	KEYS[1] pacing   KEYS[2] slots   KEYS[3] answered
//	ARGV[1] budget max age µs   ARGV[2] slot TTL µs   ARGV[3] member stem
//	("<instance>|")   ARGV[4] first sequence number   ARGV[5] want
//
// Returns {taken, dialing after, budget (-1: none usable), why the cell
// dials nothing ("" = it may dial), TIME ms}.
var pacingAdmitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowms = math.floor(now / 1000)
local function int(x) return string.format('%d', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
local dialing = redis.call('ZCARD', KEYS[2])
local b = redis.call('HMGET', KEYS[1], 'budget', 'budget_us', 'nothing', 'obs_ms')
if not b[1] or not b[2] then
  return {0, dialing, -1, 'no pacer has written a budget yet', int(nowms)}
end
if now - tonumber(b[2]) > tonumber(ARGV[1]) then
  return {0, dialing, -1, 'the pacer is silent (its budget is stale)', int(nowms)}
end
local budget = tonumber(b[1])
local late = redis.call('ZCOUNT', KEYS[3], '(' .. (b[4] or '0'), '+inf')
local n = math.min(tonumber(ARGV[5]), budget - dialing - late)
if n < 0 then n = 0 end
local seq = tonumber(ARGV[4])
local args = {}
for i = 1, n do
  args[#args + 1] = int(now + tonumber(ARGV[2]))
  args[#args + 1] = int(nowms) .. '|' .. ARGV[3] .. int(seq + i - 1)
end
if n > 0 then
  redis.call('ZADD', KEYS[2], unpack(args))
  redis.call('PEXPIRE', KEYS[2], int(math.floor(tonumber(ARGV[2]) / 1000) + 1000))
end
return {n, dialing + n, budget, b[3] or '', int(nowms)}
`)

// PacingStatus is what a daemon last learnt of its cell's budget.
type PacingStatus struct {
	Budget  int    // -1: no usable budget
	Dialing int    // calls of the cell dialing, every daemon
	Held    int    // slots this daemon holds
	Nothing string // why the cell dials nothing ("" = it may dial)
	Err     error  // the last Admit's Redis error
	At      time.Time
}

// DialsNothing says why the paced cell starts no call at all now ("" when
// it may): no usable budget, the queue manager not running or unreadable,
// no operator logged in. A budget of 0 because every operator is busy is
// pacing, not this.
func (s PacingStatus) DialsNothing() string {
	if s.Err != nil {
		return "pacing budget unreadable: " + s.Err.Error()
	}
	return s.Nothing
}

// PacingAdmission is the bridge.Admission of a paced cell: a slot in
// P:{C}:pacing:slots per command claimed and not yet answered or settled.
type PacingAdmission struct {
	rdb      redis.Cmdable
	keys     PacingKeys
	stem     string
	ttl      time.Duration
	maxAge   time.Duration
	wake     chan struct{}
	onChange func(PacingStatus)                           // called when DialsNothing changes
	onAdmit  atomic.Pointer[func(n int, st PacingStatus)] // tests: every Admit's answer

	mu     sync.Mutex
	seq    int64
	held   []string // slots held, oldest first
	status PacingStatus
	gone   chan slotEnd // slots to remove (Release, Unused)
}

var _ bridge.Admission = (*PacingAdmission)(nil)

// NewPacingAdmission returns the admission of instance in the cell of k.
// onChange (may be nil) hears each change of what DialsNothing says, for
// the one log line per change.
func NewPacingAdmission(rdb redis.Cmdable, k Keys, instance string, onChange func(PacingStatus)) *PacingAdmission {
	return &PacingAdmission{
		rdb: rdb, keys: NewPacingKeys(k), stem: instance + "|",
		ttl: PacingSlotTTL, maxAge: PacingBudgetMaxAge,
		wake: make(chan struct{}, 1), onChange: onChange,
		status: PacingStatus{Budget: -1, Nothing: "no pacing budget read yet"},
		gone:   make(chan slotEnd, 4096),
	}
}

// Admit implements bridge.Admission: one script.
func (a *PacingAdmission) Admit(ctx context.Context, want int) (int, error) {
	if want <= 0 {
		return 0, nil
	}
	a.mu.Lock()
	first := a.seq
	a.seq += int64(want)
	a.mu.Unlock()
	v, err := pacingAdmitScript.Run(ctx, a.rdb, []string{a.keys.State(), a.keys.Slots(), a.keys.Answered()},
		a.maxAge.Microseconds(), a.ttl.Microseconds(), a.stem, first, want).Slice()
	if err == nil && len(v) != 5 {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		a.setStatus(PacingStatus{Budget: -1, Err: err, At: time.Now()}, 0)
		return 0, fmt.Errorf("pacing admission: %w", err)
	}
	n := int(luaInt(v[0]))
	st := PacingStatus{Dialing: int(luaInt(v[1])), Budget: int(luaInt(v[2])), Nothing: fmt.Sprint(v[3]), At: time.Now()}
	at := strconv.FormatInt(luaInt(v[4]), 10)
	a.mu.Lock()
	for i := range n {
		a.held = append(a.held, at+"|"+a.stem+strconv.FormatInt(first+int64(i), 10))
	}
	a.mu.Unlock()
	a.setStatus(st, n)
	if f := a.onAdmit.Load(); f != nil {
		(*f)(n, st)
	}
	return n, nil
}

func (a *PacingAdmission) setStatus(st PacingStatus, _ int) {
	a.mu.Lock()
	prev := a.status.DialsNothing()
	st.Held = len(a.held)
	a.status = st
	a.mu.Unlock()
	if a.onChange != nil && st.DialsNothing() != prev {
		a.onChange(st)
	}
}

// OnAdmit sets a function that hears every Admit's answer (n slots taken,
// the status after); for tests that check the budget at every start. It
// may be set while the claim loop runs (the daemon starts claiming before
// a test can reach it).
func (a *PacingAdmission) OnAdmit(f func(n int, st PacingStatus)) { a.onAdmit.Store(&f) }

// Status is what the last Admit learnt.
func (a *PacingAdmission) Status() PacingStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Held = len(a.held)
	return s
}

// Unused implements bridge.Admission: the newest n slots go back.
func (a *PacingAdmission) Unused(n int) {
	a.mu.Lock()
	n = min(n, len(a.held))
	drop := a.held[len(a.held)-n:]
	a.held = a.held[:len(a.held)-n]
	a.mu.Unlock()
	for i := len(drop) - 1; i >= 0; i-- {
		a.remove(slotEnd{member: drop[i]})
	}
	a.signal()
}

// Release implements bridge.Admission: the oldest slot goes back (slots
// are interchangeable; the oldest is most likely the call that ended, and
// its age is what the pacer reads as the calls' time dialing).
func (a *PacingAdmission) Release(call *bridge.Call) {
	a.mu.Lock()
	if len(a.held) == 0 {
		a.mu.Unlock()
		return
	}
	s := a.held[0]
	a.held = a.held[1:]
	a.mu.Unlock()
	a.remove(slotEnd{member: s, answered: call != nil && call.State == bridge.StateAnswered})
	a.signal()
}

// slotEnd is a slot given back; answered: its call was answered (it moves
// to P:{C}:pacing:answered).
type slotEnd struct {
	member   string
	answered bool
}

// remove hands a slot to the remover; when its queue is full the slot
// simply expires (it is no longer renewed).
func (a *PacingAdmission) remove(s slotEnd) {
	select {
	case a.gone <- s:
	default:
	}
}

func (a *PacingAdmission) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Wake implements bridge.Admission.
func (a *PacingAdmission) Wake() <-chan struct{} { return a.wake }

// Run removes released slots and renews held ones until ctx ends; then it
// removes every slot still held (a clean stop gives them back at once).
func (a *PacingAdmission) Run(ctx context.Context) error {
	t := time.NewTicker(PacingRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			a.endSlots(sctx, a.takeGone(nil))
			a.mu.Lock()
			left := a.held
			a.held = nil
			a.mu.Unlock()
			if len(left) > 0 {
				_ = a.rdb.ZRem(sctx, a.keys.Slots(), anySlice(left)...).Err()
			}
			return nil
		case e := <-a.gone:
			// Failures are left alone: a slot no longer renewed expires.
			a.endSlots(ctx, a.takeGone([]slotEnd{e}))
		case <-t.C:
			_ = a.renew(ctx) // retried at the next tick; the TTL covers four misses
		}
	}
}

// takeGone adds what waits in the gone queue to batch, up to renewBatch.
func (a *PacingAdmission) takeGone(batch []slotEnd) []slotEnd {
	for len(batch) < renewBatch {
		select {
		case e := <-a.gone:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	return batch
}

// endSlots gives slots back in one script.
func (a *PacingAdmission) endSlots(ctx context.Context, batch []slotEnd) {
	if len(batch) == 0 {
		return
	}
	args := make([]any, 0, 2*len(batch))
	for _, e := range batch {
		args = append(args, boolArg(e.answered), e.member)
	}
	_ = pacingEndScript.Run(ctx, a.rdb, []string{a.keys.Slots(), a.keys.Answered()}, args...).Err()
}

// pacingEndScript removes slots; an answered call's slot moves to the
// answered set, scored by Redis TIME (ms), whose entries older than a
// minute go.
//
//	KEYS[1] slots   KEYS[2] answered   ARGV pairs: "1" answered / "0", member
var pacingEndScript = redis.NewScript(`
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local any = false
for i = 1, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i + 1])
  if ARGV[i] == '1' then
    redis.call('ZADD', KEYS[2], string.format('%d', nowms), ARGV[i + 1])
    any = true
  end
end
if any then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', nowms - 60000))
  redis.call('PEXPIRE', KEYS[2], 120000)
end
return 1
`)

// renew extends the held slots' leases (ZADD XX: a slot given back
// meanwhile is not added again).
func (a *PacingAdmission) renew(ctx context.Context) error {
	a.mu.Lock()
	held := append([]string(nil), a.held...)
	a.mu.Unlock()
	for i := 0; i < len(held); i += renewBatch {
		part := held[i:min(i+renewBatch, len(held))]
		if err := pacingRenewScript.Run(ctx, a.rdb, []string{a.keys.Slots()}, append([]any{a.ttl.Microseconds()}, anySlice(part)...)...).Err(); err != nil {
			return fmt.Errorf("renewing pacing slots: %w", err)
		}
	}
	return nil
}

// pacingRenewScript sets the slots' expiry to now + TTL on Redis's clock.
//
//	KEYS[1] slots   ARGV[1] TTL µs   ARGV[2…] members
var pacingRenewScript = redis.NewScript(`
local t = redis.call('TIME')
local exp = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = exp
  args[#args + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
return #args / 2
`)

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// slotTakenMS is the time a slot member was taken (ms), 0 when unreadable.
func slotTakenMS(member string) int64 {
	ms, _, ok := strings.Cut(member, "|")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}
