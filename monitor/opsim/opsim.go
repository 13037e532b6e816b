// Package opsim simulates the operators of a call queue manager for the
// demo: an operator whose phone rings answers after a human-like delay, or
// sometimes rejects the call, or ignores it (the ring timeout then passes it
// on). Calls that the bridge did not feed (typed "call <id>") are hung up
// by the operator after a while, since no real caller will.
package opsim

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// Floor is what the operators act on: acdserver.Engine.
type Floor interface {
	Snapshot() acd.Snapshot
	Do(cmd acd.Command, reply func(lines []string, err error))
}

// Options of the simulated operators. Zero values take the defaults.
type Options struct {
	// AnswerMin..AnswerMax: the delay before answering (default 1s..4s).
	AnswerMin, AnswerMax time.Duration
	// Reject and Ignore are the shares of rings rejected (after
	// RejectAfter, default 1.5s) or left to ring out (defaults 0.08, 0.07).
	Reject, Ignore float64
	RejectAfter    time.Duration
	// FedPrefix marks the ids of calls fed by the bridge (hung up by the
	// bridge when the caller hangs up). Other answered calls are hung up
	// by the operator after TalkMin..TalkMax (default 5s..15s).
	FedPrefix        string
	TalkMin, TalkMax time.Duration
	// Poll is how often the floor is looked at (default 100ms).
	Poll time.Duration
	// Seed makes the choices repeatable (0: random).
	Seed uint64
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AnswerMin, time.Second)
	def(&o.AnswerMax, 4*time.Second)
	def(&o.RejectAfter, 1500*time.Millisecond)
	def(&o.TalkMin, 5*time.Second)
	def(&o.TalkMax, 15*time.Second)
	def(&o.Poll, 100*time.Millisecond)
	if o.AnswerMax < o.AnswerMin {
		o.AnswerMax = o.AnswerMin
	}
	if o.TalkMax < o.TalkMin {
		o.TalkMax = o.TalkMin
	}
	if o.Reject == 0 && o.Ignore == 0 {
		o.Reject, o.Ignore = 0.08, 0.07
	}
}

// plan is what one operator will do about one ring (or one answered call).
type plan struct {
	verb string // "answer", "reject", "hangup", "" (ignore)
	arg  string
	at   time.Time
}

// Run plays the operators until ctx ends.
func Run(ctx context.Context, f Floor, o Options) error {
	o.defaults()
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(a, b time.Duration) time.Duration {
		if b <= a {
			return a
		}
		return a + time.Duration(rng.Int64N(int64(b-a)))
	}
	plans := map[string]plan{} // key: operator/state/call/since
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		snap := f.Snapshot()
		seen := make(map[string]bool, len(snap.Operators))
		for _, op := range snap.Operators {
			if op.State != acd.Ringing && op.State != acd.Busy {
				continue
			}
			key := op.ID + "/" + op.State.String() + "/" + op.Call + "/" + op.Since.String()
			seen[key] = true
			p, ok := plans[key]
			if !ok {
				switch {
				case op.State == acd.Busy && o.FedPrefix != "" && strings.HasPrefix(op.Call, o.FedPrefix):
					p = plan{} // the bridge hangs it up
				case op.State == acd.Busy:
					p = plan{verb: "hangup", arg: op.Call, at: now.Add(between(o.TalkMin, o.TalkMax))}
				default:
					r := rng.Float64()
					switch {
					case r < o.Ignore:
						p = plan{}
					case r < o.Ignore+o.Reject:
						p = plan{verb: "reject", arg: op.ID, at: now.Add(between(o.RejectAfter/2, o.RejectAfter*3/2))}
					default:
						p = plan{verb: "answer", arg: op.ID, at: now.Add(between(o.AnswerMin, o.AnswerMax))}
					}
				}
				plans[key] = p
			}
			if p.verb != "" && !now.Before(p.at) {
				if cmd, err := acd.ParseCommand(p.verb, p.arg); err == nil {
					f.Do(cmd, func([]string, error) {})
				}
				p.verb = ""
				plans[key] = p
			}
		}
		for k := range plans {
			if !seen[k] {
				delete(plans, k)
			}
		}
	}
}
