package redisq

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// BreakerKey is the breaker hash of one (host, trunk) (contract section 7):
// "P:{trunk:<name>}:breaker:<host>", in the trunk's Cluster slot.
func BreakerKey(prefix, trunk, host string) string {
	return NewTrunkKeys(prefix, trunk).Breaker(host)
}

// breakerScript runs bridge's breaker rules (bridge/breaker.go: View,
// Acquire, Record) atomically on the shared hash, so that every daemon of a
// host sees one breaker: one of them opens it, one takes the probe. It must
// stay in step with the Go rules, line for line; TestBreakerLuaMatchesGo
// runs both on the same sequences.
//
//	KEYS[1] P:{trunk:<name>}:breaker:<host>
//	ARGV[1] op: "view" (writes nothing), "acquire" or "record"
//	ARGV[2] now (ms, the host's clock)   ARGV[3] failures   ARGV[4] cooldown (ms)
//	ARGV[5] probe lease (ms)   ARGV[6] TTL of a non-zero state (ms)
//	ARGV[7] token   ARGV[8] verdict (record)   ARGV[9] event id (record)
//
// Fields: mode, failures, opened_at, until, probe, probe_until (ms; 0 =
// none), last. A closed breaker with no failures is no hash at all.
//
// Returns {allow, probe, <stored state before>, <state after>}, each state
// as mode, failures, opened_at, until, probe, probe_until, last.
//
// Time comes from the caller, not Redis TIME: the key is one host's, and
// only that host's daemons, on that host's clock, read and write it; that
// keeps the script deterministic, so the Go rules can be checked against it
// in virtual time. A step of the host's clock is bounded by the rules.
var breakerScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local maxf = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local token = ARGV[7]

local v = redis.call('HMGET', KEYS[1], 'mode', 'failures', 'opened_at', 'until', 'probe', 'probe_until', 'last')
local function load()
  return {mode = v[1] or 'closed', failures = tonumber(v[2] or '0') or 0,
    opened_at = tonumber(v[3] or '0') or 0, untl = tonumber(v[4] or '0') or 0,
    probe = v[5] or '', probe_until = tonumber(v[6] or '0') or 0, last = v[7] or ''}
end
local prev = load()
local s = load()
local function reset()
  s.mode = 'closed'; s.failures = 0; s.opened_at = 0; s.untl = 0
  s.probe = ''; s.probe_until = 0; s.last = ''
end

-- View
if s.mode ~= 'open' and s.mode ~= 'half_open' then s.mode = 'closed' end
if s.mode == 'closed' and s.failures <= 0 then reset() end
if s.mode == 'open' then
  if s.untl > now + cooldown then s.untl = now + cooldown end
  if now >= s.untl then
    s.mode = 'half_open'; s.untl = 0; s.probe = ''; s.probe_until = 0
  end
end
if s.mode == 'half_open' and s.probe ~= '' then
  if s.probe_until > now + lease then s.probe_until = now + lease end
  if now >= s.probe_until then s.probe = ''; s.probe_until = 0 end
end

local allow, probe = 0, 0
local op = ARGV[1]
if op == 'acquire' then
  if s.mode == 'closed' then
    allow = 1
  elseif s.mode == 'half_open' and token ~= '' then
    if s.probe == '' then
      s.probe = token; s.probe_until = now + lease
      allow = 1; probe = 1
    elseif s.probe == token then
      allow = 1; probe = 1
    end
  end
elseif op == 'record' then
  local verdict, eid = ARGV[8], ARGV[9]
  if not (eid ~= '' and eid == s.last) then
    local changed = false
    if s.mode == 'closed' then
      if verdict == 'failure' then
        s.failures = s.failures + 1
        if s.failures >= maxf then
          s.mode = 'open'; s.opened_at = now; s.untl = now + cooldown
        end
        changed = true
      elseif verdict == 'success' then
        reset()
      end
    elseif s.mode == 'half_open' and token ~= '' and token == s.probe then
      if verdict == 'failure' then
        s.mode = 'open'; s.opened_at = now; s.untl = now + cooldown
        s.probe = ''; s.probe_until = 0
      elseif verdict == 'success' then
        reset()
      else
        s.probe = ''; s.probe_until = 0
      end
      changed = s.mode ~= 'closed'
    end
    if changed then s.last = eid end
  end
end

local function flat(x)
  return {x.mode, x.failures, x.opened_at, x.untl, x.probe, x.probe_until, x.last}
end
if op ~= 'view' then
  local a, b = flat(prev), flat(s)
  local same = true
  for i = 1, #a do if a[i] ~= b[i] then same = false end end
  if not same then
    if s.mode == 'closed' and s.failures <= 0 then
      redis.call('DEL', KEYS[1])
    else
      redis.call('HSET', KEYS[1], 'mode', s.mode, 'failures', s.failures,
        'opened_at', s.opened_at, 'until', s.untl, 'probe', s.probe,
        'probe_until', s.probe_until, 'last', s.last)
      redis.call('PEXPIRE', KEYS[1], ARGV[6])
    end
  end
end
local out = {allow, probe}
for _, x in ipairs(flat(prev)) do out[#out + 1] = x end
for _, x in ipairs(flat(s)) do out[#out + 1] = x end
return out
`)

// breakerForget is how long a breaker not closed-and-clean stays in Redis
// after its last change, beyond its cooldown and probe lease: long enough
// that no live daemon can miss it, short enough that a trunk removed from
// the settings leaves nothing behind for good. Consecutive failures more
// than this apart are not consecutive.
const breakerForget = 24 * time.Hour

// BreakerStore is the breaker of one (host, trunk), shared through Redis by
// every daemon of the host. Its methods are one script round trip each and
// apply bridge.BreakerConfig's rules atomically. Times are the host's clock
// in milliseconds.
type BreakerStore struct {
	rdb redis.Scripter
	key string
	cfg bridge.BreakerConfig
	now func() time.Time
}

// NewBreakerStore returns the breaker of trunk on host (the host's name, as
// the heartbeat reports it).
func NewBreakerStore(rdb redis.Scripter, prefix, trunk, host string, cfg bridge.BreakerConfig) *BreakerStore {
	return &BreakerStore{rdb: rdb, key: BreakerKey(prefix, trunk, host), cfg: cfg, now: time.Now}
}

// Key is the breaker's Redis key.
func (b *BreakerStore) Key() string { return b.key }

// SetClock replaces time.Now (tests run the breaker in virtual time).
func (b *BreakerStore) SetClock(now func() time.Time) { b.now = now }

// BreakerAllow is the answer to Allow.
type BreakerAllow struct {
	bridge.BreakerDecision
	// The stored state before and after: a daemon that sees a change of
	// mode logs it (only one daemon of the host sees each change).
	bridge.BreakerTransition
}

// Allow asks whether a call may dial now on this trunk; token identifies
// the call (see bridge.BreakerConfig.Acquire: the call that finds the
// breaker half-open becomes the probe; "" never does).
func (b *BreakerStore) Allow(ctx context.Context, token string) (BreakerAllow, error) {
	allow, probe, tr, err := b.run(ctx, "acquire", token, "", "")
	if err != nil {
		return BreakerAllow{}, fmt.Errorf("breaker %s: allow: %w", b.key, err)
	}
	d := bridge.BreakerDecision{Allow: allow, Probe: probe}
	if !allow {
		d.RetryAt = tr.To.RetryAt()
	}
	return BreakerAllow{BreakerDecision: d, BreakerTransition: tr}, nil
}

// Record applies a finished call's verdict (bridge.ClassifyBreakerOutcome)
// and returns the stored state before and after. A neutral verdict matters
// only for the probe, which it gives back; the caller may skip the round
// trip for other neutral outcomes.
func (b *BreakerStore) Record(ctx context.Context, ev bridge.BreakerEvent) (bridge.BreakerTransition, error) {
	_, _, tr, err := b.run(ctx, "record", ev.Token, string(ev.Verdict), ev.ID)
	if err != nil {
		return tr, fmt.Errorf("breaker %s: record %s: %w", b.key, ev.Verdict, err)
	}
	return tr, nil
}

// Release gives back a probe that will not dial (the daemon took it and
// found nothing to dial, or is stopping).
func (b *BreakerStore) Release(ctx context.Context, token string) (bridge.BreakerTransition, error) {
	return b.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerNeutral, Token: token})
}

// State is the breaker as it stands now, for the heartbeat, /healthz, the
// metrics and the monitor; it writes nothing.
func (b *BreakerStore) State(ctx context.Context) (bridge.BreakerState, error) {
	_, _, tr, err := b.run(ctx, "view", "", "", "")
	if err != nil {
		return bridge.BreakerState{}, fmt.Errorf("breaker %s: state: %w", b.key, err)
	}
	return tr.To, nil
}

func (b *BreakerStore) run(ctx context.Context, op, token, verdict, id string) (allow, probe bool, tr bridge.BreakerTransition, err error) {
	c := b.cfg
	lease := c.ProbeLease
	if lease <= 0 {
		lease = bridge.DefaultProbeLease
	}
	cooldown := max(0, c.Cooldown)
	ttl := cooldown + lease + breakerForget
	res, err := breakerScript.Run(ctx, b.rdb, []string{b.key},
		op, b.now().UnixMilli(), max(1, c.Failures), cooldown.Milliseconds(), lease.Milliseconds(),
		ttl.Milliseconds(), token, verdict, id).Slice()
	if err != nil {
		return false, false, tr, err
	}
	if len(res) != 16 {
		return false, false, tr, fmt.Errorf("breaker script returned %d values, want 16", len(res))
	}
	if tr.From, err = breakerStateOf(res[2:9]); err != nil {
		return false, false, tr, err
	}
	if tr.To, err = breakerStateOf(res[9:16]); err != nil {
		return false, false, tr, err
	}
	return replyInt(res[0]) == 1, replyInt(res[1]) == 1, tr, nil
}

func replyInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// breakerStateOf decodes mode, failures, opened_at, until, probe,
// probe_until, last.
func breakerStateOf(f []any) (bridge.BreakerState, error) {
	str := func(v any) (string, error) {
		switch x := v.(type) {
		case string:
			return x, nil
		case nil:
			return "", nil
		}
		return "", fmt.Errorf("breaker script: unexpected %T in reply", v)
	}
	ms := func(v any) time.Time {
		if n := replyInt(v); n != 0 {
			return time.UnixMilli(n)
		}
		return time.Time{}
	}
	mode, err := str(f[0])
	if err != nil {
		return bridge.BreakerState{}, err
	}
	probe, err := str(f[4])
	if err != nil {
		return bridge.BreakerState{}, err
	}
	last, err := str(f[6])
	if err != nil {
		return bridge.BreakerState{}, err
	}
	return bridge.BreakerState{
		Mode:       bridge.BreakerMode(mode),
		Failures:   int(replyInt(f[1])),
		OpenedAt:   ms(f[2]),
		Until:      ms(f[3]),
		Probe:      probe,
		ProbeUntil: ms(f[5]),
		LastEvent:  last,
	}, nil
}
