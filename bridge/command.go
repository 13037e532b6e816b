package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of a dial command (contract section 2).
const (
	MaxCommandBytes = 16 << 10 // a longer command is invalid
	// MaxItemBytes is the size past which a dial list item is not parsed
	// at all (it goes to dead cut short, without an id). Between the two,
	// the item is read only to find an id for its invalid result.
	MaxItemBytes      = 64 << 10
	MaxIDLen          = 64
	MaxCallCodeLen    = 64 // the confirmation's call_code
	MaxNumberLen      = 32
	MaxCallerIDLen    = 128 // bytes
	MinTimeoutS       = 1
	MaxTimeoutS       = 300
	MaxVariables      = 32
	MaxVarNameLen     = 64
	MaxVarValueLen    = 256 // characters
	MaxVariablesBytes = 800 // k=v joined by commas, must stay under this
	ReservedVarPrefix = "DIALBRIDGE_"
)

// Command is a validated dial command.
type Command struct {
	ID        string
	Number    string
	CallerID  string
	TimeoutS  int        // 0 when the command did not set one
	Variables []Variable // sorted by name, so the wire text is deterministic
}

// Timeout is the ring time for this command, or def when it set none.
func (c *Command) Timeout(def time.Duration) time.Duration {
	if c.TimeoutS > 0 {
		return time.Duration(c.TimeoutS) * time.Second
	}
	return def
}

// InvalidError says why a command was refused. ID is set when the command
// carried a usable id, so an invalid result can be sent for it.
type InvalidError struct {
	ID     string
	Reason string
}

func (e *InvalidError) Error() string { return "invalid dial command: " + e.Reason }

// ParseCommand decodes and validates one dial command. Every rule of the
// contract is checked here, so nothing that reaches AMI can carry a line
// break, a character Asterisk's argument parser interprets, or a name that
// shadows ours. Unknown fields are ignored (Multcall may add some), but the
// known ones must be exactly right and spelt exactly.
func ParseCommand(raw []byte) (*Command, error) {
	if len(raw) > MaxItemBytes {
		return nil, &InvalidError{Reason: tooBig(len(raw))}
	}
	if !utf8.Valid(raw) {
		return nil, &InvalidError{Reason: "command is not valid UTF-8"}
	}
	// JSON's own whitespace only: bytes.TrimSpace would also drop U+0085
	// and U+00A0, which no JSON reader accepts there.
	trimmed := bytes.Trim(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &InvalidError{Reason: "command is not a JSON object"}
	}
	doc, err := readDocument(trimmed)
	if err != nil {
		return nil, &InvalidError{Reason: "malformed JSON: " + cleanJSONError(err)}
	}
	// From here on errors carry the id when it is usable.
	id := doc.usableID()
	bad := func(err error) (*Command, error) { return nil, &InvalidError{ID: id, Reason: err.Error()} }
	if len(raw) > MaxCommandBytes {
		return bad(errors.New(tooBig(len(raw))))
	}
	if doc.problem != "" {
		return bad(errors.New(doc.problem))
	}

	c := &Command{}
	if c.ID, err = stringField(doc.field("id"), "id", true); err != nil {
		return bad(err)
	}
	if err := checkID(c.ID); err != nil {
		return bad(err)
	}
	if c.Number, err = stringField(doc.field("number"), "number", true); err != nil {
		return bad(err)
	}
	if err := checkNumber(c.Number); err != nil {
		return bad(err)
	}
	if c.CallerID, err = stringField(doc.field("caller_id"), "caller_id", false); err != nil {
		return bad(err)
	}
	if err := checkText("caller_id", c.CallerID, MaxCallerIDLen); err != nil {
		return bad(err)
	}
	if c.TimeoutS, err = timeoutField(doc.field("timeout_s")); err != nil {
		return bad(err)
	}
	if c.Variables, err = variablesField(doc.field("variables")); err != nil {
		return bad(err)
	}
	return c, nil
}

func tooBig(n int) string {
	return fmt.Sprintf("command is %d bytes, more than the %d allowed", n, MaxCommandBytes)
}

// IDOf digs a usable id out of a command that failed validation, or "".
func IDOf(err error) string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.ID
	}
	return ""
}

func stringField(v jvalue, name string, required bool) (string, error) {
	if v.absent() {
		if required {
			return "", fmt.Errorf("%s is required", name)
		}
		return "", nil
	}
	if v.kind != '"' {
		return "", fmt.Errorf("%s must be a string, got %s", name, v.kindName())
	}
	return v.text, nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("id must be 1-%d characters, got %d", MaxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(isAlnum(b) || b == '.' || b == '_' || b == ':' || b == '-') {
			return fmt.Errorf("id may only contain A-Z a-z 0-9 . _ : -, found %s at position %d", describeByte(id, i), i)
		}
	}
	return nil
}

func checkNumber(n string) error {
	// Characters first: an injection attempt should be named as such, not
	// as a length problem.
	for i := 0; i < len(n); i++ {
		b := n[i]
		if !((b >= '0' && b <= '9') || b == '+' || b == '*' || b == '#') {
			return fmt.Errorf("number may only contain 0-9 + * #, found %s at position %d", describeByte(n, i), i)
		}
	}
	if n == "" || len(n) > MaxNumberLen {
		return fmt.Errorf("number must be 1-%d characters, got %d", MaxNumberLen, len(n))
	}
	return nil
}

// checkText refuses control and format characters (a CR or LF would inject
// AMI headers; a bidi override or a zero-width character makes a log or a
// screen show something else than what is dialed) and over-long values.
func checkText(name, s string, maxBytes int) error {
	if len(s) > maxBytes {
		return fmt.Errorf("%s is %d bytes, at most %d allowed", name, len(s), maxBytes)
	}
	return checkRunes(name, s)
}

func checkRunes(name, s string) error {
	if r, i := firstForbiddenRune(s); i >= 0 {
		return fmt.Errorf("%s contains a control character (%s) at byte %d", name, runeName(r), i)
	}
	return nil
}

func timeoutField(v jvalue) (int, error) {
	if v.absent() {
		return 0, nil
	}
	if v.kind != '0' {
		return 0, fmt.Errorf("timeout_s must be a whole number of seconds, got %s", v.kindName())
	}
	lit := truncate(v.text, 40) // a number's literal: digits, sign, point, exponent
	f, err := strconv.ParseFloat(v.text, 64)
	switch {
	case err == nil && f != math.Trunc(f):
		return 0, fmt.Errorf("timeout_s must be a whole number of seconds, got %s", lit)
	case err != nil || f < MinTimeoutS || f > MaxTimeoutS:
		return 0, fmt.Errorf("timeout_s must be %d-%d, got %s", MinTimeoutS, MaxTimeoutS, lit)
	}
	return int(f), nil
}

func isAlnum(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}

// describeByte names the offending character without echoing control bytes
// into logs.
func describeByte(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError || isForbiddenRune(r) || !unicode.IsPrint(r) {
		return fmt.Sprintf("%U", r)
	}
	return fmt.Sprintf("%q", r)
}

// isForbiddenRune: Unicode Cc (C0, DEL, C1) and Cf (bidi overrides and
// isolates, zero-width characters, BOM, soft hyphen, …), which no field may
// carry (contract section 2), and the line and paragraph separators, which
// some readers take for a line break.
func isForbiddenRune(r rune) bool {
	if r >= 0x20 && r < 0x7f {
		return false
	}
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// firstForbiddenRune returns the first forbidden rune of s and its byte
// offset, or -1.
func firstForbiddenRune(s string) (rune, int) {
	for i, r := range s {
		if isForbiddenRune(r) {
			return r, i
		}
	}
	return 0, -1
}

// runeName names a rune with its Unicode category, for errors.
func runeName(r rune) string {
	switch {
	case unicode.Is(unicode.Cc, r):
		return fmt.Sprintf("%U, category Cc", r)
	case unicode.Is(unicode.Cf, r):
		return fmt.Sprintf("%U, category Cf", r)
	}
	return fmt.Sprintf("%U", r)
}

// quoteKey shows a key from the input in an error: ASCII only, every
// control or format character escaped, bounded.
func quoteKey(s string) string {
	return strconv.QuoteToASCII(truncate(s, 40))
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// cleanJSONError keeps encoding/json's message but never an unbounded echo
// of the input.
func cleanJSONError(err error) string {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON input"
	}
	return truncate(strings.TrimPrefix(err.Error(), "json: "), 200)
}
