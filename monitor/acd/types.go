package acd

import (
	"errors"
	"fmt"
	"strings"
)

// Tier orders operators for delivery: operators first, then supervisors,
// then directors.
type Tier uint8

// Tiers in delivery order.
const (
	TierOperator Tier = iota
	TierSupervisor
	TierDirector
)

var tierNames = [...]string{"operator", "supervisor", "director"}

func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return fmt.Sprintf("tier(%d)", uint8(t))
}

// ParseTier parses "operator", "supervisor" or "director"; "" is operator.
func ParseTier(s string) (Tier, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "operator":
		return TierOperator, nil
	case "supervisor":
		return TierSupervisor, nil
	case "director":
		return TierDirector, nil
	}
	return 0, fmt.Errorf("unknown tier %q: use operator, supervisor or director", s)
}

// MarshalText writes the tier's name.
func (t Tier) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses a tier's name.
func (t *Tier) UnmarshalText(b []byte) error {
	v, err := ParseTier(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Operator is one configured operator.
type Operator struct {
	ID   string
	Tier Tier
}

// OperatorState is what an operator is doing.
type OperatorState uint8

// Operator states.
const (
	Available OperatorState = iota
	Ringing
	Busy
	LoggedOut
)

var opStateNames = [...]string{"available", "ringing", "busy", "logged_out"}

func (s OperatorState) String() string {
	if int(s) < len(opStateNames) {
		return opStateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText writes the state's name.
func (s OperatorState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name.
func (s *OperatorState) UnmarshalText(b []byte) error {
	for i, n := range opStateNames {
		if n == string(b) {
			*s = OperatorState(i)
			return nil
		}
	}
	return fmt.Errorf("unknown operator state %q", b)
}

// CallState is where a call in progress is.
type CallState uint8

// Call states. Ended only appears in [Changes]: the call is gone.
const (
	Waiting CallState = iota
	CallRinging
	Answered
	Ended
)

var callStateNames = [...]string{"waiting", "ringing", "answered", "ended"}

func (s CallState) String() string {
	if int(s) < len(callStateNames) {
		return callStateNames[s]
	}
	return fmt.Sprintf("callstate(%d)", uint8(s))
}

// MarshalText writes the state's name.
func (s CallState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name.
func (s *CallState) UnmarshalText(b []byte) error {
	for i, n := range callStateNames {
		if n == string(b) {
			*s = CallState(i)
			return nil
		}
	}
	return fmt.Errorf("unknown call state %q", b)
}

// Kind is the kind of a [Message].
type Kind uint8

// Message kinds, in the contract's order, then the login/logout ones.
const (
	MsgReceived Kind = iota
	MsgRinging
	MsgAnswered
	MsgRejected
	MsgFinished
	MsgWaiting
	MsgMissed
	MsgIgnored
	MsgLoggedIn
	MsgLoggedOut
	MsgLogoutPending
)

var kindNames = [...]string{"received", "ringing", "answered", "rejected", "finished", "waiting", "missed", "ignored", "logged_in", "logged_out", "logout_pending"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one line the queue manager prints.
type Message struct {
	Kind     Kind
	Call     string // empty for MsgLoggedIn, MsgLoggedOut
	Operator string // empty for MsgReceived, MsgWaiting, MsgMissed
}

// String is the message's text, exactly as contract section 5 writes it.
func (m Message) String() string {
	switch m.Kind {
	case MsgReceived:
		return "Call " + m.Call + " received"
	case MsgRinging:
		return "Call " + m.Call + " ringing for operator " + m.Operator
	case MsgAnswered:
		return "Call " + m.Call + " answered by operator " + m.Operator
	case MsgRejected:
		return "Call " + m.Call + " rejected by operator " + m.Operator
	case MsgFinished:
		return "Call " + m.Call + " finished and operator " + m.Operator + " available"
	case MsgWaiting:
		return "Call " + m.Call + " waiting in queue"
	case MsgMissed:
		return "Call " + m.Call + " missed"
	case MsgIgnored:
		return "Call " + m.Call + " ignored by operator " + m.Operator
	case MsgLoggedIn:
		return "Operator " + m.Operator + " logged in"
	case MsgLoggedOut:
		return "Operator " + m.Operator + " logged out"
	case MsgLogoutPending:
		return "Operator " + m.Operator + " will log out after call " + m.Call
	}
	return fmt.Sprintf("message %d call %q operator %q", m.Kind, m.Call, m.Operator)
}

// Verb is a command of the queue manager.
type Verb uint8

// Commands. Status is a query: it changes nothing.
const (
	Call Verb = iota
	Answer
	Reject
	Hangup
	Login
	Logout
	Status
)

var verbNames = [...]string{"call", "answer", "reject", "hangup", "login", "logout", "status"}

func (v Verb) String() string {
	if int(v) < len(verbNames) {
		return verbNames[v]
	}
	return fmt.Sprintf("verb(%d)", uint8(v))
}

// Command is one command: a verb and the id of a call or an operator.
type Command struct {
	Verb Verb
	ID   string
}

func (c Command) String() string {
	if c.ID == "" {
		return c.Verb.String()
	}
	return c.Verb.String() + " " + c.ID
}

// Errors, for errors.Is. Every error a command gets wraps one of them.
var (
	ErrSyntax          = errors.New("malformed command")
	ErrUnknownCall     = errors.New("unknown call")
	ErrUnknownOperator = errors.New("unknown operator")
	ErrInProgress      = errors.New("call already in progress")
	ErrNotRinging      = errors.New("operator not ringing")
	ErrLogin           = errors.New("login or logout makes no sense now")
)

// cmdError is an error with its own text that wraps a sentinel.
type cmdError struct {
	msg  string
	kind error
}

func (e *cmdError) Error() string { return e.msg }
func (e *cmdError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &cmdError{msg: fmt.Sprintf(format, args...), kind: kind}
}

const idRule = "use 1-64 characters of A-Z a-z 0-9 . _ : -"

// ValidID reports whether s is a valid call or operator id: 1-64
// characters of A-Z a-z 0-9 . _ : -.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' || b == '_' || b == ':' || b == '-') {
			return false
		}
	}
	return true
}

// short cuts s for an error message.
func short(s string) string {
	if len(s) > 80 {
		return s[:64] + "…"
	}
	return s
}

const commandList = "call, answer, reject, hangup, login, logout, status"

// ParseCommand makes a command from a verb (case-insensitive) and its
// argument, as typed ("call", "7") or sent over TCP. The argument is
// checked: an id for call/hangup, an operator for answer/reject/login/
// logout, optional for status.
func ParseCommand(verb, arg string) (Command, error) {
	v := strings.ToLower(verb)
	var c Command
	found := false
	for i, n := range verbNames {
		if n == v {
			c.Verb, found = Verb(i), true
			break
		}
	}
	if !found {
		return Command{}, errorf(ErrSyntax, "unknown command %q (commands: %s)", short(verb), commandList)
	}
	c.ID = arg
	switch c.Verb {
	case Call, Hangup:
		if arg == "" {
			return Command{}, errorf(ErrSyntax, "%s needs an id: %s <id>", v, v)
		}
		if !ValidID(arg) {
			return Command{}, errorf(ErrSyntax, "invalid call id %q: %s", short(arg), idRule)
		}
	case Answer, Reject, Login, Logout:
		if arg == "" {
			return Command{}, errorf(ErrSyntax, "%s needs an operator: %s <operator>", v, v)
		}
		if !ValidID(arg) {
			return Command{}, errorf(ErrSyntax, "invalid operator id %q: %s", short(arg), idRule)
		}
	case Status:
		if arg != "" && !ValidID(arg) {
			return Command{}, errorf(ErrSyntax, "invalid call id %q: %s", short(arg), idRule)
		}
	}
	return c, nil
}
