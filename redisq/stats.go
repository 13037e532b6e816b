package redisq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ReadStats reads the cell's counters hash. Fields that are not integers
// (nobody writes such, but the hash is shared) are skipped.
func ReadStats(ctx context.Context, rdb redis.UniversalClient, k Keys) (map[string]int64, error) {
	m, err := rdb.HGetAll(ctx, k.Stats()).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k.Stats(), err)
	}
	out := make(map[string]int64, len(m))
	for f, v := range m {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[f] = n
		}
	}
	return out, nil
}

// Depths are the lengths of a cell's lists.
type Depths struct {
	Dial, Ack, Confirm, Results, Dead int64
	// Claimed is the total over every claimed:<instance> list of the cell;
	// ClaimedBy has each instance's (instances with an empty list are
	// absent, since Redis deletes empty lists).
	Claimed   int64
	ClaimedBy map[string]int64
}

// ReadDepths reads the lengths of the cell's lists: SMEMBERS of the
// instance set, then one pipeline of LLENs (the claimed lists of the
// registered instances; see ScanClaimed for a full audit).
func ReadDepths(ctx context.Context, rdb redis.UniversalClient, k Keys) (Depths, error) {
	names, err := RegisteredInstances(ctx, rdb, k)
	if err != nil {
		return Depths{}, fmt.Errorf("depths of cell %s: %w", k.Cell(), err)
	}
	fixed := []string{k.Dial(), k.Ack(), k.Confirm(), k.Results(), k.Dead()}
	cmds := make([]*redis.IntCmd, 0, len(fixed)+len(names))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, key := range fixed {
			cmds = append(cmds, p.LLen(ctx, key))
		}
		for _, name := range names {
			cmds = append(cmds, p.LLen(ctx, k.Claimed(name)))
		}
		return nil
	})
	if err != nil {
		return Depths{}, fmt.Errorf("depths of cell %s: %w", k.Cell(), err)
	}
	d := Depths{
		Dial: cmds[0].Val(), Ack: cmds[1].Val(), Confirm: cmds[2].Val(),
		Results: cmds[3].Val(), Dead: cmds[4].Val(),
		ClaimedBy: make(map[string]int64, len(names)),
	}
	for i, name := range names {
		n := cmds[len(fixed)+i].Val()
		d.Claimed += n
		if n > 0 {
			d.ClaimedBy[name] = n
		}
	}
	return d, nil
}

// ScanClaimed finds, with SCAN MATCH (never KEYS), every instance of the
// cell that has a claimed list, registered in the instance set or not. Its
// cost grows with the whole keyspace: for audits and tests, not for every
// monitor refresh.
func ScanClaimed(ctx context.Context, rdb redis.UniversalClient, k Keys) ([]string, error) {
	keys, err := scanKeys(ctx, rdb, k.ClaimedPattern())
	if err != nil {
		return nil, fmt.Errorf("claimed lists of cell %s: %w", k.Cell(), err)
	}
	pfx := k.Claimed("")
	for i, key := range keys {
		keys[i] = strings.TrimPrefix(key, pfx)
	}
	return keys, nil
}

// ReadCall returns the fields of a call's status hash; (nil, nil) when the
// hash does not exist.
func ReadCall(ctx context.Context, rdb redis.UniversalClient, k Keys, id string) (map[string]string, error) {
	m, err := rdb.HGetAll(ctx, k.Call(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read call %s: %w", id, err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// scanKeys lists the keys matching pattern with SCAN, sorted, without
// duplicates (SCAN may return a key twice). On a Cluster every master is
// scanned: SCAN sees one node's keys, and while a slot migrates its keys
// sit on two.
func scanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	seen := make(map[string]struct{})
	err := ForEachMaster(ctx, rdb, func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				if errors.Is(err, redis.Nil) {
					return nil
				}
				return fmt.Errorf("scan %s: %w", pattern, err)
			}
			mu.Lock()
			for _, key := range keys {
				seen[key] = struct{}{}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for key := range seen {
		out = append(out, key)
	}
	sort.Strings(out)
	return out, nil
}

// ScanKeys is scanKeys for other packages (the recovery's first pass, the
// bench's cleanup): SCAN MATCH over every master.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	return scanKeys(ctx, rdb, pattern)
}

// Call returns the fields of a call's status hash (see ReadCall).
func (q *Queue) Call(ctx context.Context, id string) (map[string]string, error) {
	return ReadCall(ctx, q.rdb, q.keys, id)
}
