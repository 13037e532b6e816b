package redisq

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// adoptScript moves every command of a dead instance's claimed list into
// ours. The ownership step is one RENAME of the dead list to a key of ours:
// of two daemons adopting at once only one RENAME finds the list. (Real
// Redis runs a script atomically anyway; miniredis does not, and the RENAME
// keeps the promise there too.)
//
//	KEYS[1] instance:<owner> (heartbeat)   KEYS[2] claimed:<owner>
//	KEYS[3] claimed:<me>   KEYS[4] adopting:<me> (scratch list)
//	KEYS[5] dead   KEYS[6] stats   ARGV[1..5] bury_big's arguments
//
// Returns the adopted commands, newest claim first (the list's order), or an
// empty array when the owner is alive or the list is gone. An oversized
// item (left by a daemon older than the size screening) is buried, not
// adopted.
var adoptScript = redis.NewScript(buryBigLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local ok = redis.pcall('RENAME', KEYS[2], KEYS[4])
if type(ok) == 'table' and ok.err then return {} end
local max = tonumber(ARGV[1])
local items = redis.call('LRANGE', KEYS[4], 0, -1)
local out = {}
for i = #items, 1, -1 do
  if #items[i] > max then
    redis.call('RPOP', KEYS[4])
    bury_big(items[i], KEYS[5], KEYS[6], 1)
  else
    redis.call('RPOPLPUSH', KEYS[4], KEYS[3])
    table.insert(out, 1, items[i])
  end
end
redis.call('DEL', KEYS[4])
return out
`)

// requeueScript puts an adopted command back at the front of the dial list.
//
//	KEYS[1] claimed:<me>   KEYS[2] dial   KEYS[3] call:<id>   KEYS[4] stats
//	ARGV[1] raw   ARGV[2] owner whose "acked" hash is dropped ("" = none)
//
// Returns 1 requeued, 0 already settled (raw not in our claimed list).
var requeueScript = redis.NewScript(`
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then
  local v = redis.call('HMGET', KEYS[3], 'state', 'instance')
  if v[1] == 'acked' and v[2] == ARGV[2] then redis.call('DEL', KEYS[3]) end
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'requeued', 1)
return 1
`)

// AdoptOrphans implements bridge.Recovery. Candidates are the cell's
// instance set and, on the first pass, a SCAN of claimed:* lists.
func (q *Queue) AdoptOrphans(ctx context.Context) ([]bridge.Orphan, error) {
	owners := map[string]bool{}
	members, err := q.rdb.SMembers(ctx, q.keys.InstanceSet()).Result()
	if err != nil {
		return nil, fmt.Errorf("adopt: read instance set: %w", err)
	}
	for _, m := range members {
		owners[m] = true
	}
	if !q.scannedOnce.Load() {
		prefix := q.keys.Claimed("")
		iter := q.rdb.Scan(ctx, 0, q.keys.ClaimedPattern(), 1000).Iterator()
		for iter.Next(ctx) {
			owners[strings.TrimPrefix(iter.Val(), prefix)] = true
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("adopt: scan claimed lists: %w", err)
		}
		q.scannedOnce.Store(true)
	}
	delete(owners, q.instance)

	var out []bridge.Orphan
	for owner := range owners {
		items, err := adoptScript.Run(ctx, q.rdb,
			[]string{q.keys.Instance(owner), q.keys.Claimed(owner), q.claimed, q.keys.Base() + "adopting:" + q.instance, q.keys.Dead(), q.keys.Stats()},
			q.buryArgs()...).StringSlice()
		if err != nil {
			return out, fmt.Errorf("adopt claimed list of %s: %w", owner, err)
		}
		for _, it := range items {
			out = append(out, bridge.Orphan{Raw: []byte(it), Owner: owner})
		}
		if len(items) == 0 {
			// Nothing (left) to recover of this one: drop it from the set
			// once its heartbeat is gone too.
			pruneScript.Run(ctx, q.rdb, []string{q.keys.InstanceSet(), q.keys.Instance(owner), q.keys.Claimed(owner)}, owner)
		}
	}
	return out, nil
}

// CallState implements bridge.Recovery.
func (q *Queue) CallState(ctx context.Context, id string) (map[string]string, error) {
	m, err := q.rdb.HGetAll(ctx, q.keys.Call(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read call %s: %w", id, err)
	}
	return m, nil
}

// Alive implements bridge.Recovery: the instance's heartbeat exists.
func (q *Queue) Alive(ctx context.Context, instance string) (bool, error) {
	if instance == "" {
		return false, nil
	}
	n, err := q.rdb.Exists(ctx, q.keys.Instance(instance)).Result()
	if err != nil {
		return false, fmt.Errorf("read heartbeat of %s: %w", instance, err)
	}
	return n == 1, nil
}

// Requeue implements bridge.Recovery.
func (q *Queue) Requeue(ctx context.Context, raw []byte, id, dropHashOf string) (bool, error) {
	n, err := requeueScript.Run(ctx, q.rdb,
		[]string{q.claimed, q.keys.Dial(), q.keys.Call(id), q.keys.Stats()}, raw, dropHashOf).Int()
	if err != nil {
		return false, fmt.Errorf("requeue %s: %w", id, err)
	}
	return n == 1, nil
}

// ClaimedList implements bridge.Recovery: our own claimed list.
func (q *Queue) ClaimedList(ctx context.Context) ([][]byte, error) {
	if _, err := q.screen(ctx, q.claimed); err != nil {
		return nil, err
	}
	items, err := q.rdb.LRange(ctx, q.claimed, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", q.claimed, err)
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = []byte(it)
	}
	return out, nil
}
