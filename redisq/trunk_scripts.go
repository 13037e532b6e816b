package redisq

import "github.com/redis/go-redis/v9"

// The trunk limiter's scripts. Besides the rules of scripts.go, they share:
//   - time is Redis's own (TIME inside the script, in microseconds): every
//     daemon of every host sees one clock, whatever the hosts' clocks say.
//     Redis 7 replicates a script's effects, not the script, so a replica
//     stores the values computed here instead of running TIME itself;
//   - numbers written back go through string.format('%d'): Lua turns a
//     number argument into a string with "%.14g", which would round a
//     microsecond timestamp (16 digits);
//   - every key is in KEYS, all under the trunk's hash tag.

// trunkAcquireScript takes, for each of N Originates in order, a channel
// slot and a token, or neither: one script serves a daemon's tryDirect
// (N = 1) and its gate's waiter, which grants every call queued behind a
// saturated trunk's token in one round trip instead of one each.
//
//	KEYS[1] tat   KEYS[2] leases   KEYS[3] stats
//	KEYS[4] (optional) the host's breaker, peeked: a breaker stored open or
//	        half-open refuses (code 5) so that the caller asks the breaker's
//	        own rules (BreakerStore.Allow) before dialing; while it is closed,
//	        as it nearly always is, one round trip per Originate suffices
//	ARGV[1] emission interval µs (1/cps; 0 = no rate limit)
//	ARGV[2] tolerance µs ((burst-1) × interval)
//	ARGV[3] max channels (0 = no cap)   ARGV[4] lease TTL µs
//	ARGV[5] most µs a token may be reserved ahead (0: none)
//	ARGV[6…] lease ids, in the order they are to be served ("" = take no slot)
//
// Returns {TIME seconds, TIME µs, then per lease processed: code, wait µs,
// channels in use after it}; code 1 granted (wait > 0: reserved, the
// Originate must not be written before wait µs from TIME), 2 no token, 3 no
// channel, 4 granted earlier (the lease is already held: this is a retry
// whose first reply was lost, so no second token), 5 the breaker is not
// closed (nothing taken). Leases are processed until the first refusal for
// want of a token or a channel: a later one may not pass an earlier one, and
// a refusal takes nothing, so the unprocessed ones are simply asked again
// after the refusal's wait. A breaker not closed refuses every lease but
// held ones (code 4): each would be refused the same.
//
// The rate is GCRA: tat is when the schedule of Originates is booked up to.
// A request at now is granted when tat − now ≤ tolerance, and books one
// interval more: tat = max(tat, now) + interval. n grants in any window of
// length W then satisfy (n−1)·interval ≤ W + tolerance, i.e.
// n ≤ burst + W·cps: at cps 4, burst 1, W 0.97 s, at most 4. Refused, the
// caller can come back exactly when tat − tolerance is now. N leases in one
// script are exactly N scripts at the same instant, so the bound holds
// whatever N; the reserve-ahead window (ahead) is what lets more than burst
// of them pass, each with its own delay one interval after the previous.
//
// Expired leases are purged first, so a dead daemon's slots count again as
// soon as they expire; the slot is checked before the token, and nothing is
// written on a refusal but a counter, so a refusal takes neither.
var trunkAcquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tau = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxch, ttl, ahead = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]) or 0
local function int(x) return string.format('%d', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
local chans = redis.call('ZCARD', KEYS[2])
local closed = true
if KEYS[4] then
  local mode = redis.call('HGET', KEYS[4], 'mode')
  closed = not (mode == 'open' or mode == 'half_open')
end
local tat
if interval > 0 then
  tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
end
local out, granted, slots = {t[1], t[2]}, 0, 0
local function reply(code, wait)
  out[#out + 1] = code
  out[#out + 1] = wait
  out[#out + 1] = chans
end
for i = 6, #ARGV do
  local lease = ARGV[i]
  if lease ~= '' and redis.call('ZSCORE', KEYS[2], lease) then
    reply(4, 0)
  elseif not closed then
    reply(5, 0)
  elseif maxch > 0 and chans >= maxch then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    redis.call('HINCRBY', KEYS[3], 'no_channel', 1)
    reply(3, tonumber(first[2]) - now)
    break
  else
    local delay = 0
    if interval > 0 and tat - now > tau then
      delay = tat - tau - now
      if delay > ahead then
        redis.call('HINCRBY', KEYS[3], 'no_token', 1)
        reply(2, delay - ahead)
        break
      end
    end
    if interval > 0 then tat = tat + interval end
    if lease ~= '' then
      redis.call('ZADD', KEYS[2], int(now + ttl), lease)
      chans = chans + 1
      slots = slots + 1
    end
    granted = granted + 1
    reply(1, delay)
  end
end
if granted > 0 then
  if interval > 0 then
    redis.call('SET', KEYS[1], int(tat), 'PX', int(math.floor((tat - now) / 1000) + 1000))
  end
  if slots > 0 then
    redis.call('PEXPIRE', KEYS[2], int(math.floor(ttl / 1000) + 1000))
  end
  local s = redis.call('HMGET', KEYS[3], 'sec', 'n')
  if s[1] == t[1] then
    redis.call('HINCRBY', KEYS[3], 'n', granted)
  else
    local prev = 0
    if tonumber(s[1]) == tonumber(t[1]) - 1 then prev = tonumber(s[2]) or 0 end
    redis.call('HSET', KEYS[3], 'sec', t[1], 'n', granted, 'prev', prev)
  end
  redis.call('HINCRBY', KEYS[3], 'granted', granted)
end
return out
`)

// trunkRenewScript extends the leases of calls still in progress.
//
//	KEYS[1] leases   ARGV[1] lease TTL µs   ARGV[2…] lease ids
//
// Returns the ids that were not held (expired, or released): they are not
// added back, because a lease released while this renewal was on its way
// must stay released; the caller logs them. The ZSET's own TTL follows its
// newest expiry, so a trunk nobody dials any more leaves nothing behind.
// Two commands whatever the batch (ZMSCORE, ZADD; Redis ≥ 6.2): the
// renewal of a busy daemon's calls is one short script every few seconds.
var trunkRenewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local function int(x) return string.format('%d', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
local exp = int(now + ttl)
local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, 2))
local kept, lost = {}, {}
for i = 2, #ARGV do
  if scores[i - 1] then
    kept[#kept + 1] = exp
    kept[#kept + 1] = ARGV[i]
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if #kept > 0 then
  redis.call('ZADD', KEYS[1], unpack(kept))
  redis.call('PEXPIRE', KEYS[1], int(math.floor(ttl / 1000) + 1000))
end
return lost
`)

// trunkAdoptScript holds leases from now on, held or not, over the cap.
//
//	KEYS[1] leases   ARGV[1] lease TTL µs   ARGV[2…] lease ids
var trunkAdoptScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local function int(x) return string.format('%d', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
local exp, args = int(now + ttl), {}
for i = 2, #ARGV do
  args[#args + 1] = exp
  args[#args + 1] = ARGV[i]
end
if #args > 0 then
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], int(math.floor(ttl / 1000) + 1000))
end
return #args / 2
`)

// trunkUsageScript reads what the monitor and the metrics show.
//
//	KEYS[1] tat   KEYS[2] leases   KEYS[3] stats
//
// Returns {TIME s, TIME µs, live leases, grants in the last complete
// second, grants so far this second, granted, no_token, no_channel,
// µs the token schedule is booked beyond now}.
var trunkUsageScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local sec = tonumber(t[1])
local chans = redis.call('ZCOUNT', KEYS[2], '(' .. string.format('%d', now), '+inf')
local s = redis.call('HMGET', KEYS[3], 'sec', 'n', 'prev', 'granted', 'no_token', 'no_channel')
local last, n, prev = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
local full, cur = 0, 0
if last == sec then full, cur = prev, n elseif last == sec - 1 then full = n end
local ahead = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if ahead < 0 then ahead = 0 end
return {t[1], t[2], chans, full, cur, tonumber(s[4]) or 0, tonumber(s[5]) or 0, tonumber(s[6]) or 0, ahead}
`)
