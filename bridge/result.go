package bridge

import (
	"encoding/json"
	"time"
)

// Status is the final outcome of one dial command (contract section 2).
type Status string

const (
	StatusAnswered      Status = "answered"
	StatusBusy          Status = "busy"
	StatusNoAnswer      Status = "no_answer"
	StatusCongestion    Status = "congestion"
	StatusRejected      Status = "rejected"
	StatusInvalidNumber Status = "invalid_number"
	StatusFailed        Status = "failed"
	StatusAckTimeout    Status = "ack_timeout"
	StatusInvalid       Status = "invalid"
	StatusDuplicate     Status = "duplicate"
	StatusUnknown       Status = "unknown"
)

// AllStatuses lists every status, in the order the monitor shows them.
var AllStatuses = []Status{
	StatusAnswered, StatusBusy, StatusNoAnswer, StatusCongestion, StatusRejected,
	StatusInvalidNumber, StatusFailed, StatusAckTimeout, StatusInvalid,
	StatusDuplicate, StatusUnknown,
}

// OwnsHash reports whether a result with this status belongs to the call's
// status hash. A duplicate's hash is the original call's and an invalid
// command never got one, so neither may write to it.
func (s Status) OwnsHash() bool { return s != StatusDuplicate && s != StatusInvalid }

// Result is the one final message per command pushed to the results list.
// Field names and shapes are the wire contract.
type Result struct {
	ID          string `json:"id"`
	CallCode    string `json:"call_code"`
	Cell        string `json:"cell"`
	Status      Status `json:"status"`
	Reason      int    `json:"reason"`
	Cause       int    `json:"cause"`
	CauseText   string `json:"cause_txt"`
	Uniqueid    string `json:"uniqueid"`
	Channel     string `json:"channel"`
	Attempts    int    `json:"attempts"`
	Error       string `json:"error"`
	ReceivedAt  string `json:"received_at"`
	ConfirmedAt string `json:"confirmed_at"`
	DialedAt    string `json:"dialed_at"`
	AnsweredAt  string `json:"answered_at"`
	EndedAt     string `json:"ended_at"`
	TalkMS      int64  `json:"talk_ms"`
	Instance    string `json:"instance"`
	// Adopted: the daemon that dialed the call died, and this one (Instance)
	// followed the live call to its end (contract section 2, "Promises").
	Adopted bool `json:"adopted,omitempty"`
	// *OperatorFields is set when the call queue manager is in use
	// (contract section 2): its four fields are then always present; nil
	// leaves them out of the JSON.
	*OperatorFields
}

// OperatorFields are what the call queue manager saw of an answered call
// (contract section 2). The store fills them when the result is settled,
// from the call hash, on Redis's clock.
type OperatorFields struct {
	Operator    string `json:"operator"`     // who answered it; "" when no operator did
	ConnectedAt string `json:"connected_at"` // when that operator answered; "" when none did
	WaitMS      int64  `json:"wait_ms"`      // answered_at → connected_at, or → ended_at with no operator
	Abandoned   bool   `json:"abandoned"`    // no operator within pacing.abandon_after while the customer was on the line
}

// JSON encodes the result for the wire.
func (r *Result) JSON() []byte {
	b, _ := json.Marshal(r) // a struct of strings and ints cannot fail
	return b
}

// TimeFormat is RFC 3339 with milliseconds, in UTC, as the contract asks.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime renders t for the wire; the zero time is the empty string.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}
