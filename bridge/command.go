package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a dial command (contract section 2).
const (
	MaxCommandBytes   = 64 << 10 // a larger payload is refused before parsing
	MaxIDLen          = 64
	MaxNumberLen      = 32
	MaxCallerIDLen    = 128
	MinTimeoutS       = 1
	MaxTimeoutS       = 300
	MaxVariables      = 32
	MaxVarNameLen     = 64
	MaxVarValueLen    = 256
	MaxVariablesBytes = 900 // k=v joined by commas, must stay under this
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

// wireCommand mirrors the JSON. Fields are json.RawMessage so that a wrong
// type is reported by name instead of by encoding/json's generic message,
// and so that an id can still be recovered when another field is bad.
type wireCommand struct {
	ID        json.RawMessage `json:"id"`
	Number    json.RawMessage `json:"number"`
	CallerID  json.RawMessage `json:"caller_id"`
	TimeoutS  json.RawMessage `json:"timeout_s"`
	Variables json.RawMessage `json:"variables"`
}

// ParseCommand decodes and validates one dial command. Every rule of the
// contract is checked here, so nothing that reaches AMI can carry a line
// break or a value Asterisk would split. Unknown fields are ignored (Multcall
// may add some), but the known ones must be exactly right.
func ParseCommand(raw []byte) (*Command, error) {
	if len(raw) > MaxCommandBytes {
		return nil, &InvalidError{Reason: fmt.Sprintf("command is %d bytes, more than the %d allowed", len(raw), MaxCommandBytes)}
	}
	if !utf8.Valid(raw) {
		return nil, &InvalidError{Reason: "command is not valid UTF-8"}
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &InvalidError{Reason: "command is not a JSON object"}
	}
	var w wireCommand
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&w); err != nil {
		return nil, &InvalidError{Reason: "malformed JSON: " + cleanJSONError(err)}
	}
	if dec.More() {
		return nil, &InvalidError{Reason: "malformed JSON: data after the object"}
	}

	c := &Command{}
	id, err := stringField(w.ID, "id", true)
	if err != nil {
		return nil, &InvalidError{Reason: err.Error()}
	}
	if err := checkID(id); err != nil {
		return nil, &InvalidError{Reason: err.Error()}
	}
	c.ID = id
	// From here on the id is usable: errors carry it.
	bad := func(err error) (*Command, error) { return nil, &InvalidError{ID: id, Reason: err.Error()} }

	if c.Number, err = stringField(w.Number, "number", true); err != nil {
		return bad(err)
	}
	if err := checkNumber(c.Number); err != nil {
		return bad(err)
	}
	if c.CallerID, err = stringField(w.CallerID, "caller_id", false); err != nil {
		return bad(err)
	}
	if err := checkText("caller_id", c.CallerID, MaxCallerIDLen); err != nil {
		return bad(err)
	}
	if c.TimeoutS, err = timeoutField(w.TimeoutS); err != nil {
		return bad(err)
	}
	if c.Variables, err = variablesField(w.Variables); err != nil {
		return bad(err)
	}
	return c, nil
}

// IDOf digs a usable id out of a command that failed validation, or "".
func IDOf(err error) string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.ID
	}
	return ""
}

func isNull(m json.RawMessage) bool { return len(m) == 0 || string(m) == "null" }

func stringField(m json.RawMessage, name string, required bool) (string, error) {
	if isNull(m) {
		if required {
			return "", fmt.Errorf("%s is required", name)
		}
		return "", nil
	}
	if m[0] != '"' {
		return "", fmt.Errorf("%s must be a string, got %s", name, jsonKind(m))
	}
	var s string
	if err := json.Unmarshal(m, &s); err != nil {
		return "", fmt.Errorf("%s: %s", name, cleanJSONError(err))
	}
	return s, nil
}

func jsonKind(m json.RawMessage) string {
	switch m[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	default:
		return "a number"
	}
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

// checkText refuses control characters (CR and LF would inject AMI headers)
// and over-long values.
func checkText(name, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, at most %d allowed", name, len(s), max)
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s contains a control character (%U) at byte %d", name, r, i)
		}
	}
	return nil
}

func timeoutField(m json.RawMessage) (int, error) {
	if isNull(m) {
		return 0, nil
	}
	if m[0] == '"' || m[0] == '{' || m[0] == '[' || m[0] == 't' || m[0] == 'f' {
		return 0, fmt.Errorf("timeout_s must be a whole number of seconds, got %s", jsonKind(m))
	}
	var f float64
	if err := json.Unmarshal(m, &f); err != nil {
		return 0, fmt.Errorf("timeout_s: %s", cleanJSONError(err))
	}
	if f != float64(int64(f)) {
		return 0, fmt.Errorf("timeout_s must be a whole number of seconds, got %s", string(m))
	}
	if f < MinTimeoutS || f > MaxTimeoutS {
		return 0, fmt.Errorf("timeout_s must be %d-%d, got %s", MinTimeoutS, MaxTimeoutS, string(m))
	}
	return int(f), nil
}

func variablesField(m json.RawMessage) ([]Variable, error) {
	if isNull(m) {
		return nil, nil
	}
	if m[0] != '{' {
		return nil, fmt.Errorf("variables must be an object of strings, got %s", jsonKind(m))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(m, &raw); err != nil {
		return nil, fmt.Errorf("variables: %s", cleanJSONError(err))
	}
	if len(raw) > MaxVariables {
		return nil, fmt.Errorf("variables has %d entries, at most %d allowed", len(raw), MaxVariables)
	}
	vars := make([]Variable, 0, len(raw))
	size := 0
	for k, vm := range raw {
		if k == "" || len(k) > MaxVarNameLen {
			return nil, fmt.Errorf("variable name must be 1-%d characters", MaxVarNameLen)
		}
		for i := 0; i < len(k); i++ {
			if !(isAlnum(k[i]) || k[i] == '_') {
				return nil, fmt.Errorf("variable name %q may only contain A-Z a-z 0-9 _", truncate(k, 40))
			}
		}
		if strings.HasPrefix(strings.ToUpper(k), ReservedVarPrefix) {
			return nil, fmt.Errorf("variable name %q is reserved (names beginning with %s are dialbridge's)", k, ReservedVarPrefix)
		}
		v, err := stringField(vm, "variable "+k, true)
		if err != nil {
			return nil, err
		}
		if err := checkText("variable "+k, v, MaxVarValueLen); err != nil {
			return nil, err
		}
		if strings.ContainsRune(v, ',') {
			return nil, fmt.Errorf("variable %s may not contain a comma (Asterisk splits the Variable header on commas)", k)
		}
		if size > 0 {
			size++ // the comma
		}
		size += len(k) + 1 + len(v)
		vars = append(vars, Variable{Name: k, Value: v})
	}
	if size >= MaxVariablesBytes {
		return nil, fmt.Errorf("variables joined as k=v,… are %d bytes, must stay under %d", size, MaxVariablesBytes)
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars, nil
}

func isAlnum(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}

// describeByte names the offending character without echoing control bytes
// into logs.
func describeByte(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	if r < 0x20 || r == 0x7f || r == utf8.RuneError {
		return fmt.Sprintf("%U", r)
	}
	return fmt.Sprintf("%q", r)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cleanJSONError keeps encoding/json's message but never an unbounded echo
// of the input.
func cleanJSONError(err error) string {
	return truncate(strings.TrimPrefix(err.Error(), "json: "), 200)
}
