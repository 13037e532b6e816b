package benchmark

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/redisq"
)

// Baseline is the raw round-trip bound of the Redis for the minimal
// protocol, with the bridge's concurrency (threads workers) and no bridge
// logic. Per answered call:
//
//	Multcall  LPUSH dial (batched, as in e2e)
//	worker    BLMOVE dial → claimed                       (ClaimNext)
//	worker    HSET call + LPUSH ack, one pipeline          (Begin's Lua step)
//	Multcall  BRPOP/RPOP ack, LPUSH confirm (batched, as in e2e)
//	reader    BRPOP + RPOP count confirm (one per cell, as the router)
//	worker    HSET call                                    (MarkDialing)
//	worker    HSET call                                    (MarkAnswered)
//	worker    LREM claimed + LPUSH results + HSET, one pipeline (Finish)
//	Multcall  BRPOP/RPOP results (batched, as in e2e)
//
// With claimers = 1 the claims are serial, as in the daemon's claim loop.
//
// Workers do not wait for the confirmation (that needs the router's
// dispatch, i.e. bridge logic): the confirmation traffic still goes through
// Redis at the same rate.
type BaselineResult struct {
	Calls    int
	Duration time.Duration
	CallsPS  float64
}

func runBaseline(ctx context.Context, addr, prefix, cell string, n, threads, claimers int) (BaselineResult, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: redisq.PoolSize(threads, 1), DisableIdentity: true,
		ReadTimeout: redisq.ReadTimeout, WriteTimeout: redisq.WriteTimeout})
	defer rdb.Close()
	side := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 8, DisableIdentity: true})
	defer side.Close()
	keys := redisq.NewKeys(prefix, cell)
	defer deleteKeys(context.WithoutCancel(ctx), side, prefix) //nolint:errcheck // best effort

	d := newDriver(side, keys, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	claimed := keys.Claimed("baseline")

	var bg sync.WaitGroup
	errc := make(chan error, 4+threads+claimers)
	goBG := func(f func(context.Context) error) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	goBG(d.confirm)
	goBG(func(ctx context.Context) error { // the confirmation reader
		for ctx.Err() == nil {
			if _, err := popBatch(ctx, side, keys.Confirm()); err != nil && ctx.Err() == nil {
				return err
			}
		}
		return nil
	})
	goBG(func(ctx context.Context) error { return d.pushFast(ctx, max(2000, threads)) })

	// Claimers BLMOVE on their own connections and hand each command to one
	// of threads workers: a blocked BLMOVE holds its connection, so the
	// workers' pool is not shared with it (the daemon claims from one loop).
	claimRDB := redis.NewClient(&redis.Options{Addr: addr, PoolSize: claimers, DisableIdentity: true})
	defer claimRDB.Close()
	work := make(chan string, threads)
	var claimWG, done sync.WaitGroup
	for range claimers {
		claimWG.Add(1)
		go func() {
			defer claimWG.Done()
			for ctx.Err() == nil {
				raw, err := claimRDB.BLMove(ctx, keys.Dial(), claimed, "RIGHT", "LEFT", time.Second).Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("baseline claim: %w", err)
						cancel()
					}
					return
				}
				select {
				case work <- raw:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for range threads {
		done.Add(1)
		go func() {
			defer done.Done()
			for {
				var raw string
				select {
				case raw = <-work:
				case <-ctx.Done():
					return
				}
				if err := baselineCall(ctx, rdb, keys, claimed, raw); err != nil {
					if ctx.Err() == nil {
						errc <- err
						cancel()
					}
					return
				}
			}
		}()
	}
	err := d.collect(ctx)
	cancel()
	claimWG.Wait()
	done.Wait()
	bg.Wait()
	close(errc)
	for e := range errc {
		return BaselineResult{}, e
	}
	if err != nil {
		return BaselineResult{}, err
	}
	first, last := d.window()
	dur := last.Sub(first)
	return BaselineResult{Calls: n, Duration: dur, CallsPS: float64(n) / dur.Seconds()}, nil
}

func baselineCall(ctx context.Context, rdb redis.UniversalClient, keys redisq.Keys, claimed, raw string) error {
	id := rawID(raw)
	call := keys.Call(id)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if err := baselineBegin(ctx, rdb, keys, call, id, raw, now); err != nil {
		return err
	}
	if err := baselineMarkDialing(ctx, rdb, call, now); err != nil {
		return err
	}
	return baselineAnswerFinish(ctx, rdb, keys, claimed, call, id, raw, now)
}

// The steps of one call with no bridge logic: the same round trips the
// bridge makes, as plain commands. Both baselines (throughput and the paced
// chain) are made of them.

// rawID takes the id out of a command built by multcallsim.Command
// ({"id":"…",…}) without JSON parsing.
func rawID(raw string) string {
	id := raw[7:]
	for i := 0; i < len(id); i++ {
		if id[i] == '"' {
			return id[:i]
		}
	}
	return id
}

// baselineBegin: status hash and ACK, one round trip.
func baselineBegin(ctx context.Context, rdb redis.UniversalClient, keys redisq.Keys, call, id, raw, now string) error {
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, call, "id", id, "state", "acked", "received_at", now, "raw", raw)
		p.LPush(ctx, keys.Ack(), `{"id":"`+id+`","cell":"bench","instance":"baseline","received_at":"`+now+`"}`)
		return nil
	})
	if err != nil {
		return fmt.Errorf("baseline begin: %w", err)
	}
	return nil
}

// baselineMarkDialing: the state written before an originate.
func baselineMarkDialing(ctx context.Context, rdb redis.UniversalClient, call, now string) error {
	if err := rdb.HSet(ctx, call, "state", "originating", "dialed_at", now).Err(); err != nil {
		return fmt.Errorf("baseline mark dialing: %w", err)
	}
	return nil
}

// baselineAnswerFinish: the answered state, then the result with the
// removal from the claimed list.
func baselineAnswerFinish(ctx context.Context, rdb redis.UniversalClient, keys redisq.Keys, claimed, call, id, raw, now string) error {
	if err := rdb.HSet(ctx, call, "state", "answered", "answered_at", now).Err(); err != nil {
		return fmt.Errorf("baseline mark answered: %w", err)
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, claimed, 1, raw)
		p.LPush(ctx, keys.Results(), `{"id":"`+id+`","status":"answered"}`)
		p.HSet(ctx, call, "state", "done", "ended_at", now)
		return nil
	})
	if err != nil {
		return fmt.Errorf("baseline finish: %w", err)
	}
	return nil
}
