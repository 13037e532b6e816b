package redisq

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// Oversized list items (contract section 2): an item over MaxItemBytes is
// never read by the daemon. The Lua steps below look at an item's size where
// it lies, inside Redis, and move it to the dead list cut to its first
// OversizeKeep bytes (base64: a cut item is rarely valid UTF-8), with the
// error. The daemon's connections refuse such a string in any reply
// (guard.go), so a step that could not look first (the blocking claim)
// fails safely and screenScript settles the item afterwards.
const (
	// OversizeKeep is how much of an oversized item its dead entry keeps.
	OversizeKeep = 1 << 10
	// DeadCap bounds the dead list: the newest entries are kept. Each entry
	// is at most ~6 KB (DeadRawMax of raw, base64 or text, plus the error),
	// so the list stays under ~60 MB of Redis memory however much garbage
	// arrives.
	DeadCap = 10000
)

// buryBigLua defines bury_big(item, dead, stats, ARGV base): it pushes the
// dead entry of an oversized item and counts it. The scripts that use it
// pass, from argBase on: max bytes, time (RFC 3339), instance, dead cap,
// bytes kept.
const buryBigLua = `
local function b64(s)
  local t = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function ch(k) return string.sub(t, k + 1, k + 1) end
    out[#out + 1] = ch(math.floor(n / 262144) % 64) .. ch(math.floor(n / 4096) % 64) ..
      (b and ch(math.floor(n / 64) % 64) or '=') .. (c and ch(n % 64) or '=')
  end
  return table.concat(out)
end
local function bury_big(item, dead, stats, base)
  local max, keep = tonumber(ARGV[base]), tonumber(ARGV[base + 4])
  local e = cjson.encode({
    error = 'list item is ' .. #item .. ' bytes, more than the ' .. max .. ' allowed; not parsed',
    raw = b64(string.sub(item, 1, keep)), raw_encoding = 'base64', truncated = true,
    bytes = #item, at = ARGV[base + 1], instance = ARGV[base + 2]})
  redis.call('LPUSH', dead, e)
  redis.call('LTRIM', dead, 0, tonumber(ARGV[base + 3]) - 1)
  redis.call('HINCRBY', stats, 'dead', 1)
  redis.call('HINCRBY', stats, 'oversize', 1)
end
`

// claimBatchScript moves up to n commands from dial to our claimed list,
// oldest first, and returns them; an oversized one is buried instead.
//
//	KEYS[1] dial   KEYS[2] claimed:<me>   KEYS[3] dead   KEYS[4] stats
//	ARGV[1] n   ARGV[2..6] bury_big's arguments
var claimBatchScript = redis.NewScript(buryBigLua + `
local out = {}
local max = tonumber(ARGV[2])
local buried = 0
for i = 1, tonumber(ARGV[1]) do
  local it = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not it then break end
  if #it > max then
    redis.call('LPOP', KEYS[2])
    bury_big(it, KEYS[3], KEYS[4], 2)
    buried = buried + 1
    if buried >= 100 then break end
  else
    out[#out + 1] = it
  end
end
return out
`)

// screenScript buries every oversized item of a list of ours (the claimed
// list after a blocking claim met one) and returns how many.
//
//	KEYS[1] the list   KEYS[2] dead   KEYS[3] stats   ARGV[1..5] bury_big's
var screenScript = redis.NewScript(buryBigLua + `
local max = tonumber(ARGV[1])
local n = 0
for _, it in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if #it > max then
    redis.call('LREM', KEYS[1], 1, it)
    bury_big(it, KEYS[2], KEYS[3], 1)
    n = n + 1
  end
end
return n
`)

// buryArgs are bury_big's five arguments.
func (q *Queue) buryArgs() []any {
	return []any{MaxItemBytes, bridge.FormatTime(q.now()), q.instance, DeadCap, OversizeKeep}
}

// screen buries the oversized items of list (ours) and logs how many.
func (q *Queue) screen(ctx context.Context, list string) (int, error) {
	n, err := screenScript.Run(ctx, q.rdb, []string{list, q.keys.Dead(), q.keys.Stats()}, q.buryArgs()...).Int()
	if err != nil {
		return 0, fmt.Errorf("screen %s for oversized items: %w", list, err)
	}
	if n > 0 {
		clientLog().Warn().Str("list", list).Int("items", n).Int("max_bytes", MaxItemBytes).
			Msg("oversized list items moved to dead unread (first " + strconv.Itoa(OversizeKeep) + " bytes kept)")
	}
	return n, nil
}
