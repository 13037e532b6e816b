package ami

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/multcall/dialbridge/bridge"
)

// ErrInvalidRequest means an OriginateRequest was refused before anything was
// sent: a value would have broken the AMI framing (CR, LF or NUL) or
// Asterisk's reading of it (a line over 1,024 bytes, a variable Asterisk
// would not read back as given), a required field is missing, or its ids
// are already in flight.
var ErrInvalidRequest = bridge.ErrInvalidRequest

const (
	// maxLine is Asterisk's input buffer (manager.c get_input): a header
	// line with its CRLF must fit, or the whole action is refused ("Failed
	// to parse message: line too long"), or, cut at its CR, split in two.
	maxLine = 1024
	// maxVariables: Asterisk parses at most 64 items of a Variable header
	// and the 64th is the unparsed rest, commas and all.
	maxVariables = 63
	// variableSpecials are what Asterisk's application-argument parser,
	// which reads the Variable header, treats as separators, groups or
	// escapes: any of them in a value would make the dialplan read other
	// variables than the ones given.
	variableSpecials = `,()[]"\`
)

// originateAction builds the one action map an Originate sends. Every header
// is set here and only here: amigo serialises a map, so a second spelling of
// a key (say "actionid") would become a second header, and a value with a
// line break would let a command inject headers or whole actions.
func originateAction(req bridge.OriginateRequest) (map[string]string, error) {
	if req.ActionID == "" {
		return nil, fmt.Errorf("%w: empty ActionID", ErrInvalidRequest)
	}
	if req.Channel == "" {
		return nil, fmt.Errorf("%w: empty Channel", ErrInvalidRequest)
	}
	if req.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative Timeout %s", ErrInvalidRequest, req.Timeout)
	}
	m := map[string]string{
		"Action":   "Originate",
		"ActionID": req.ActionID,
		"Channel":  req.Channel,
		"Context":  req.Context,
		"Exten":    req.Exten,
		"Priority": strconv.Itoa(req.Priority),
		"Async":    "true",
	}
	// Omitted, Asterisk rings for its default 30 s; "0" would not mean that.
	if req.Timeout > 0 {
		m["Timeout"] = strconv.FormatInt(req.Timeout.Milliseconds(), 10)
	}
	if req.ChannelID != "" {
		m["ChannelId"] = req.ChannelID
	}
	if req.CallerID != "" {
		m["CallerID"] = req.CallerID
	}
	if len(req.Variables) > maxVariables {
		return nil, fmt.Errorf("%w: %d variables, Asterisk reads at most %d", ErrInvalidRequest, len(req.Variables), maxVariables)
	}
	if len(req.Variables) > 0 {
		// In the order given: when a name appears twice Asterisk keeps the
		// first, so the caller puts the variables that must win first.
		var b strings.Builder
		for i, v := range req.Variables {
			if !validVariableName(v.Name) {
				return nil, fmt.Errorf("%w: variable name %q", ErrInvalidRequest, v.Name)
			}
			if strings.ContainsAny(v.Value, variableSpecials) {
				return nil, fmt.Errorf("%w: value of variable %s contains one of %s", ErrInvalidRequest, v.Name, variableSpecials)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(v.Name)
			b.WriteByte('=')
			b.WriteString(v.Value)
		}
		m["Variable"] = b.String()
	}
	for k, v := range m {
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("%w: header %s contains CR, LF or NUL", ErrInvalidRequest, k)
		}
		// amigo writes "k: v\r\n".
		if n := len(k) + len(v) + 4; n > maxLine {
			return nil, fmt.Errorf("%w: header %s would be a %d-byte line; Asterisk reads at most %d", ErrInvalidRequest, k, n, maxLine)
		}
	}
	return m, nil
}

// validVariableName refuses what would not come back as the same name: an
// "=" (the name would end there), the parser's specials, and blanks and
// control bytes (Asterisk skips the ones that lead the header).
func validVariableName(name string) bool {
	if name == "" || strings.ContainsAny(name, "="+variableSpecials) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] == 0x7f {
			return false
		}
	}
	return true
}
