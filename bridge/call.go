package bridge

import "time"

// State is where a call is in its lifecycle; it is what the call's status
// hash shows in its "state" field.
type State string

const (
	StateAcked       State = "acked"       // ACK pushed, waiting for Multcall's confirmation
	StateOriginating State = "originating" // confirmed; an Originate may have been written
	StateAnswered    State = "answered"    // answered, waiting for the hangup
	StateDone        State = "done"        // result pushed
)

// Call is one dial command in progress.
type Call struct {
	Cmd      *Command
	Raw      []byte // exactly as claimed: the claimed list entry to remove when settling
	Cell     string
	Instance string
	// Token is unique per claim. Begin stores it in the status hash so that
	// a retried Begin (after a lost reply) recognises its own work instead
	// of calling it a duplicate.
	Token string

	CallCode    string
	State       State
	Attempts    int
	ChannelID   string // our ChannelId: the Uniqueid of our channel
	Channel     string // the real channel name, once Asterisk reports it
	ReceivedAt  time.Time
	ConfirmedAt time.Time
	DialedAt    time.Time
	// OriginatedAt is when Asterisk accepted the last Originate (metrics).
	OriginatedAt time.Time
	AnsweredAt   time.Time
	EndedAt      time.Time
	// Adopted: a live call of a dead daemon, followed to its end by this
	// one (crash recovery); its result says "adopted": true.
	Adopted bool
}

// Ack is the message pushed to the ack list.
type Ack struct {
	ID         string `json:"id"`
	Cell       string `json:"cell"`
	Instance   string `json:"instance"`
	ReceivedAt string `json:"received_at"`
}

// Ack builds the ACK for this call.
func (c *Call) Ack() Ack {
	return Ack{ID: c.Cmd.ID, Cell: c.Cell, Instance: c.Instance, ReceivedAt: FormatTime(c.ReceivedAt)}
}

// Result builds a result with the call's identity and times filled in; the
// caller sets status, reason, cause and error.
func (c *Call) Result(status Status) *Result {
	r := &Result{
		Cell:        c.Cell,
		Status:      status,
		CallCode:    c.CallCode,
		Uniqueid:    "",
		Channel:     c.Channel,
		Attempts:    c.Attempts,
		ReceivedAt:  FormatTime(c.ReceivedAt),
		ConfirmedAt: FormatTime(c.ConfirmedAt),
		DialedAt:    FormatTime(c.DialedAt),
		AnsweredAt:  FormatTime(c.AnsweredAt),
		EndedAt:     FormatTime(c.EndedAt),
		Instance:    c.Instance,
		Adopted:     c.Adopted,
	}
	if c.Cmd != nil {
		r.ID = c.Cmd.ID
	}
	if c.Attempts > 0 {
		r.Uniqueid = c.ChannelID
	}
	r.TalkMS = talkMS(c.AnsweredAt, c.EndedAt)
	return r
}

// talkMS is the talk time in milliseconds, never negative (contract section
// 2). It is a monotonic difference when both times carry this process's
// monotonic reading, as the tracker's do (see onMonotonic). A time parsed
// from text has only the wall clock, which an NTP step or another host's
// clock (answered_at from a call hash after recovery, a PBX's answer time)
// can put after the end: then the talk time is 0, not negative.
func talkMS(answered, ended time.Time) int64 {
	if answered.IsZero() || ended.IsZero() {
		return 0
	}
	return max(0, ended.Sub(answered).Milliseconds())
}

// onMonotonic re-expresses t, a wall-clock time that was parsed from text and
// so has no monotonic reading, on now's monotonic clock: now less t's age by
// the wall clock. The wall time shown stays t's, and a later difference with
// another time of this process no longer depends on the wall clock. A t after
// now (a clock ahead of ours) is taken as now.
func onMonotonic(t, now time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return now.Add(-max(0, now.Round(0).Sub(t)))
}
