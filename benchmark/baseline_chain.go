package benchmark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/redisq"
)

// runBaselineChain is the latency baseline of the paced scenario: the same
// chain of round trips a command makes before its Originate, issued by a
// plain go-redis client with the daemon's shape (one claim loop, one
// goroutine per command, one reader of the confirm list handing each
// confirmation to its waiter through a map) and no other logic:
//
//	BLMOVE → HSET + LPUSH ack (pipeline) → [Multcall confirms] → BRPOP confirm
//	→ HSET (MarkDialing) → "Originate" (a timestamp instead of the AMI write)
//	→ HSET (MarkAnswered) → LREM + LPUSH results + HSET (pipeline)
//
// Its push → "Originate" percentiles are what this machine and Redis allow
// without any bridge logic and without AMI.
func runBaselineChain(ctx context.Context, addr, prefix, cell string, n, threads int, rate float64) (E2EResult, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: redisq.PoolSize(threads, 1), DisableIdentity: true,
		ReadTimeout: redisq.ReadTimeout, WriteTimeout: redisq.WriteTimeout})
	defer rdb.Close()
	side := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 8, DisableIdentity: true})
	defer side.Close()
	keys := redisq.NewKeys(prefix, cell)
	defer deleteKeys(context.WithoutCancel(ctx), side, prefix) //nolint:errcheck // best effort
	d := newDriver(side, keys, n)
	claimed := keys.Claimed("baseline")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var waiters sync.Map // id → chan struct{}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	report := func(err error) {
		if err != nil && ctx.Err() == nil {
			select {
			case errc <- err:
			default:
			}
			cancel()
		}
	}
	goBG := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); report(f(ctx)) }()
	}
	goBG(d.confirm)
	goBG(func(ctx context.Context) error { return d.pushPaced(ctx, rate) })
	goBG(func(ctx context.Context) error { // the confirmation reader
		for ctx.Err() == nil {
			msgs, err := popBatch(ctx, rdb, keys.Confirm())
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, m := range msgs {
				var c struct {
					ID string `json:"id"`
				}
				if json.Unmarshal([]byte(m), &c) == nil {
					if ch, ok := waiters.LoadAndDelete(c.ID); ok {
						close(ch.(chan struct{}))
					}
				}
			}
		}
		return nil
	})
	slots := make(chan struct{}, threads)
	goBG(func(ctx context.Context) error { // the claim loop
		for ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			raw, err := rdb.BLMove(ctx, keys.Dial(), claimed, "RIGHT", "LEFT", time.Second).Result()
			if errors.Is(err, redis.Nil) {
				<-slots
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("baseline claim: %w", err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				report(chainCall(ctx, rdb, keys, claimed, raw, d, &waiters))
			}()
		}
		return nil
	})
	err := d.collect(ctx)
	cancel()
	wg.Wait()
	close(errc)
	for e := range errc {
		return E2EResult{}, e
	}
	if err != nil {
		return E2EResult{}, err
	}
	first, last := d.window()
	r := E2EResult{Calls: n, Duration: last.Sub(first), Statuses: d.statusSummary()}
	r.CallsPS = float64(n) / r.Duration.Seconds()
	r.ToOriginate, r.ToResult, r.NoOriginate = d.latencies()
	return r, nil
}

func chainCall(ctx context.Context, rdb redis.UniversalClient, keys redisq.Keys, claimed, raw string, d *driver, waiters *sync.Map) error {
	id := rawID(raw)
	idx, _ := indexOfID(id)
	confirmed := make(chan struct{})
	waiters.Store(id, confirmed)
	defer waiters.Delete(id)
	call := keys.Call(id)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if err := baselineBegin(ctx, rdb, keys, call, id, raw, now); err != nil {
		return err
	}
	select {
	case <-confirmed:
	case <-ctx.Done():
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("baseline: no confirmation for %s", id)
	}
	if err := baselineMarkDialing(ctx, rdb, call, now); err != nil {
		return err
	}
	if idx < d.n {
		d.origAt[idx].CompareAndSwap(0, time.Now().UnixNano())
	}
	return baselineAnswerFinish(ctx, rdb, keys, claimed, call, id, raw, now)
}
