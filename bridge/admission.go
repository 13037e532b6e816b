package bridge

import (
	"context"
	"sync"
	"time"
)

// Admission is a limit on claiming beyond threads: the pacing budget that
// every daemon of a cell shares (contract section 6), a trunk that can
// dial only so many calls in the next second or whose breaker is open
// (section 7), replicas that do not acknowledge (section 2, Durability).
// What a limit holds back waits in the dial list, where Multcall sees it
// and any daemon of the cell can take it, never in our memory.
//
// The claim loop asks every admission before each claim (and each batch);
// a command is claimed only when all of them admit it.
type Admission interface {
	// Admit takes up to want admissions and returns how many it took
	// (0..want); 0 means claim nothing now. It must not wait: one Redis
	// round trip at most. On error the loop claims nothing and asks again
	// later.
	Admit(ctx context.Context, want int) (int, error)
	// Unused gives back n admissions that found no command to claim (the
	// dial list held fewer). It must not block.
	Unused(n int)
	// Release ends the admission of one claimed command, exactly once,
	// when it no longer counts against the limit: its call was answered,
	// or it was settled (a result, a burial, a requeue), or the daemon
	// stops. call is nil for a command that could not be parsed. It must
	// not block.
	Release(call *Call)
	// Wake is signalled (never closed) when Admit may allow more than it
	// did last; the loop asks again at least every AdmissionRetry anyway.
	Wake() <-chan struct{}
}

// Holder is implemented by admissions that can hold everything back at
// once (the replicas not acknowledging). A blocking claim already waiting
// when such a hold began returns a command the admission never let
// through: the claim loop asks Holding after each blocking claim and gives
// that command back to the front of the dial list.
type Holder interface {
	Holding() bool
}

// AdmissionRetry is how often a claim loop held back by an admission asks
// again without being woken.
const AdmissionRetry = 100 * time.Millisecond

// DialGate is passed right before each Originate is written: a trunk's
// rate token and channel slot, and its breaker. Unlike an Admission, which
// keeps commands in Redis, a gate holds a confirmed command that is about
// to be dialed.
type DialGate interface {
	// Enter waits until this attempt may be written, at most until
	// deadline (what is left of the command's ring time). An error ends
	// the call `failed`, never dialed, with the error's text as the
	// result's error (BreakerTrunkBusyText, BreakerOpenErrorText first, so
	// that the breaker knows them for our own).
	Enter(ctx context.Context, call *Call, deadline time.Time) error
	// Exit ends what a successful Enter began, once: the attempt was not
	// written or was refused (r nil; fate says which), or the call is
	// over (r its result; rang: a leg of the call rang or was answered).
	// It is not called on a hard stop: what Enter holds then stays held
	// until it expires or recovery adopts it. It must not block long.
	Exit(call *Call, fate OriginateFate, r *Result, rang bool)
}

// SetAdmissions sets the limits the claim loop asks; call it before Run.
func (c *Cell) SetAdmissions(a ...Admission) { c.adm = a }

// SetDialGates sets the gates each Originate passes, in order; call it
// before Run.
func (c *Cell) SetDialGates(g ...DialGate) { c.gates = g }

// admit asks every admission for up to want commands and returns how many
// all of them admitted; what one admitted beyond a later one's answer is
// given back at once.
func (c *Cell) admit(ctx context.Context, want int) int {
	for i, a := range c.adm {
		got, err := a.Admit(ctx, want)
		if err != nil {
			c.log.Debug().Err(err).Msg("admission not asked: claiming nothing for now")
			got = 0
		}
		got = max(0, min(got, want))
		if got < want {
			for _, prev := range c.adm[:i] {
				prev.Unused(want - got)
			}
		}
		want = got
		if want == 0 {
			return 0
		}
	}
	return want
}

// unused gives back n admissions of every admission.
func (c *Cell) unused(n int) {
	if n <= 0 {
		return
	}
	for _, a := range c.adm {
		a.Unused(n)
	}
}

// waitAdmission waits until an admission may allow more: woken, or
// AdmissionRetry passed, or roundEvery (the loop shows it is alive). It
// returns false when ctx ended.
func (c *Cell) waitAdmission(ctx context.Context) bool {
	t := time.NewTimer(AdmissionRetry)
	defer t.Stop()
	select {
	case <-c.admWake:
		return true
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// forwardWakes merges the admissions' Wake channels into c.admWake until
// ctx ends.
func (c *Cell) forwardWakes(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range c.adm {
		w := a.Wake()
		if w == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-w:
					select {
					case c.admWake <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
}

// admitted is a claimed command's admission, released once.
type admitted struct {
	once sync.Once
	c    *Cell
}

func (c *Cell) newAdmitted() *admitted {
	if len(c.adm) == 0 {
		return nil
	}
	return &admitted{c: c}
}

// release ends the admission (nil-safe, idempotent).
func (a *admitted) release(call *Call) {
	if a == nil {
		return
	}
	a.once.Do(func() {
		for _, adm := range a.c.adm {
			adm.Release(call)
		}
	})
}
