package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Adoption of a dead daemon's live calls (contract section 2, "Promises"):
// a recovered command whose Originate may have been sent is not reported
// unknown at once. When it was dialed through the PBX this daemon talks to,
// the daemon asks Asterisk which channels exist (CoreShowChannels) and
// follows each live one to its end, exactly like a call of its own: an
// answered call to its hangup (real talk time), a ringing one to its real
// outcome. Unknown is left for a call whose channel is gone.

// inDoubt is a recovered command whose Originate may have been sent.
type inDoubt struct {
	cmd *Command
	raw []byte
	st  map[string]string
}

// adoptListWait bounds the wait for AMI before the listing: past it the
// calls are reported unknown, so that a dead daemon's commands are settled
// within the contract's 15 s even when AMI is down.
const adoptListWait = 8 * time.Second

// AdoptHook hears of each live call the cell adopts from a dead daemon
// (the trunk's channel lease moves with the call: an adopted call keeps its
// trunk channel slot). Adopted is called before the call is followed;
// release, when not nil, is called once when the call's result is pushed or
// the call is cut off by the hard stop.
type AdoptHook interface {
	Adopted(ctx context.Context, call *Call) (release func())
}

// SetAdoptHook sets the hook told of adopted calls; call it before Run.
func (c *Cell) SetAdoptHook(h AdoptHook) { c.adoptHook = h }

// actionIDFor is the ActionID of the Originate of a ChannelID: an adopter
// derives the dead daemon's ActionID from the hash's channel_id, to receive
// the OriginateResponse of a call that is still ringing.
func actionIDFor(channelID string) string { return "o-" + channelID }

// runState is what Run shares with recovery, so that adopted calls live on
// the calls' context and are waited for at shutdown like claimed ones.
type runState struct {
	mu       sync.Mutex
	ctx      context.Context
	wg       *sync.WaitGroup
	stopping bool
}

func (r *runState) set(ctx context.Context, wg *sync.WaitGroup) {
	r.mu.Lock()
	r.ctx, r.wg, r.stopping = ctx, wg, false
	r.mu.Unlock()
}

func (r *runState) stop() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
}

// enter registers one adopted call with Run. It returns the context the
// call runs on and the function that ends the registration; ok is false
// once Run is stopping (the command then stays claimed for our successor).
func (r *runState) enter(fallback context.Context) (ctx context.Context, leave func(), ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil, nil, false
	}
	if r.wg == nil { // Recover called without Run (tests)
		return fallback, func() {}, true
	}
	r.wg.Add(1)
	return r.ctx, r.wg.Done, true
}

// adoptLive settles the in-doubt orphans: each one whose channel still
// exists on our PBX is followed to its end; the others are unknown. counts
// gets "adopted" and "unknown".
func (c *Cell) adoptLive(ctx context.Context, doubt []inDoubt, counts map[string]int) error {
	if len(doubt) == 0 {
		return nil
	}
	lister, canList := c.dialer.(ChannelLister)
	type watched struct {
		d inDoubt
		w Watch
	}
	var follow []watched
	closeAll := func() {
		for _, f := range follow {
			f.w.Close()
		}
	}
	for _, d := range doubt {
		why := c.adoptable(d.st, canList)
		if why == "" {
			// The watch comes first: an event after the listing is then
			// never lost between the two.
			chID := d.st["channel_id"]
			w, err := lister.WatchCall(actionIDFor(chID), chID)
			if err == nil {
				follow = append(follow, watched{d, w})
				continue
			}
			why = fmt.Sprintf(" (its channel could not be watched: %v)", err)
		}
		if err := c.settleUnknown(ctx, d.cmd, d.raw, d.st, why); err != nil {
			closeAll()
			return err
		}
		counts["unknown"]++
	}
	if len(follow) == 0 {
		return nil
	}
	chans, err := c.listChannels(ctx, lister)
	if err != nil {
		closeAll()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn().Err(err).Int("calls", len(follow)).Msg("cannot list the PBX's channels: a dead daemon's calls in progress are reported unknown")
		for _, f := range follow {
			if err := c.settleUnknown(ctx, f.d.cmd, f.d.raw, f.d.st, fmt.Sprintf(" (the PBX's channels could not be listed: %v)", err)); err != nil {
				return err
			}
			counts["unknown"]++
		}
		return nil
	}
	byUID := make(map[string]LiveChannel, len(chans))
	for _, ch := range chans {
		byUID[ch.Uniqueid] = ch
	}
	for i, f := range follow {
		chID := f.d.st["channel_id"]
		leg1, ok1 := byUID[chID]
		leg2, ok2 := byUID[chID+leg2Suffix]
		evs := f.w.Drain()
		if !ok1 && !ok2 && !hasCallEvent(evs) {
			f.w.Close()
			if err := c.settleUnknown(ctx, f.d.cmd, f.d.raw, f.d.st, " (its channel was gone when this daemon took over)"); err != nil {
				for _, rest := range follow[i+1:] {
					rest.w.Close()
				}
				return err
			}
			counts["unknown"]++
			continue
		}
		var l1, l2 *LiveChannel
		if ok1 {
			l1 = &leg1
		}
		if ok2 {
			l2 = &leg2
		}
		if !c.followAdopted(ctx, f.d, f.w, evs, l1, l2) {
			// Stopping: this one and the rest stay in our claimed list,
			// for our successor.
			for _, rest := range follow[i:] {
				rest.w.Close()
			}
			return ctx.Err()
		}
		counts["adopted"]++
	}
	return nil
}

// leg2Suffix is what Asterisk appends to our ChannelId for the second half
// of a Local channel.
const leg2Suffix = ";2"

// adoptable says why a call in doubt cannot be adopted ("" when it can).
// Only a daemon on the same PBX (ami.host and port) may: another PBX's
// channels are not in our listing, and their absence would prove nothing.
func (c *Cell) adoptable(st map[string]string, canList bool) string {
	switch {
	case !canList:
		return " (this daemon's AMI client cannot list channels)"
	case c.opt.PBX == "":
		return " (this daemon does not adopt calls: no PBX address)"
	case st["pbx"] == "":
		return " (the call hash does not say which PBX dialed it)"
	case st["pbx"] != c.opt.PBX:
		return fmt.Sprintf(" (dialed through the PBX at %s, not this daemon's)", st["pbx"])
	case st["channel_id"] == "":
		return " (no channel id recorded)"
	}
	return ""
}

// listChannels lists the PBX's channels, waiting for AMI at most
// adoptListWait.
func (c *Cell) listChannels(ctx context.Context, lister ChannelLister) ([]LiveChannel, error) {
	lctx, cancel := context.WithTimeout(ctx, adoptListWait)
	defer cancel()
	if err := c.dialer.WaitReady(lctx); err != nil {
		return nil, fmt.Errorf("AMI not ready within %s: %w", adoptListWait, err)
	}
	chans, err := lister.Channels(lctx)
	if err != nil {
		return nil, err
	}
	return chans, nil
}

// hasCallEvent reports whether evs say anything of the call itself (not
// just of the AMI connection).
func hasCallEvent(evs []Event) bool {
	for _, ev := range evs {
		if ev.Kind != EventLost && ev.Kind != EventRestored {
			return true
		}
	}
	return false
}

// followAdopted takes a slot for the adopted call (it counts against
// threads like any call in progress) and follows it on its own goroutine.
// It returns false when the cell is stopping.
func (c *Cell) followAdopted(ctx context.Context, d inDoubt, w Watch, evs []Event, leg1, leg2 *LiveChannel) bool {
	if !c.takeSlot(ctx) {
		return false
	}
	callCtx, leave, ok := c.run.enter(ctx)
	if !ok {
		<-c.slots
		return false
	}
	now := time.Now()
	call := callFromHash(d.cmd, d.raw, c.opt.Cell, c.opt.Instance, d.st)
	call.Token = d.st["token"] // the hash's steps check the claim's token
	call.State = State(d.st["state"])
	call.Adopted = true
	log := callLog{l: &c.log, id: d.cmd.ID}
	f := c.newFollower(callCtx, log, call, w, d.cmd.Timeout(c.opt.RingTimeout))
	f.adopted = true
	t := &f.t
	if leg1 != nil {
		t.legSeen[1] = true
		t.channel = leg1.Channel
	}
	if leg2 != nil {
		t.legSeen[2] = true
	}
	if call.Channel == "" {
		call.Channel = t.channel
	}
	answered := call.State == StateAnswered || (leg1 != nil && leg1.State == ChannelStateUp)
	if answered {
		// Its OriginateResponse went to the dead daemon: the answer is
		// known from the hash or from the channel's state.
		t.responded, t.reason = true, ReasonAnswered
		at := call.AnsweredAt // the dead daemon saw the answer
		if at.IsZero() && leg1 != nil {
			// Asterisk reports no answer time: the channel's creation
			// (CoreShowChannels' Duration, whole seconds).
			at = now.Add(-leg1.Duration)
		}
		if at.IsZero() {
			at = now
		}
		t.upAt = at
		if call.State == StateAnswered {
			f.answeredNoted = true
			f.deadline.Stop()
			call.AnsweredAt = at
		}
	}
	f.applyAll(evs)

	c.hold(d.raw)
	c.inFlight.Add(1)
	var release func()
	if c.adoptHook != nil {
		release = c.adoptHook.Adopted(callCtx, call)
	}
	f.done = func() {
		if release != nil {
			release()
		}
		c.release(d.raw)
		c.inFlight.Add(-1)
		<-c.slots
		leave()
	}
	log.Info().Str("channel_id", call.ChannelID).Str("from", d.st["instance"]).Str("state", string(call.State)).
		Bool("up", answered).Msg("adopted a live call of a dead daemon: following it to its end")
	go f.proceed()
	return true
}

// takeSlot waits for a slot (threads), going round for the watchdog while
// it waits; false when ctx ends.
func (c *Cell) takeSlot(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(roundEvery)
	defer t.Stop()
	for {
		select {
		case c.slots <- struct{}{}:
			return true
		case <-t.C:
			c.round()
		case <-ctx.Done():
			return false
		}
	}
}
