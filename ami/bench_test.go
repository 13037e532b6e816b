package ami

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
)

// BenchmarkOriginate measures Originates per second through the client: the
// simulator answers each at once (Response: Success, then an
// OriginateResponse routed back to the watch), 32 callers at a time.
func BenchmarkOriginate(b *testing.B) {
	for _, sessions := range []int{1, 4} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			srv := newSim(b, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeFailed}}, MaxRecords: -1})
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
