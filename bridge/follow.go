package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// follower follows one originated call to its result. It runs on the call's
// goroutine while the call rings; once the call is answered and only its
// hangup is awaited (minutes, for thousands of calls at once) it parks: the
// goroutine ends, and the next event, or the hard stop, resumes the call on
// a new one. A talking call then costs its state and no stack.
type follower struct {
	c           *Cell
	ctx         context.Context
	log         callLog
	call        *Call
	w           Watch
	ringTimeout time.Duration
	done        func() // the call's slot is released: called once, at the very end
	adm         *admitted
	// gated: the Originate passed the dial gates, which are told the
	// outcome when the call ends.
	gated bool

	t tracker
	// Asterisk sends the OriginateResponse by the ring timeout at the
	// latest; past that plus a grace the outcome is lost: unknown.
	deadline *time.Timer
	// settle starts once the outcome is known, to collect hangup causes.
	settle  *time.Timer
	settleC <-chan time.Time

	answeredNoted bool
	// adopted: a dead daemon's call, followed from the middle. Its
	// OriginateResponse may have gone to the dead daemon, so a leg's
	// Hangup cause can decide its outcome (see run).
	adopted bool
	// An answered call that lived through an AMI outage may have hung up
	// unseen: once AMI is back we ask Asterisk whether its channel exists.
	lostAt time.Time
	check  *time.Timer
	checkC <-chan time.Time
}

func (c *Cell) newFollower(ctx context.Context, log callLog, call *Call, w Watch, ringTimeout time.Duration) *follower {
	return &follower{
		c: c, ctx: ctx, log: log, call: call, w: w, ringTimeout: ringTimeout,
		deadline: time.NewTimer(ringTimeout + c.opt.OutcomeGrace),
	}
}

// proceed follows the call until it parks or ends; at the end it pushes the
// result (none on a hard stop) and releases the call.
func (f *follower) proceed() {
	r, parked := f.run()
	if parked {
		return
	}
	f.w.Close()
	f.deadline.Stop()
	if f.settle != nil {
		f.settle.Stop()
	}
	if f.check != nil {
		f.check.Stop()
	}
	if r != nil {
		if f.gated {
			f.c.exitGates(f.call, FateAccepted, r, f.t.rang)
		}
		f.c.finish(f.ctx, f.log, f.call, r)
	}
	f.adm.release(f.call)
	f.done()
}

// parkable: answered, the answer recorded, no timer running: only an event
// or the hard stop can move the call on.
func (f *follower) parkable() bool {
	return f.answeredNoted && f.t.endedAt.IsZero() && f.settleC == nil && f.checkC == nil
}

// park arranges for proceed to run again on the next event or on the hard
// stop, whichever comes first, and lets the goroutine go.
func (f *follower) park() {
	p := &parking{f: f}
	p.mu.Lock()
	p.stopCtx = context.AfterFunc(f.ctx, p.wake)
	p.stopWatch = f.w.Notify(p.wake)
	p.mu.Unlock()
}

// parking is one park of a call: the first wake wins and cancels the other.
type parking struct {
	f         *follower
	mu        sync.Mutex
	woken     bool
	stopCtx   func() bool
	stopWatch func()
}

// wake runs on the router's or the context's goroutine: it must not block.
func (p *parking) wake() {
	p.mu.Lock()
	if p.woken {
		p.mu.Unlock()
		return
	}
	p.woken = true
	p.mu.Unlock()
	go func() {
		p.mu.Lock() // wake may run before park has stored the stops
		stopCtx, stopWatch := p.stopCtx, p.stopWatch
		p.mu.Unlock()
		stopCtx()
		stopWatch()
		p.f.proceed()
	}()
}

func (f *follower) drain() { f.applyAll(f.w.Drain()) }

func (f *follower) applyAll(evs []Event) {
	for _, ev := range evs {
		switch ev.Kind {
		case EventLost:
			f.log.Warn().Msg("AMI connection lost while the call was in progress: events may be missing")
			if f.answeredNoted && f.t.endedAt.IsZero() && f.lostAt.IsZero() {
				f.lostAt = ev.At
			}
		case EventRestored:
			if !f.lostAt.IsZero() && f.t.endedAt.IsZero() {
				f.armCheck(0)
			}
		}
		f.t.apply(ev)
	}
}

func (f *follower) startSettle() {
	if f.settle == nil {
		f.settle = time.NewTimer(f.c.opt.HangupGrace)
		f.settleC = f.settle.C
	}
}

func (f *follower) armCheck(d time.Duration) {
	if f.check != nil {
		f.check.Stop()
	}
	f.check = time.NewTimer(d)
	f.checkC = f.check.C
}

// run waits for the outcome of an originate Asterisk accepted and, for an
// answered call, for its end. It returns the result, nil on a hard stop, or
// parked=true when the call parked.
func (f *follower) run() (r *Result, parked bool) {
	c, call, log, ctx := f.c, f.call, f.log, f.ctx
	t := &f.t
	for {
		// Decide on what we know so far.
		if t.responded {
			if t.reason == ReasonAnswered {
				if !f.answeredNoted {
					f.answeredNoted = true
					f.deadline.Stop()
					call.State = StateAnswered
					call.AnsweredAt = t.answeredAt()
					call.Channel = t.channel
					f.adm.release(call) // no longer dialing (contract section 6)
					log.Debug().Str("channel", t.channel).Msg("answered")
					// Already over (a short call whose events came together):
					// the result follows at once, and Finish records the
					// answer too. Otherwise the hash shows the conversation.
					if !t.ended() {
						c.persist(ctx, "mark answered "+call.Cmd.ID, func(ctx context.Context) error { //nolint:errcheck // on hard stop the result is skipped below
							return c.store.MarkAnswered(ctx, call)
						})
					}
				}
				if !t.endedAt.IsZero() {
					f.startSettle()
				}
				if t.ended() {
					return c.answeredResult(call, t), false
				}
			} else {
				f.startSettle()
				if t.causeSettled() {
					return c.failedResult(call, t), false
				}
			}
		} else if f.adopted && t.legHung[1] && t.cause != 0 {
			// Adopted while ringing, and over: its OriginateResponse may
			// have gone before we watched. Wait the usual grace for it;
			// without it the Hangup cause decides (StatusForCause), as it
			// does for Reason 0.
			f.startSettle()
		}
		if f.parkable() && ctx.Err() == nil {
			select {
			case <-f.w.C():
				f.drain()
				continue
			default:
				f.park()
				return nil, true
			}
		}

		select {
		case <-f.w.C():
			f.drain()
		case <-f.checkC:
			f.checkC = nil
			if !t.endedAt.IsZero() {
				continue
			}
			cc, ok := c.dialer.(ChannelChecker)
			if !ok {
				continue // keep waiting for the Hangup
			}
			name := t.channel
			if name == "" {
				name = call.ChannelID
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			alive, err := cc.ChannelAlive(cctx, name)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil, false
			case err != nil:
				log.Warn().Err(err).Msg("cannot tell whether the answered call still exists; asking again")
				f.armCheck(5 * time.Second)
			case alive:
				f.lostAt = time.Time{} // the Hangup will come on the new connection
			default:
				now := time.Now()
				call.EndedAt = now
				r := c.answeredResult(call, t)
				r.EndedAt = FormatTime(now)
				r.TalkMS = talkMS(call.AnsweredAt, now)
				r.Error = fmt.Sprintf("hangup not observed: the AMI connection was lost at %s and the channel was gone at %s; ended_at and talk_ms are upper bounds",
					FormatTime(f.lostAt), FormatTime(now))
				return r, false
			}
		case <-f.settleC:
			// The cause is as good as it will get.
			if t.reason == ReasonAnswered {
				if t.endedAt.IsZero() {
					f.settleC = nil // still talking: keep waiting for the hangup
					f.settle = nil
					continue
				}
				return c.answeredResult(call, t), false
			}
			return c.failedResult(call, t), false
		case <-f.deadline.C:
			r := call.Result(StatusUnknown)
			r.Error = fmt.Sprintf("no OriginateResponse within %s", f.ringTimeout+c.opt.OutcomeGrace)
			if t.lost {
				r.Error += " (AMI connection was lost)"
			}
			return r, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

func (c *Cell) answeredResult(call *Call, t *tracker) *Result {
	call.EndedAt = t.endedAt
	if call.Channel == "" {
		call.Channel = t.channel
	}
	r := call.Result(StatusAnswered)
	r.Reason = t.reason
	r.Cause, r.CauseText = t.cause, t.causeText
	return r
}

func (c *Cell) failedResult(call *Call, t *tracker) *Result {
	call.Channel = t.channel
	status := StatusForReason(t.reason, t.cause)
	r := call.Result(status)
	r.Reason = t.reason
	r.Cause, r.CauseText = t.cause, t.causeText
	if status == StatusFailed && t.cause == 0 && !t.legSeen[1] {
		r.Error = "Asterisk could not create the channel"
	}
	return r
}
