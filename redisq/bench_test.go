package redisq

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// rqBenchRedis is miniredis, or the Redis at $DIALBRIDGE_TEST_REDIS
// (host:port) for real figures; each run uses its own prefix there.
func rqBenchRedis(b *testing.B) (*redis.Client, string) {
	if addr := os.Getenv("DIALBRIDGE_TEST_REDIS"); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		b.Cleanup(func() { _ = rdb.Close() })
		return rdb, "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	_, rdb := rqRedis(b)
	return rdb, rqPrefix
}

func BenchmarkFinish(b *testing.B) {
	rdb, prefix := rqBenchRedis(b)
	ctx := context.Background()
	q := NewQueue(rdb, prefix, rqCell, rqInst)
	raws := make([][]byte, b.N)
	results := make([]*bridge.Result, b.N)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range raws {
			id := fmt.Sprintf("b-%d", i)
			raws[i] = rqRaw(id)
			results[i] = rqResult(id, bridge.StatusAnswered)
			p.LPush(ctx, q.Keys().Claimed(rqInst), raws[i])
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Settle the newest first, as calls of similar length do: LREM
		// finds them at the head of the claimed list.
		j := b.N - 1 - i
		if ok, err := q.Finish(ctx, raws[j], results[j]); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkBeginFinish(b *testing.B) {
	rdb, prefix := rqBenchRedis(b)
	ctx := context.Background()
	q := NewQueue(rdb, prefix, rqCell, rqInst)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bf-%d", i)
		raw := rqRaw(id)
		if err := rdb.LPush(ctx, q.Keys().Claimed(rqInst), raw).Err(); err != nil {
			b.Fatal(err)
		}
		c := rqCall(id, raw, "t"+id)
		if dup, err := q.Begin(ctx, c); err != nil || dup {
			b.Fatal(dup, err)
		}
		if ok, err := q.Finish(ctx, raw, c.Result(bridge.StatusAckTimeout)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
