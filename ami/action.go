package ami

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/multcall/dialbridge/bridge"
)

// ErrInvalidRequest means an OriginateRequest was refused before anything was
// sent: a value would have broken the AMI framing (CR, LF or NUL), a required
// field is missing, or its ids are already in flight.
var ErrInvalidRequest = bridge.ErrInvalidRequest

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
	if len(req.Variables) > 0 {
		var b strings.Builder
		for i, v := range req.Variables {
			if v.Name == "" || strings.ContainsAny(v.Name, "=,") {
				return nil, fmt.Errorf("%w: variable name %q", ErrInvalidRequest, v.Name)
			}
			// Asterisk splits the Variable header on commas: a comma in a
			// value would silently become another variable.
			if strings.Contains(v.Value, ",") {
				return nil, fmt.Errorf("%w: value of variable %s contains a comma", ErrInvalidRequest, v.Name)
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
	}
	return m, nil
}
