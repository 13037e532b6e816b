package amisim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Outcome is what the simulated PBX does with one Originate.
type Outcome string

// The outcomes. See the package documentation for the exact AMI traffic of each.
const (
	OutcomeAnswer       Outcome = "answer"       // Reason 4; Hangup 16/16 after TalkFor
	OutcomeBusy         Outcome = "busy"         // Reason 5; Hangup 0 (;1) / 17 (;2)
	OutcomeCongestion   Outcome = "congestion"   // Reason 8; Hangup 0 (;1) / 34 (;2)
	OutcomeNoAnswer     Outcome = "noanswer"     // Reason 3 after the Originate's Timeout; Hangup 19/19
	OutcomeHangup       Outcome = "hangup"       // Reason 0; Hangup Cause/Cause on both legs
	OutcomeFailed       Outcome = "failed"       // Reason 0; no channel events at all
	OutcomeDoesNotExist Outcome = "doesnotexist" // Reason 0; both legs created and hung up at once, cause 0
	OutcomeRefuse       Outcome = "refuse"       // Response: Error, no call
	OutcomeNoResponse   Outcome = "noresponse"   // the action is never answered
	OutcomeDrop         Outcome = "drop"         // the TCP connection is closed on receipt
)

// Outcomes lists every valid Outcome.
var Outcomes = []Outcome{
	OutcomeAnswer, OutcomeBusy, OutcomeCongestion, OutcomeNoAnswer, OutcomeHangup,
	OutcomeFailed, OutcomeDoesNotExist, OutcomeRefuse, OutcomeNoResponse, OutcomeDrop,
}

var outcomeAliases = map[string]Outcome{
	"answer": OutcomeAnswer, "answered": OutcomeAnswer,
	"busy":       OutcomeBusy,
	"congestion": OutcomeCongestion, "congest": OutcomeCongestion,
	"noanswer": OutcomeNoAnswer, "no_answer": OutcomeNoAnswer, "no-answer": OutcomeNoAnswer,
	"hangup": OutcomeHangup,
	"failed": OutcomeFailed, "fail": OutcomeFailed,
	"doesnotexist": OutcomeDoesNotExist, "nosuchexten": OutcomeDoesNotExist,
	"refuse": OutcomeRefuse, "refused": OutcomeRefuse,
	"noresponse": OutcomeNoResponse, "no_response": OutcomeNoResponse, "no-response": OutcomeNoResponse,
	"drop": OutcomeDrop,
}

// Valid reports whether o is one of the defined outcomes.
func (o Outcome) Valid() bool {
	for _, v := range Outcomes {
		if o == v {
			return true
		}
	}
	return false
}

// Rule maps the dialled number of an Originate to an outcome.
type Rule struct {
	// Match: the number is the part of the Originate Channel between the "/"
	// and the first "@" (e.g. "PJSIP/5511999@trunk" → "5511999"); Prefix and
	// Suffix match on it ("" matches everything). The first matching rule
	// wins; no match → answer (no ring, no talk).
	Prefix, Suffix string
	Outcome        Outcome
	// RingFor is the time before the outcome (answer/busy/congestion/hangup).
	// noanswer always waits the Originate's Timeout; a RingFor at least as
	// long as the Timeout turns any ringing outcome into noanswer, as in
	// Asterisk.
	RingFor time.Duration
	// TalkFor is, for answered calls, the time from answer to hangup.
	// Zero hangs up right after the answer; a negative value never hangs up
	// (until an AMI Hangup action or Close).
	TalkFor time.Duration
	// Cause is the Hangup cause of a "hangup" outcome (e.g. 17, 21, 1);
	// 0 means 16. Cause-txt comes from the Q.850 table of Asterisk.
	Cause int
	// ResponseDelay delays the Response (slow response), for any outcome. The
	// session processes nothing else meanwhile, like Asterisk's session thread.
	ResponseDelay time.Duration
	// Message is, for "refuse", the Message of the Response: Error
	// (default "Originate failed").
	Message string
	// PlayCall is, for "noresponse"/"drop", whether the call is played anyway
	// (the originate did start), as an answered call with RingFor/TalkFor:
	// its events go to every listening session.
	PlayCall bool
}

func (r Rule) matches(number string) bool {
	return strings.HasPrefix(number, r.Prefix) && strings.HasSuffix(number, r.Suffix)
}

// validate checks one rule.
func (r Rule) validate() error {
	if !r.Outcome.Valid() {
		return fmt.Errorf("unknown outcome %q", string(r.Outcome))
	}
	if r.RingFor < 0 {
		return errors.New("negative ring time")
	}
	if r.ResponseDelay < 0 {
		return errors.New("negative response delay")
	}
	if r.Cause < 0 || r.Cause > 127 {
		return fmt.Errorf("cause %d out of range 0-127", r.Cause)
	}
	if strings.ContainsAny(r.Message, "\r\n") {
		return errors.New("message contains a line break")
	}
	return nil
}

// ValidateRules reports the first invalid rule of a table.
func ValidateRules(rules []Rule) error {
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule %d (%s): %w", i+1, r, err)
		}
	}
	return nil
}

// String formats the rule in the ParseRules syntax.
func (r Rule) String() string {
	var b strings.Builder
	switch {
	case r.Prefix != "" && r.Suffix != "":
		b.WriteString("prefix=" + r.Prefix + ",suffix=" + r.Suffix + ":")
	case r.Prefix != "":
		b.WriteString("prefix=" + r.Prefix + ":")
	case r.Suffix != "":
		b.WriteString("suffix=" + r.Suffix + ":")
	}
	b.WriteString(string(r.Outcome))
	if r.RingFor != 0 {
		b.WriteString(",ring=" + r.RingFor.String())
	}
	if r.TalkFor < 0 {
		b.WriteString(",talk=forever")
	} else if r.TalkFor != 0 {
		b.WriteString(",talk=" + r.TalkFor.String())
	}
	if r.Cause != 0 {
		b.WriteString(",cause=" + strconv.Itoa(r.Cause))
	}
	if r.ResponseDelay != 0 {
		b.WriteString(",delay=" + r.ResponseDelay.String())
	}
	if r.PlayCall {
		b.WriteString(",play")
	}
	if r.Message != "" {
		b.WriteString(",message=" + r.Message)
	}
	return b.String()
}

// FormatRules formats a rule table in the ParseRules syntax.
func FormatRules(rules []Rule) string {
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ";")
}

// ParseRules parses a rule table written as in the package documentation,
// e.g. "suffix=1:busy;suffix=4:hangup,cause=21;answer,talk=2s".
func ParseRules(s string) ([]Rule, error) {
	var rules []Rule
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" || isCarrierPart(part) { // ParseCarriers reads those
			continue
		}
		r, err := parseRule(part)
		if err != nil {
			return nil, fmt.Errorf("rule %d %q: %w", i+1, part, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(s string) (Rule, error) {
	var r Rule
	body := s
	low := strings.ToLower(s)
	if strings.HasPrefix(low, "prefix=") || strings.HasPrefix(low, "suffix=") ||
		strings.HasPrefix(low, "*:") || strings.HasPrefix(low, "any:") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return r, errors.New(`missing ":" between the match and the outcome`)
		}
		match := s[:i]
		body = s[i+1:]
		if match != "*" && !strings.EqualFold(match, "any") {
			for _, m := range strings.Split(match, ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(m), "=")
				if !ok {
					return r, fmt.Errorf("bad match %q (want prefix=DIGITS or suffix=DIGITS)", m)
				}
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "prefix":
					r.Prefix = strings.TrimSpace(v)
				case "suffix":
					r.Suffix = strings.TrimSpace(v)
				default:
					return r, fmt.Errorf("bad match key %q (want prefix or suffix)", k)
				}
			}
		}
	}
	fields := strings.Split(body, ",")
	name := strings.ToLower(strings.TrimSpace(fields[0]))
	if name == "" {
		return r, errors.New("missing outcome")
	}
	o, ok := outcomeAliases[name]
	if !ok {
		return r, fmt.Errorf("unknown outcome %q", name)
	}
	r.Outcome = o
	for idx := 1; idx < len(fields); idx++ {
		k, v, ok := option(fields[idx])
		if !ok {
			continue
		}
		var err error
		switch k {
		case "ring":
			r.RingFor, err = parseDur(v, false)
		case "talk":
			r.TalkFor, err = parseDur(v, true)
		case "delay":
			r.ResponseDelay, err = parseDur(v, false)
		case "cause":
			r.Cause, err = strconv.Atoi(v)
			if err == nil && (r.Cause < 0 || r.Cause > 127) {
				err = errors.New("out of range 0-127")
			}
		case "play":
			r.PlayCall = true
			if v != "" {
				r.PlayCall, err = strconv.ParseBool(v)
			}
		case "message", "msg":
			// The message is the rest of the rule: it may contain commas.
			rest := strings.Join(fields[idx:], ",")
			_, v, _ = strings.Cut(rest, "=")
			r.Message = strings.TrimSpace(v)
			idx = len(fields)
		default:
			return r, fmt.Errorf("unknown option %q (want ring, talk, cause, delay, play, message)", k)
		}
		if err != nil {
			return r, fmt.Errorf("option %s: %w", k, err)
		}
	}
	if err := r.validate(); err != nil {
		return r, err
	}
	return r, nil
}

// option reads one "key=value" option of a rule or carrier entry: the key
// lower-cased, both trimmed; ok is false for an empty field.
func option(f string) (k, v string, ok bool) {
	f = strings.TrimSpace(f)
	if f == "" {
		return "", "", false
	}
	k, v, _ = strings.Cut(f, "=")
	return strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v), true
}

func parseDur(v string, allowForever bool) (time.Duration, error) {
	if allowForever && (strings.EqualFold(v, "forever") || v == "-1") {
		return -1, nil
	}
	if v == "" {
		return 0, errors.New("missing duration")
	}
	if n, err := strconv.Atoi(v); err == nil { // bare number: milliseconds
		if n < 0 {
			return 0, errors.New("negative duration")
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

// DefaultMix is the demo's rule table: the last digit of the number picks
// the outcome. 0-4 answer after 1 s of ringing and talk 3 s, 5 busy, 6 no
// answer (after the Originate's Timeout), 7 congestion, 8 hangup 21 (Call
// Rejected), 9 hangup 1 (Unallocated number).
func DefaultMix() []Rule {
	return []Rule{
		{Suffix: "5", Outcome: OutcomeBusy, RingFor: time.Second},
		{Suffix: "6", Outcome: OutcomeNoAnswer},
		{Suffix: "7", Outcome: OutcomeCongestion, RingFor: 500 * time.Millisecond},
		{Suffix: "8", Outcome: OutcomeHangup, Cause: 21, RingFor: 2 * time.Second},
		{Suffix: "9", Outcome: OutcomeHangup, Cause: 1, RingFor: 200 * time.Millisecond},
		{Outcome: OutcomeAnswer, RingFor: time.Second, TalkFor: 3 * time.Second},
	}
}

// matchRule returns the first rule matching number, or the default answer.
func matchRule(rules []Rule, number string) Rule {
	for _, r := range rules {
		if r.matches(number) {
			return r
		}
	}
	return Rule{Outcome: OutcomeAnswer}
}
