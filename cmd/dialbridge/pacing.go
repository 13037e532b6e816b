package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/metrics"
	"github.com/multcall/dialbridge/redisq"
)

// operatorFieldsOption makes the cell's results carry the queue manager's
// operator fields (contract section 2): always on a paced cell, else while
// the queue manager holds its lease.
func operatorFieldsOption(q config.Queue) redisq.QueueOption {
	return redisq.WithOperatorFields(redisq.OperatorFieldsOptions{
		AbandonAfter: q.Pacing.AbandonAfter.D(),
		Paced:        q.Pacing.Paced(),
		Location:     q.Pacing.Location(),
	})
}

// watchQueueManager tells the queue, every second until ctx ends, whether
// the cell's queue manager holds its lease: results of calls that were
// never answered then carry the (empty) operator fields without a round
// trip of their own.
func watchQueueManager(ctx context.Context, rdb redis.Cmdable, q *redisq.Queue) {
	key := redisq.ACDKey(q.Keys().Prefix(), q.Keys().Cell(), "lease")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if n, err := rdb.Exists(ctx, key).Result(); err == nil {
			q.SetQueueManagerSeen(n == 1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cellPacing is a paced cell's budget: this daemon's admission (slots of
// the cell-wide budget) and its bid to be the cell's pacer.
type cellPacing struct {
	adm   *redisq.PacingAdmission
	pacer *redisq.Pacer
}

// pacingSettings converts the cell's settings for bridge.Pace. Threads is
// left 0: the budget is cell-wide, and each daemon's threads caps its own
// calls in the claim loop.
func pacingSettings(q config.Queue) bridge.PacingSettings {
	p := q.Pacing
	return bridge.PacingSettings{
		Mode:         bridge.PacingMode(p.Mode),
		Ratio:        p.Ratio,
		MaxLevel:     p.MaxLevel,
		MaxAbandon:   float64(p.MaxAbandon),
		AbandonAfter: p.AbandonAfter.D(),
		Window:       p.Window.D(),
	}
}

// newCellPacing builds the pacing of a paced cell (nil for mode none). Each
// change of why the cell dials nothing is logged once, by every daemon
// (its own admission) and by the pacer.
func newCellPacing(d *daemon, q config.Queue) *cellPacing {
	if !q.Pacing.Paced() {
		return nil
	}
	log := d.log.With().Str("component", "pacing").Str("mode", string(q.Pacing.Mode)).Logger()
	adm := redisq.NewPacingAdmission(d.rdb, d.keys, d.instance, func(st redisq.PacingStatus) {
		if why := st.DialsNothing(); why != "" {
			log.Warn().Str("why", why).Msg("paced cell dials nothing")
		} else {
			log.Info().Int("budget", st.Budget).Int("dialing", st.Dialing).Msg("paced cell dials again")
		}
	})
	pacer := redisq.NewPacer(d.rdb, d.keys, redisq.PacerOptions{
		Instance: d.instance,
		Settings: pacingSettings(q),
		Location: q.Pacing.Location(),
		OnChange: func(leader bool, nothing string) {
			ev := log.Info().Bool("leader", leader)
			if leader && nothing != "" {
				ev = log.Warn().Bool("leader", leader).Str("why", nothing)
			}
			ev.Msg("pacer")
		},
		OnError: func(err error) {
			if err != nil {
				log.Warn().Err(err).Msg("pacer round failed; the budget goes stale and the cell dials nothing until one succeeds")
			} else {
				log.Info().Msg("pacer rounds succeed again")
			}
		},
	})
	return &cellPacing{adm: adm, pacer: pacer}
}

// run runs the admission's slot upkeep and the pacer until ctx ends.
func (p *cellPacing) run(ctx context.Context, wg *sync.WaitGroup) {
	if p == nil {
		return
	}
	wg.Add(2)
	go func() { defer wg.Done(); _ = p.adm.Run(ctx) }()
	go func() { defer wg.Done(); _ = p.pacer.Run(ctx) }()
}

// admissions is the cell's admissions (none for mode none).
func (p *cellPacing) admissions() []bridge.Admission {
	if p == nil {
		return nil
	}
	return []bridge.Admission{p.adm}
}

// health is the /healthz line of a paced cell: why it dials nothing, or its
// budget; "" for mode none.
func (p *cellPacing) health() string {
	if p == nil {
		return ""
	}
	st := p.adm.Status()
	if why := st.DialsNothing(); why != "" {
		return "dials nothing: " + why
	}
	return fmt.Sprintf("budget %d, dialing %d (this daemon %d)", st.Budget, st.Dialing, st.Held)
}

// metrics is the cell's pacing sample for the metrics.
func (p *cellPacing) metrics() metrics.PacingSample {
	st := p.adm.Status()
	v := p.pacer.View()
	o, d := v.Observation, v.Decision
	return metrics.PacingSample{
		Budget: st.Budget, Dialing: st.Dialing, Held: st.Held, Nothing: st.DialsNothing() != "",
		Leader: v.Leader, Level: d.Level, Avail: o.Available, Busy: o.Busy, Ringing: o.Ringing,
		Waiting: o.Waiting, Answer: o.AnswerRate, AbWindow: o.AbandonRateWindow, AbDay: o.AbandonRateDay,
		Hard: d.HardLimit,
	}
}
