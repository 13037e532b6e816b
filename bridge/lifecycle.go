package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/internal/retry"
)

// handle drives one claimed command to its one result (contract section 2):
// parse → Begin (duplicate check, status hash, ACK) → confirmation →
// Originate attempts → outcome → Finish. It returns without a result only
// when ctx is cancelled (hard stop); the command then stays claimed. done
// is called once the call is over, possibly after handle returned: an
// answered call parks (see follower).
func (c *Cell) handle(ctx context.Context, raw []byte, adm *admitted, done func()) {
	// The place in the dialing window is left once Asterisk accepted the
	// Originate, or when the call ends before that.
	dialing := true
	leaveDialing := func() {
		if dialing {
			dialing = false
			<-c.dialing
		}
	}
	handedOff := false
	var call *Call
	defer func() {
		leaveDialing()
		if !handedOff {
			adm.release(call)
			done()
		}
	}()
	received := time.Now()
	cmd, err := ParseCommand(raw)
	if err != nil {
		c.bury(ctx, raw, err, received)
		return
	}
	call = &Call{
		Cmd:        cmd,
		Raw:        raw,
		Cell:       c.opt.Cell,
		Instance:   c.opt.Instance,
		Token:      c.idBase + "-" + strconv.FormatUint(c.seq.Add(1), 10),
		State:      StateAcked,
		ReceivedAt: received,
	}
	log := callLog{l: &c.log, id: cmd.ID}

	// Register for the confirmation before the ACK exists: Multcall may
	// answer faster than Begin returns.
	confirmed, cancel := c.confirms.Expect(cmd.ID)
	defer cancel()

	var dup bool
	if err := c.persist(ctx, "begin "+cmd.ID, func(ctx context.Context) (err error) {
		dup, err = c.store.Begin(ctx, call)
		return err
	}); err != nil {
		return
	}
	if dup {
		r := call.Result(StatusDuplicate)
		r.Error = duplicateError
		c.finish(ctx, log, call, r)
		return
	}
	log.Debug().Str("number", cmd.Number).Msg("acked, waiting for confirmation")

	ackTimer := time.NewTimer(c.opt.ACKTimeout)
	select {
	case conf := <-confirmed:
		ackTimer.Stop()
		call.CallCode = conf.CallCode
		call.ConfirmedAt = conf.At
		if call.ConfirmedAt.IsZero() {
			call.ConfirmedAt = time.Now()
		}
	case <-ackTimer.C:
		r := call.Result(StatusAckTimeout)
		r.Error = fmt.Sprintf("no confirmation within %s", c.opt.ACKTimeout)
		c.finish(ctx, log, call, r)
		return
	case <-ctx.Done():
		ackTimer.Stop()
		return
	}
	cancel()
	if err := checkCallCode(call.CallCode); err != nil {
		r := call.Result(StatusFailed)
		r.Error = err.Error()
		c.finish(ctx, log, call, r)
		return
	}

	r, f := c.dial(ctx, log, call)
	if f != nil {
		handedOff = true
		leaveDialing()
		f.adm = adm
		f.done = done
		f.proceed()
		return
	}
	if r == nil {
		return // hard stop
	}
	c.finish(ctx, log, call, r)
}

// dial makes the Originate attempts. It returns the follower of the call
// Asterisk accepted, or the result of a call that was not dialed (nil on a
// hard stop).
func (c *Cell) dial(ctx context.Context, log callLog, call *Call) (*Result, *follower) {
	cmd := call.Cmd
	ringTimeout := cmd.Timeout(c.opt.RingTimeout)
	// The command waits for AMI at most its ring time, then fails undialed.
	amiDeadline := time.Now().Add(ringTimeout)
	var lastErr error

	for call.Attempts < c.opt.Retries {
		if !c.dialer.Ready() {
			waitCtx, stop := context.WithDeadline(ctx, amiDeadline)
			err := c.dialer.WaitReady(waitCtx)
			stop()
			if ctx.Err() != nil {
				return nil, nil
			}
			if err != nil {
				return amiUnavailable(call, lastErr), nil
			}
		}

		call.Attempts++
		call.ChannelID = call.Token + "-" + strconv.Itoa(call.Attempts)
		call.State = StateOriginating
		if call.DialedAt.IsZero() {
			call.DialedAt = time.Now()
		}
		// Recorded before the action is written: if we die after this,
		// recovery knows an originate may exist and never dials again.
		mark := func(ctx context.Context) error {
			return c.persist(ctx, "mark dialing "+cmd.ID, func(ctx context.Context) error {
				return c.store.MarkDialing(ctx, call)
			})
		}
		// The trunk's token is taken last, right before the action is
		// written, so that its spacing holds at the AMI wire: after the
		// mark, or beside it when the mark is one quick round trip.
		enter := func(ctx context.Context) error { return c.enterGates(ctx, call, amiDeadline) }
		var err, gateErr error
		beside := c.opt.GatesBesideMark && len(c.gates) > 0
		if beside {
			err, gateErr = besides(ctx, mark, enter)
			if err != nil && gateErr == nil {
				c.exitGates(call, FateNotWritten, nil, false)
			}
		} else {
			err = mark(ctx)
		}
		if err != nil {
			if errors.Is(err, ErrNotDurable) {
				// Not written: try again within the same budget as AMI.
				call.Attempts--
				if time.Now().After(amiDeadline) || !retry.Sleep(ctx, c.opt.RetryPause) {
					return notDurable(ctx, call, err)
				}
				continue
			}
			if errors.Is(err, ErrNotOwner) {
				log.Warn().Err(err).Msg("not dialing: another daemon settled this command while we were presumed dead")
			}
			return nil, nil
		}

		if !beside {
			gateErr = enter(ctx)
		}
		if err := gateErr; err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			call.Attempts--
			r := call.Result(StatusFailed)
			r.Error = err.Error()
			return r, nil
		}

		w, err := c.dialer.Originate(ctx, c.originateRequest(call, ringTimeout))
		var refused *RefusedError
		switch {
		case err == nil:
			call.OriginatedAt = time.Now()
			c.obs.Originated(call.OriginatedAt.Sub(call.ReceivedAt))
			log.Debug().Int("attempt", call.Attempts).Str("channel_id", call.ChannelID).Msg("originate queued")
			f := c.newFollower(ctx, log, call, w, ringTimeout)
			f.gated = len(c.gates) > 0
			return nil, f
		case errors.Is(err, ErrInvalidRequest):
			c.exitGates(call, FateNotWritten, nil, false)
			call.Attempts--
			r := call.Result(StatusFailed)
			r.Error = err.Error()
			return r, nil
		case errors.Is(err, ErrNotWritten):
			// Not an attempt in Asterisk's eyes: nothing was sent.
			c.exitGates(call, FateNotWritten, nil, false)
			call.Attempts--
			lastErr = err
			if !retry.Sleep(ctx, c.opt.RetryPause) {
				return nil, nil
			}
			if time.Now().After(amiDeadline) {
				return amiUnavailable(call, err), nil
			}
		case errors.As(err, &refused):
			c.exitGates(call, FateRefused, nil, false)
			lastErr = err
			log.Warn().Int("attempt", call.Attempts).Str("ami_message", refused.Message).Msg("originate refused")
			if call.Attempts < c.opt.Retries {
				c.count(ctx, "retries", 1)
				c.obs.Retried()
				if !retry.Sleep(ctx, c.opt.RetryPause) {
					return nil, nil
				}
			}
		default:
			// Written but unanswered: a call may exist. Never resend.
			if ctx.Err() != nil {
				return nil, nil
			}
			r := call.Result(StatusUnknown)
			r.Error = err.Error()
			c.exitGates(call, FateNoResponse, r, false)
			return r, nil
		}
	}
	r := call.Result(StatusFailed)
	if lastErr != nil {
		r.Error = lastErr.Error()
	}
	return r, nil
}

func (c *Cell) originateRequest(call *Call, ringTimeout time.Duration) OriginateRequest {
	cmd := call.Cmd
	callerID := cmd.CallerID
	if callerID == "" {
		callerID = c.opt.CallerID
	}
	// Ours first (contract section 2): they reach the channel whatever the
	// command's variables do to the end of the header (Asterisk's argument
	// parser stops splitting after 63), and none of the command's can
	// replace them afterwards, since ParseCommand reserves their names
	// with any leading underscores.
	vars := make([]Variable, 0, len(cmd.Variables)+2)
	vars = append(vars,
		Variable{Name: "DIALBRIDGE_ID", Value: cmd.ID},
		Variable{Name: "DIALBRIDGE_CALL_CODE", Value: call.CallCode},
	)
	vars = append(vars, cmd.Variables...)
	return OriginateRequest{
		ActionID:  actionIDFor(call.ChannelID), // an adopter derives it from the hash (adopt.go)
		ChannelID: call.ChannelID,
		Channel:   strings.Replace(c.opt.ChannelTemplate, "{number}", cmd.Number, 1),
		Context:   c.opt.Context,
		Exten:     c.opt.Exten,
		Priority:  c.opt.Priority,
		Timeout:   ringTimeout,
		CallerID:  callerID,
		Variables: vars,
	}
}

// finish pushes the result; it only gives up on a hard stop, leaving the
// command claimed for recovery.
func (c *Cell) finish(ctx context.Context, log callLog, call *Call, r *Result) {
	call.State = StateDone
	var settled bool
	err := c.persist(ctx, "finish "+r.ID, func(ctx context.Context) (err error) {
		settled, err = c.store.Finish(ctx, call.Raw, r)
		return err
	})
	if err != nil {
		log.Warn().Err(err).Msg("stopped before the result was pushed: left claimed for recovery")
		return
	}
	if !settled {
		log.Warn().Str("status", string(r.Status)).Msg("command was already settled elsewhere (recovered by another instance): result not pushed")
		return
	}
	var sinceOriginate time.Duration
	if !call.OriginatedAt.IsZero() {
		sinceOriginate = time.Since(call.OriginatedAt)
	}
	c.obs.Finished(r.Status, sinceOriginate)
	ev := log.Info()
	if r.Status == StatusFailed || r.Status == StatusUnknown {
		ev = log.Warn()
	}
	ev = ev.Str("status", string(r.Status)).Int("attempts", r.Attempts).Int("cause", r.Cause).Int64("talk_ms", r.TalkMS)
	if r.Error != "" {
		ev = ev.Str("error", r.Error)
	}
	ev.Msg("result")
}

// bury settles a command that failed validation.
func (c *Cell) bury(ctx context.Context, raw []byte, cause error, received time.Time) {
	var r *Result
	if id := IDOf(cause); id != "" {
		r = &Result{
			ID: id, Cell: c.opt.Cell, Status: StatusInvalid, Error: cause.Error(),
			ReceivedAt: FormatTime(received), Instance: c.opt.Instance,
		}
	}
	var settled bool
	if err := c.persist(ctx, "bury", func(ctx context.Context) (err error) {
		settled, err = c.store.Bury(ctx, raw, cause, r)
		return err
	}); err != nil {
		return
	}
	if settled {
		c.log.Warn().Str("id", IDOf(cause)).Int("bytes", len(raw)).Str("error", cause.Error()).Msg("invalid command moved to dead")
	}
}

func (c *Cell) count(ctx context.Context, field string, n int64) {
	if err := c.store.Count(ctx, field, n); err != nil {
		c.log.Debug().Err(err).Str("field", field).Msg("counter not updated")
	}
}

// duplicateError is the error of a duplicate result.
const duplicateError = "a call with this id was already received for this cell; not dialed again"

// amiUnavailable is the result of a call that waited its ring time for AMI
// and was never dialed. lastErr (ErrNotWritten's text already begins
// "AMI unavailable") says what the last try met, when there was one.
func amiUnavailable(call *Call, lastErr error) *Result {
	r := call.Result(StatusFailed)
	switch {
	case lastErr == nil:
		r.Error = "AMI unavailable"
	case strings.HasPrefix(lastErr.Error(), "AMI unavailable"):
		r.Error = lastErr.Error()
	default:
		r.Error = "AMI unavailable: " + lastErr.Error()
	}
	return r
}

// notDurable is the result of a call whose dialing decision no replica
// acknowledged within its ring time: failed, never dialed (nil on a hard
// stop).
func notDurable(ctx context.Context, call *Call, err error) (*Result, *follower) {
	if ctx.Err() != nil {
		return nil, nil
	}
	r := call.Result(StatusFailed)
	r.Error = err.Error() + "; never dialed"
	return r, nil
}

// checkCallCode keeps the call code safe inside the Variable header, which
// Asterisk splits and unescapes with its application-argument parser:
// Multcall's codes are short tokens, so an ASCII allow-list (which leaves out
// every Cc and Cf character too) costs nothing and needs no escaping.
func checkCallCode(code string) error {
	if code == "" || len(code) > MaxCallCodeLen {
		return fmt.Errorf("confirmation carried an invalid call_code (must be 1-64 characters, got %d)", len(code))
	}
	for i := 0; i < len(code); i++ {
		b := code[i]
		if !(isAlnum(b) || b == '.' || b == '_' || b == ':' || b == '-') {
			return fmt.Errorf("confirmation carried an invalid call_code: %s at position %d", describeByte(code, i), i)
		}
	}
	return nil
}

// callLog logs with the call's id. It replaces a per-call Logger.With,
// which copied the logger's context for every call in flight.
type callLog struct {
	l  *zerolog.Logger
	id string
}

func (c callLog) Debug() *zerolog.Event { return c.l.Debug().Str("id", c.id) }
func (c callLog) Info() *zerolog.Event  { return c.l.Info().Str("id", c.id) }
func (c callLog) Warn() *zerolog.Event  { return c.l.Warn().Str("id", c.id) }

// besides runs mark and enter at once and waits for both: two round trips
// to different keys (the call's hash, the trunk's bucket) cost one.
// A failed mark stops the gates' wait: the call will not be dialed.
func besides(ctx context.Context, mark, enter func(context.Context) error) (markErr, enterErr error) {
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- enter(ectx) }()
	if markErr = mark(ctx); markErr != nil {
		cancel()
	}
	return markErr, <-done
}

// enterGates passes the dial gates in order; when one refuses, those
// already passed are left again (nothing was written).
func (c *Cell) enterGates(ctx context.Context, call *Call, deadline time.Time) error {
	for i, g := range c.gates {
		if err := g.Enter(ctx, call, deadline); err != nil {
			for _, prev := range c.gates[:i] {
				prev.Exit(call, FateNotWritten, nil, false)
			}
			return err
		}
	}
	return nil
}

// exitGates tells every gate how the attempt or the call ended.
func (c *Cell) exitGates(call *Call, fate OriginateFate, r *Result, rang bool) {
	for _, g := range c.gates {
		g.Exit(call, fate, r, rang)
	}
}
