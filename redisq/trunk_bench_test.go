package redisq

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// trBenchLimiter is a limiter whose limits are never reached at the speed of
// one client, so every Acquire runs the whole script (purge, cap, GCRA,
// lease, counters) and is granted.
func trBenchLimiter(b *testing.B) *TrunkLimiter {
	rdb, prefix := rqBenchRedis(b)
	l, err := NewTrunkLimiter(rdb, prefix, "bench", TrunkLimits{CPS: 100000, Burst: 100000, MaxChannels: 100000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Del(context.Background(), l.Keys().TAT(), l.Keys().Leases(), l.Keys().Stats()) })
	return l
}

// BenchmarkTrunkAcquireRelease is the limiter's cost per call: one Acquire
// before the Originate, one Release with the result (two round trips).
func BenchmarkTrunkAcquireRelease(b *testing.B) {
	l := trBenchLimiter(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lease := "b" + strconv.Itoa(i)
		g, err := l.Acquire(ctx, lease)
		if err != nil || !g.OK {
			b.Fatal(g, err)
		}
		if err := l.Release(ctx, lease); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrunkAcquireReleaseParallel is the same from many goroutines of
// one daemon, sharing its client.
func BenchmarkTrunkAcquireReleaseParallel(b *testing.B) {
	l := trBenchLimiter(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lease := "p" + strconv.FormatInt(n.Add(1), 10)
			g, err := l.Acquire(ctx, lease)
			if err != nil {
				b.Fatal(err)
			}
			if !g.OK {
				continue // over 100,000/s: not what is measured
			}
			if err := l.Release(ctx, lease); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTrunkRenew1000 is one heartbeat's renewal of 1,000 calls in
// flight.
func BenchmarkTrunkRenew1000(b *testing.B) {
	l := trBenchLimiter(b)
	ctx := context.Background()
	leases := make([]string, 1000)
	for i := range leases {
		leases[i] = "r" + strconv.Itoa(i)
		if _, err := l.Acquire(ctx, leases[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if lost, err := l.Renew(ctx, leases); err != nil || len(lost) > 0 {
			b.Fatal(lost, err)
		}
	}
}
