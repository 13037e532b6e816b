package redisq

import "github.com/redis/go-redis/v9"

// The Lua scripts. Rules they all follow, so they behave the same on Redis 7
// and miniredis and stay legal on Redis Cluster:
//   - no blocking commands, no KEYS/SCAN;
//   - every key a script touches is in KEYS, and all of one call's keys
//     share one hash tag ({C} for a cell, {trunk:<name>} for a trunk), so
//     they are in one Cluster slot (scripts_keys_test.go checks both);
//   - each is safe to run twice with the same arguments (go-redis retries a
//     command whose reply was lost, and so does bridge's persist loop).
//
// redis.call returns false for a nil reply, so "HGET … == 'x'" is false for a
// missing key or field.

// beginScript records a new call: status hash + ACK + counter, atomically,
// unless the call hash already exists.
//
//	KEYS[1] call:<id>   KEYS[2] ack   KEYS[3] stats
//	ARGV[1] claim token (may be "")   ARGV[2] ACK JSON   ARGV[3] safety TTL (s)
//	ARGV[4…] field, value, … for the hash (includes token)
//
// Returns 0 created, 1 duplicate (nothing changed), 2 already created by this
// very claim (same token: a retry after a lost reply; nothing changed).
var beginScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
    return 2
  end
  return 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'claimed', 1)
return 0
`)

// markScript updates a call hash in progress (MarkDialing, MarkAnswered).
//
//	KEYS[1] call:<id>   KEYS[2] stats
//	ARGV[1] counter to add 1 to when the state changes ("" = none)
//	ARGV[2] safety TTL (s), applied only when the hash has no TTL
//	ARGV[3] the claim's token ("" = do not check)
//	ARGV[4] "state"   ARGV[5] new state   ARGV[6…] more field, value pairs
//
// A hash whose state is already "done" (settled, possibly by another
// instance's recovery) is left alone: returns 0. A hash that is missing or
// carries another claim's token (recovery requeued the command: it is no
// longer ours) is left alone too: returns -1. Otherwise returns 1. The
// counter moves only on a state change, so a retry or a second attempt of
// the same call does not count twice.
var markScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'token')
local prev = v[1]
if prev == 'done' then return 0 end
if ARGV[3] ~= '' and v[2] ~= ARGV[3] then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[1] ~= '' and prev ~= ARGV[5] then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
`)

// finishScript settles a command: removes it from the claimed list, pushes
// its result, updates the call hash and counts, atomically.
//
//	KEYS[1] claimed:<inst>   KEYS[2] results   KEYS[3] call:<id>   KEYS[4] stats
//	KEYS[5] acd:inbox (the queue manager's; written only when ARGV[7] is set)
//	KEYS[6] (optional) settled:<nonce> marker of this settle operation
//	ARGV[1] raw   ARGV[2] result JSON   ARGV[3] status   ARGV[4] "1" if the
//	status owns the call hash   ARGV[5] hash TTL (s)   ARGV[6] marker TTL (s)
//	ARGV[7] queue manager "hangup" event ("" = none; a "call" event is
//	pushed first when the hash never said "answered")   ARGV[8] inbox cap
//	ARGV[9…] field, value, … for the hash
//
// Returns 1 settled, 0 already settled (nothing changed):
//   - the marker exists: this very operation already ran (lost reply);
//   - the status owns the hash and the hash already says "done": the call
//     was settled (by us, or by recovery) — the claimed list is not touched,
//     so an identical copy of raw claimed by a duplicate stays for its own
//     Finish;
//   - raw is not in the claimed list.
//
// LREM counts from the tail (-1): claims are pushed at the head, and the call
// that ends is most often among the oldest, so with thousands of calls held
// the scan is short (with 1 it crossed every newer claim: ~94 µs at 4,000).
var finishScript = redis.NewScript(`
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
local owns = ARGV[4] == '1'
if owns and redis.call('HGET', KEYS[3], 'state') == 'done' then return 0 end
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
if ARGV[7] ~= '' then
  local inbox = KEYS[5]
  -- A call that ended before it was marked answered (MarkAnswered was
  -- skipped) never told the queue manager: "call" first, then "hangup".
  if redis.call('HGET', KEYS[3], 'state') ~= 'answered' then
    redis.call('LPUSH', inbox, (string.gsub(ARGV[7], '"hangup"', '"call"', 1)))
  end
  redis.call('LPUSH', inbox, ARGV[7])
  redis.call('LTRIM', inbox, 0, tonumber(ARGV[8]) - 1)
end
if owns then
  redis.call('HSET', KEYS[3], unpack(ARGV, 9))
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
redis.call('HINCRBY', KEYS[4], 'results', 1)
if KEYS[6] then redis.call('SET', KEYS[6], '1', 'EX', ARGV[6]) end
return 1
`)

// buryScript settles a command that could not be parsed.
//
//	KEYS[1] claimed:<inst>   KEYS[2] dead   KEYS[3] results   KEYS[4] stats
//	KEYS[5] (optional) settled:<nonce> marker
//	ARGV[1] raw   ARGV[2] dead entry JSON   ARGV[3] result JSON or ""
//	ARGV[4] result status (counter name)   ARGV[5] marker TTL (s)
//	ARGV[6] dead list cap
//
// Returns 1 settled, 0 already settled (nothing changed).
var buryScript = redis.NewScript(`
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
redis.call('HINCRBY', KEYS[4], 'dead', 1)
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  redis.call('HINCRBY', KEYS[4], 'results', 1)
end
if KEYS[5] then redis.call('SET', KEYS[5], '1', 'EX', ARGV[5]) end
return 1
`)

// forwardScript handles a confirmation for an id no local call waits for:
// when another instance of the cell owns the call and still waits for its
// confirmation, the message goes to that instance's private confirm list.
// The owner is data in the call hash, and a script may not build a key
// from data (Redis Cluster wants every key in KEYS): the caller reads the
// owner first (HMGET state, instance) and names its list; the script checks
// the read still holds.
//
//	KEYS[1] call:<id>   KEYS[2] confirm:<owner read> (any key of the cell
//	when no owner was read)   KEYS[3] stats
//	ARGV[1] my instance   ARGV[2] raw message   ARGV[3] private list TTL (ms)
//	ARGV[4] the owner the caller read ("" = none)
//
// Returns {1, owner} forwarded to KEYS[2]; {0, ""} unknown (counted as
// confirm_unknown); {2, owner} the hash names another owner than the read
// (it changed in between): nothing done, the caller asks again with it.
// The private list gets a TTL so that one left behind by a dead instance
// disappears.
var forwardScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'instance')
local owner = v[2]
if v[1] == 'acked' and owner and owner ~= '' and owner ~= ARGV[1] then
  if owner ~= ARGV[4] then return {2, owner} end
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'confirm_forwarded', 1)
  return {1, owner}
end
redis.call('HINCRBY', KEYS[3], 'confirm_unknown', 1)
return {0, ''}
`)

// pruneScript removes an instance from the cell's instance set once nothing
// of it is left: no heartbeat (dead, or exited) and an empty claimed list
// (nothing to recover).
//
//	KEYS[1] instances   KEYS[2] instance:<inst>   KEYS[3] claimed:<inst>
//	ARGV[1] inst
//
// Returns 1 when removed, 0 when kept.
var pruneScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// answeredScript is markScript for the change to "answered" when the queue
// manager is fed: the state and the "call" event in one step, the event
// only on the change (a retry does not push it twice). On the change it
// also records answered_ms (Redis TIME), from which the queue manager's
// wait for an operator is measured (pacing_result.go).
//
//	KEYS[1] call:<id>   KEYS[2] acd:inbox
//	ARGV[1] safety TTL (s)   ARGV[2] token ("" = do not check)
//	ARGV[3] event JSON   ARGV[4] inbox cap   ARGV[5…] field, value, …
//
// Returns 1 done, 0 hash already done, -1 not ours.
var answeredScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'token')
if v[1] == 'done' then return 0 end
if ARGV[2] ~= '' and v[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if v[1] ~= 'answered' then
  -- Redis's clock, the one the queue manager's connected_ms is on: the
  -- wait for an operator must not depend on two hosts' clocks.
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'answered_ms', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
end
return 1
`)
