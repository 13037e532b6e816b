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
// when ctx is cancelled (hard stop); the command then stays claimed.
func (c *Cell) handle(ctx context.Context, raw []byte) {
	received := time.Now()
	cmd, err := ParseCommand(raw)
	if err != nil {
		c.bury(ctx, raw, err, received)
		return
	}
	call := &Call{
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

	r := c.dial(ctx, log, call)
	if r == nil {
		return // hard stop
	}
	c.finish(ctx, log, call, r)
}

// dial makes the Originate attempts and follows the call to its outcome.
// It returns nil only on a hard stop.
func (c *Cell) dial(ctx context.Context, log callLog, call *Call) *Result {
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
				return nil
			}
			if err != nil {
				return amiUnavailable(call, lastErr)
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
		if err := c.persist(ctx, "mark dialing "+cmd.ID, func(ctx context.Context) error {
			return c.store.MarkDialing(ctx, call)
		}); err != nil {
			if errors.Is(err, ErrNotOwner) {
				log.Warn().Err(err).Msg("not dialing: another daemon settled this command while we were presumed dead")
			}
			return nil
		}

		w, err := c.dialer.Originate(ctx, c.originateRequest(call, ringTimeout))
		var refused *RefusedError
		switch {
		case err == nil:
			call.OriginatedAt = time.Now()
			c.obs.Originated(call.OriginatedAt.Sub(call.ReceivedAt))
			log.Debug().Int("attempt", call.Attempts).Str("channel_id", call.ChannelID).Msg("originate queued")
			return c.follow(ctx, log, call, w, ringTimeout)
		case errors.Is(err, ErrInvalidRequest):
			call.Attempts--
			r := call.Result(StatusFailed)
			r.Error = err.Error()
			return r
		case errors.Is(err, ErrNotWritten):
			// Not an attempt in Asterisk's eyes: nothing was sent.
			call.Attempts--
			lastErr = err
			if !retry.Sleep(ctx, c.opt.RetryPause) {
				return nil
			}
			if time.Now().After(amiDeadline) {
				return amiUnavailable(call, err)
			}
		case errors.As(err, &refused):
			lastErr = err
			log.Warn().Int("attempt", call.Attempts).Str("ami_message", refused.Message).Msg("originate refused")
			if call.Attempts < c.opt.Retries {
				c.count(ctx, "retries", 1)
				c.obs.Retried()
				if !retry.Sleep(ctx, c.opt.RetryPause) {
					return nil
				}
			}
		default:
			// Written but unanswered: a call may exist. Never resend.
			if ctx.Err() != nil {
				return nil
			}
			r := call.Result(StatusUnknown)
			r.Error = err.Error()
			return r
		}
	}
	r := call.Result(StatusFailed)
	if lastErr != nil {
		r.Error = lastErr.Error()
	}
	return r
}

func (c *Cell) originateRequest(call *Call, ringTimeout time.Duration) OriginateRequest {
	cmd := call.Cmd
	callerID := cmd.CallerID
	if callerID == "" {
		callerID = c.opt.CallerID
	}
	vars := make([]Variable, 0, len(cmd.Variables)+2)
	vars = append(vars, cmd.Variables...)
	vars = append(vars,
		Variable{Name: "DIALBRIDGE_ID", Value: cmd.ID},
		Variable{Name: "DIALBRIDGE_CALL_CODE", Value: call.CallCode},
	)
	return OriginateRequest{
		ActionID:  "o-" + call.ChannelID,
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

// follow waits for the outcome of an originate Asterisk accepted, and for an
// answered call, for its end.
func (c *Cell) follow(ctx context.Context, log callLog, call *Call, w Watch, ringTimeout time.Duration) *Result {
	defer w.Close()
	var t tracker
	// Asterisk sends the OriginateResponse by the ring timeout at the
	// latest; past that plus a grace the outcome is lost: unknown.
	deadline := time.NewTimer(ringTimeout + c.opt.OutcomeGrace)
	defer deadline.Stop()
	var settle *time.Timer // started once the outcome is known, to collect hangup causes
	var settleC <-chan time.Time
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	startSettle := func() {
		if settle == nil {
			settle = time.NewTimer(c.opt.HangupGrace)
			settleC = settle.C
		}
	}
	answeredNoted := false
	// An answered call that lived through an AMI outage may have hung up
	// unseen: once AMI is back we ask Asterisk whether its channel exists.
	var lostAt time.Time
	var check *time.Timer
	var checkC <-chan time.Time
	defer func() {
		if check != nil {
			check.Stop()
		}
	}()
	armCheck := func(d time.Duration) {
		if check != nil {
			check.Stop()
		}
		check = time.NewTimer(d)
		checkC = check.C
	}

	for {
		// Decide on what we know so far.
		if t.responded {
			if t.reason == ReasonAnswered {
				if !answeredNoted {
					answeredNoted = true
					deadline.Stop()
					call.State = StateAnswered
					call.AnsweredAt = t.answeredAt()
					call.Channel = t.channel
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
					startSettle()
				}
				if t.ended() {
					return c.answeredResult(call, &t)
				}
			} else {
				startSettle()
				if t.causeSettled() {
					return c.failedResult(call, &t)
				}
			}
		}

		select {
		case <-w.C():
			for _, ev := range w.Drain() {
				switch ev.Kind {
				case EventLost:
					log.Warn().Msg("AMI connection lost while the call was in progress: events may be missing")
					if answeredNoted && t.endedAt.IsZero() && lostAt.IsZero() {
						lostAt = ev.At
					}
				case EventRestored:
					if !lostAt.IsZero() && t.endedAt.IsZero() {
						armCheck(0)
					}
				}
				t.apply(ev)
			}
		case <-checkC:
			checkC = nil
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
				return nil
			case err != nil:
				log.Warn().Err(err).Msg("cannot tell whether the answered call still exists; asking again")
				armCheck(5 * time.Second)
			case alive:
				lostAt = time.Time{} // the Hangup will come on the new connection
			default:
				now := time.Now()
				call.EndedAt = now
				r := c.answeredResult(call, &t)
				r.EndedAt = FormatTime(now)
				r.TalkMS = now.Sub(call.AnsweredAt).Milliseconds()
				r.Error = fmt.Sprintf("hangup not observed: the AMI connection was lost at %s and the channel was gone at %s; ended_at and talk_ms are upper bounds",
					FormatTime(lostAt), FormatTime(now))
				return r
			}
		case <-settleC:
			// The cause is as good as it will get.
			if t.reason == ReasonAnswered {
				if t.endedAt.IsZero() {
					settleC = nil // still talking: keep waiting for the hangup
					settle = nil
					continue
				}
				return c.answeredResult(call, &t)
			}
			return c.failedResult(call, &t)
		case <-deadline.C:
			r := call.Result(StatusUnknown)
			r.Error = fmt.Sprintf("no OriginateResponse within %s", ringTimeout+c.opt.OutcomeGrace)
			if t.lost {
				r.Error += " (AMI connection was lost)"
			}
			return r
		case <-ctx.Done():
			return nil
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

// checkCallCode keeps the call code safe inside the comma-separated Variable
// header: Multcall's codes are short tokens.
func checkCallCode(code string) error {
	if code == "" || len(code) > 64 {
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
