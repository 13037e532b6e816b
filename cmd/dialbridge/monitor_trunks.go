package main

import (
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/dash"
)

// monitorTrunks are the settings' trunks for the monitor's trunks pane,
// each with the cells (queues) that dial through it: their heartbeats name
// the hosts whose breakers the pane shows.
func monitorTrunks(s *config.Settings) []dash.TrunkSpec {
	out := make([]dash.TrunkSpec, 0, len(s.Trunks))
	for _, t := range s.Trunks {
		sp := dash.TrunkSpec{
			Name: t.Name, CPS: t.CPS, Burst: t.Burst, MaxChannels: t.MaxChannels,
			Breaker: bridge.BreakerConfig{Failures: t.Breaker.Failures, Cooldown: time.Duration(t.Breaker.Cooldown)},
		}
		for _, q := range s.Queues {
			if q.Trunk == t.Name {
				sp.Cells = append(sp.Cells, q.Name)
			}
		}
		out = append(out, sp)
	}
	return out
}
