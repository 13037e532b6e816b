package ami

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
)

// BenchmarkOriginate measures Originates per second through the client, 32
// callers at a time: each Originate waits for its Response (the simulator
// answers at once, or after 1 ms like a busy Asterisk) and the
// OriginateResponse is routed back to the watch. With an instant answer the
// CPU (client and simulator share 2 cores) is the limit; with a 1 ms answer,
// the one-action-in-flight rule of amigo is, and more sessions help.
func BenchmarkOriginate(b *testing.B) {
	for _, delay := range []time.Duration{0, time.Millisecond} {
		for _, sessions := range []int{1, 4} {
			b.Run(fmt.Sprintf("answer=%s/sessions=%d", delay, sessions), func(b *testing.B) {
				srv := newSim(b, amisim.Config{
					Rules:      []amisim.Rule{{Outcome: amisim.OutcomeFailed, ResponseDelay: delay}},
					MaxRecords: -1,
				})
				c, _ := startClient(b, srv, func(o *Options) { o.Connections = sessions; o.CommandResponse = 5 * time.Second })
				ctx := context.Background()
				b.SetParallelism(16)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						w, err := c.Originate(ctx, request("100"))
						if err != nil {
							b.Error(err)
							return
						}
						w.Close()
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "originates/s")
			})
		}
	}
}
