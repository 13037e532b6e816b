package bridge

import (
	"context"
	"errors"
	"time"
)

// This file holds the small interfaces the bridge talks through. redisq
// implements Store and Confirmations, ami implements Dialer. The bridge never
// imports a client library: that keeps the call lifecycle testable with plain
// fakes and keeps Redis/Asterisk details out of the domain.

// Store is everything the call lifecycle needs from Redis for one cell.
//
// Every method is one round trip (a Lua script or a pipeline), so a call costs
// a fixed, small number of round trips: ClaimNext, Begin, MarkDialing, Finish
// (plus MarkAnswered for answered calls).
type Store interface {
	// ClaimNext atomically moves the oldest command from the cell's dial list
	// into this instance's claimed list (BLMOVE) and returns its raw bytes.
	// It blocks at most about a second; it returns (nil, nil) when no command
	// arrived in that time so the caller can re-check for shutdown.
	ClaimNext(ctx context.Context) ([]byte, error)

	// Begin records a valid command as in progress: it creates the call's
	// status hash and pushes our ACK, in one atomic step, unless the id was
	// already seen for this cell, in which case it changes nothing and
	// returns duplicate=true.
	Begin(ctx context.Context, c *Call) (duplicate bool, err error)

	// MarkDialing records, before the Originate is written, that an
	// originate may be sent (state "originating", attempts, call code,
	// confirmed_at, dialed_at). Crash recovery relies on it: a command whose
	// hash says "originating" is never dialed again.
	MarkDialing(ctx context.Context, c *Call) error

	// MarkAnswered records that the call was answered (state, answered_at,
	// uniqueid, channel).
	MarkAnswered(ctx context.Context, c *Call) error

	// Finish settles a command: in one atomic step it removes raw from the
	// claimed list, pushes the result, updates the call hash (unless
	// r.Status is duplicate or invalid: those never own the hash) with a
	// 24 h expiry, and counts the status. If raw is no longer in the claimed
	// list (someone else already settled it) nothing is pushed and
	// settled=false is returned: that is what makes retries after a lost
	// reply safe.
	Finish(ctx context.Context, raw []byte, r *Result) (settled bool, err error)

	// Bury settles a command that could not be parsed: raw (truncated) and
	// the error go to the dead list, raw leaves the claimed list, and when
	// r is not nil (the command had a usable id) r is pushed as its result.
	// Same atomicity and idempotency as Finish.
	Bury(ctx context.Context, raw []byte, cause error, r *Result) (settled bool, err error)

	// Count adds n to a counter of the cell's stats hash (retries,
	// confirm_unknown, …). Best effort: counters are for humans.
	Count(ctx context.Context, field string, n int64) error
}

// BatchClaimer is implemented by stores that can claim several commands in
// one round trip. After a blocking ClaimNext returns one command, the cell
// takes as many more as it has free slots, so a backlog drains at the cost
// of one round trip per batch instead of one per command.
type BatchClaimer interface {
	// ClaimMore moves up to n more commands from dial to our claimed list
	// without blocking. Commands it returns are claimed even if it also
	// returns an error.
	ClaimMore(ctx context.Context, n int) ([][]byte, error)
}

// Confirmation is Multcall's answer to our ACK.
type Confirmation struct {
	ID       string
	CallCode string
	At       time.Time
}

// Confirmations hands each confirmation read from the cell's confirm list to
// the call waiting for it. One reader per cell feeds all waiters, so a cell
// with thousands of calls waiting needs no connection per call.
type Confirmations interface {
	// Expect registers interest in the confirmation for id. It must be
	// called before the ACK is pushed. The channel receives at most one
	// value; cancel must be called when the caller stops waiting.
	Expect(id string) (ch <-chan Confirmation, cancel func())
}

// Dialer is the Asterisk side: it originates calls and reports their events.
type Dialer interface {
	// WaitReady blocks until AMI is connected and logged in, or ctx ends.
	WaitReady(ctx context.Context) error

	// Ready reports, without blocking, whether AMI is usable now.
	Ready() bool

	// Originate sends one Originate action (Async) and waits at most the
	// configured command-response timeout for Asterisk's Response.
	//
	// On Response: Success it returns a Watch that already receives every
	// event of the call (routing is in place before the action is written,
	// because events and the Response are not ordered). Errors:
	//   - ErrNotWritten: the action certainly did not reach Asterisk (AMI
	//     down); safe to try again.
	//   - *RefusedError: Asterisk answered Response: Error; safe to try again.
	//   - ErrInvalidRequest: refused before sending; nothing was dialed.
	//   - ErrNoResponse (or any other error): the action may have been
	//     written and a call may exist; never resend.
	Originate(ctx context.Context, req OriginateRequest) (Watch, error)
}

// ChannelChecker is implemented by dialers that can tell whether a channel
// still exists (AMI's read-only Status action). After an AMI outage it
// settles answered calls whose Hangup event was lost while AMI was down.
type ChannelChecker interface {
	ChannelAlive(ctx context.Context, channel string) (bool, error)
}

// ChannelLister is implemented by dialers that can list the channels the PBX
// has now (AMI CoreShowChannels) and follow a call another process
// originated. Crash recovery uses it to adopt a dead daemon's live calls
// instead of reporting them unknown (contract section 2, "Promises").
type ChannelLister interface {
	// WatchCall routes to a new Watch the events of a call originated
	// earlier, maybe by another process: the OriginateResponse of actionID
	// and the channel events of channelID and "<channelID>;2". Register it
	// before listing, so that no event falls between the list and the
	// watch. When the event connection is down the Watch starts with
	// EventLost (EventRestored follows when it is back).
	WatchCall(actionID, channelID string) (Watch, error)
	// Channels lists every channel that exists on the PBX now.
	Channels(ctx context.Context) ([]LiveChannel, error)
}

// LiveChannel is one channel as CoreShowChannels lists it.
type LiveChannel struct {
	Channel  string
	Uniqueid string
	Linkedid string
	State    int           // ChannelState: 6 is Up (answered)
	Duration time.Duration // since the channel was created, whole seconds (Asterisk's resolution)
}

// ChannelStateUp is Asterisk's AST_STATE_UP.
const ChannelStateUp = 6

// OriginateRequest is one Originate action, already validated and rendered.
type OriginateRequest struct {
	ActionID  string // unique per attempt
	ChannelID string // becomes the Uniqueid of our channel (";2" is appended by Asterisk for the other half of a Local channel)
	Channel   string // from the channel template
	Context   string
	Exten     string
	Priority  int
	Timeout   time.Duration // ring time before no answer
	CallerID  string
	// Variables in the order they are sent; joined as k=v with commas into
	// one Variable header.
	Variables []Variable
}

// Variable is one channel variable set on the originated channel.
type Variable struct{ Name, Value string }

// Watch delivers the events of one originated call.
type Watch interface {
	// C is signalled (never closed) when new events are ready to Drain.
	C() <-chan struct{}
	// Drain returns the events received since the last Drain, in arrival order.
	Drain() []Event
	// Notify calls f once, never on the caller's goroutine, when Drain has
	// events: at once if it has some already. f must not block (it may run
	// on the goroutine reading AMI). A call waiting only for its hangup
	// parks on it instead of holding a goroutine. stop cancels the call of
	// f if it has not happened; a later Notify replaces an earlier one.
	Notify(f func()) (stop func())
	// Close stops routing events for this call.
	Close()
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventOriginateResponse is Asterisk's OriginateResponse for our ActionID.
	EventOriginateResponse EventKind = iota + 1
	// EventNewchannel reports that a leg of our call exists.
	EventNewchannel
	// EventUp reports that a leg of our call was answered (Newstate 6 Up).
	EventUp
	// EventHangup reports that a leg of our call is gone.
	EventHangup
	// EventLost reports that the AMI connection carrying our events dropped:
	// events may have been missed.
	EventLost
	// EventRestored reports that AMI is connected again after EventLost.
	EventRestored
	// EventRinging reports that a leg of our call rings (Newstate 5
	// Ringing): the carrier reached a phone (the trunk breaker's "rang").
	EventRinging
)

func (k EventKind) String() string {
	switch k {
	case EventOriginateResponse:
		return "OriginateResponse"
	case EventNewchannel:
		return "Newchannel"
	case EventUp:
		return "Up"
	case EventHangup:
		return "Hangup"
	case EventLost:
		return "Lost"
	case EventRestored:
		return "Restored"
	case EventRinging:
		return "Ringing"
	}
	return "Unknown"
}

// Event is one AMI event routed to a call.
type Event struct {
	Kind EventKind
	At   time.Time // when it was read from the socket

	// OriginateResponse
	Response string // "Success" or "Failure"
	Reason   int

	// Channel events: Channel name and Uniqueid as Asterisk sent them;
	// Leg is 1 for our ChannelId, 2 for "<ChannelId>;2" (other half of a
	// Local channel).
	Channel  string
	Uniqueid string
	Leg      int

	// Hangup
	Cause     int
	CauseText string
}

// ErrNotWritten means the Originate certainly did not reach Asterisk.
var ErrNotWritten = errors.New("AMI unavailable: action not written")

// ErrNoResponse means Asterisk did not answer the action in time: the call
// may or may not exist.
var ErrNoResponse = errors.New("no response from Asterisk within the command-response timeout")

// ErrInvalidRequest means the Originate was refused before anything was
// sent (a value that would break the AMI message): the call fails, nothing
// was dialed.
var ErrInvalidRequest = errors.New("invalid originate request")

// ErrNotDurable means the replicas did not acknowledge a step within
// redis.wait_replicas/wait_timeout (contract section 2, Durability): from
// MarkDialing, the call must not be dialed yet. The step itself ran on the
// master; trying it again is safe.
var ErrNotDurable = errors.New("no replica acknowledged the dialing decision")

// RefusedError is Asterisk's Response: Error to an Originate.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return "originate refused by Asterisk: " + e.Message }

// Observer hears about the cell's work, for metrics. Every method must be
// cheap and never block: it is called on the call path.
type Observer interface {
	// Claimed: a command was taken from the dial list.
	Claimed()
	// Originated: an Originate was accepted by Asterisk, sinceClaim after
	// the command was claimed.
	Originated(sinceClaim time.Duration)
	// Retried: another attempt follows a refused Originate.
	Retried()
	// Finished: a result was pushed. sinceOriginate is zero when the call
	// was never originated.
	Finished(status Status, sinceOriginate time.Duration)
}

type nopObserver struct{}

func (nopObserver) Claimed()                       {}
func (nopObserver) Originated(time.Duration)       {}
func (nopObserver) Retried()                       {}
func (nopObserver) Finished(Status, time.Duration) {}
