package redisq

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/proc"
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
//	ARGV[6..8] pid, pstart, boot_id of an owner known gone though its
//	heartbeat has not expired yet ("" when none: the heartbeat decides)
//
// Returns the adopted commands, newest claim first (the list's order), or an
// empty array when the owner is alive or the list is gone. An owner known
// gone is taken for dead only if its heartbeat still names the very process
// that was found gone (a new beat of the same instance would name itself
// again; another process would differ): the heartbeat is then deleted. An
// oversized item (left by a daemon older than the size screening) is
// buried, not adopted.
var adoptScript = redis.NewScript(buryBigLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[6] == '' then return {} end
  local v = redis.call('HMGET', KEYS[1], 'pid', 'pstart', 'boot_id')
  if v[1] ~= ARGV[6] or v[2] ~= ARGV[7] or v[3] ~= ARGV[8] then return {} end
  redis.call('DEL', KEYS[1])
end
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
	gone, err := q.goneOnThisMachine(ctx, owners)
	if err != nil {
		return nil, err
	}

	var out []bridge.Orphan
	for owner := range owners {
		args := append(q.buryArgs(), "", "", "")
		if id, ok := gone[owner]; ok {
			args = append(q.buryArgs(), id.PID, id.Start, id.Boot)
		}
		items, err := adoptScript.Run(ctx, q.rdb,
			[]string{q.keys.Instance(owner), q.keys.Claimed(owner), q.claimed, q.keys.Base() + "adopting:" + q.instance, q.keys.Dead(), q.keys.Stats()},
			args...).StringSlice()
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

// goneOnThisMachine reads the heartbeats of owners (one pipeline) and
// returns the owners whose heartbeat is present but whose process is known
// gone: it ran on this machine, in this pid namespace, and no process with
// its pid and start time runs any more (a daemon killed and restarted on
// the same host). Their lists need not wait for the heartbeat's TTL.
func (q *Queue) goneOnThisMachine(ctx context.Context, owners map[string]bool) (map[string]proc.Identity, error) {
	if len(owners) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(owners))
	cmds := make([]*redis.SliceCmd, 0, len(owners))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for owner := range owners {
			names = append(names, owner)
			cmds = append(cmds, p.HMGet(ctx, q.keys.Instance(owner), "pid", "pstart", "boot_id", "pid_ns"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("adopt: read heartbeats: %w", err)
	}
	var out map[string]proc.Identity
	for i, c := range cmds {
		if id, ok := identityOf(c.Val()); ok {
			if gone, known := proc.Gone(id); gone && known {
				if out == nil {
					out = map[string]proc.Identity{}
				}
				out[names[i]] = id
			}
		}
	}
	return out, nil
}

// identityOf reads HMGET pid, pstart, boot_id, pid_ns of a heartbeat.
func identityOf(v []any) (proc.Identity, bool) {
	if len(v) != 4 {
		return proc.Identity{}, false
	}
	s := make([]string, 4)
	for i, x := range v {
		str, ok := x.(string)
		if !ok {
			return proc.Identity{}, false // no heartbeat, or a field missing (older version)
		}
		s[i] = str
	}
	pid, err := strconv.Atoi(s[0])
	if err != nil {
		return proc.Identity{}, false
	}
	id := proc.Identity{PID: pid, Start: s[1], Boot: s[2], PidNS: s[3]}
	return id, id.Complete()
}

// CallState implements bridge.Recovery.
func (q *Queue) CallState(ctx context.Context, id string) (map[string]string, error) {
	m, err := q.rdb.HGetAll(ctx, q.keys.Call(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read call %s: %w", id, err)
	}
	return m, nil
}

// Alive implements bridge.Recovery: the instance's heartbeat exists, and
// does not name a process known gone on this machine (see
// goneOnThisMachine).
func (q *Queue) Alive(ctx context.Context, instance string) (bool, error) {
	if instance == "" {
		return false, nil
	}
	key := q.keys.Instance(instance)
	var ex *redis.IntCmd
	var hm *redis.SliceCmd
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ex = p.Exists(ctx, key)
		hm = p.HMGet(ctx, key, "pid", "pstart", "boot_id", "pid_ns")
		return nil
	}); err != nil {
		return false, fmt.Errorf("read heartbeat of %s: %w", instance, err)
	}
	if ex.Val() != 1 {
		return false, nil
	}
	if id, ok := identityOf(hm.Val()); ok {
		if gone, known := proc.Gone(id); gone && known {
			return false, nil
		}
	}
	return true, nil
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
