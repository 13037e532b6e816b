package amisim

import (
	"strconv"
	"strings"
)

// header is one "Name: value" line of an incoming action.
type header struct {
	name, value string
}

// message is one incoming action.
type message struct {
	headers []header
	// tooMany: more than maxHeaderLines lines; Asterisk answers an error.
	tooMany bool
}

// get returns the value of the first header named name (case-insensitive),
// like astman_get_header.
func (m *message) get(name string) string {
	for i := range m.headers {
		if strings.EqualFold(m.headers[i].name, name) {
			return m.headers[i].value
		}
	}
	return ""
}

// getAll returns every value of the headers named name.
func (m *message) getAll(name string) []string {
	var out []string
	for i := range m.headers {
		if strings.EqualFold(m.headers[i].name, name) {
			out = append(out, m.headers[i].value)
		}
	}
	return out
}

// appendHeader appends "k: v\r\n".
func appendHeader(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ':', ' ')
	b = append(b, v...)
	return append(b, '\r', '\n')
}

func appendHeaderInt(b []byte, k string, v int64) []byte {
	b = append(b, k...)
	b = append(b, ':', ' ')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\r', '\n')
}

// appendResponse renders astman_send_response_full: Response, ActionID (when
// the action had one), EventList (list starts), Message, and the blank line
// unless more is to follow (eventList != "" or more).
func appendResponse(b []byte, resp, actionID, eventList, msg string, more bool) []byte {
	b = appendHeader(b, "Response", resp)
	if actionID != "" {
		b = appendHeader(b, "ActionID", actionID)
	}
	if eventList != "" {
		b = appendHeader(b, "EventList", eventList)
	}
	if msg != "" {
		b = appendHeader(b, "Message", msg)
	}
	if !more {
		b = append(b, '\r', '\n')
	}
	return b
}

// appendListComplete renders astman_send_list_complete_start+end.
func appendListComplete(b []byte, event, actionID string, items int, extra ...string) []byte {
	b = appendHeader(b, "Event", event)
	if actionID != "" {
		b = appendHeader(b, "ActionID", actionID)
	}
	b = appendHeader(b, "EventList", "Complete")
	b = appendHeaderInt(b, "ListItems", int64(items))
	for i := 0; i+1 < len(extra); i += 2 {
		b = appendHeader(b, extra[i], extra[i+1])
	}
	return append(b, '\r', '\n')
}

// stringsToMask is manager.c's strings_to_mask: a number is itself, a false
// word is 0, a true word is every class, otherwise the comma-separated class
// names; "" is -1 (invalid, leaves the mask as it is).
func stringsToMask(s string) int64 {
	if s == "" {
		return -1
	}
	digits := true
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			digits = false
			break
		}
	}
	if digits {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return maskAll
		}
		return n
	}
	if isFalse(s) {
		return 0
	}
	if isTrue(s) {
		return maskAll
	}
	var mask int64
	for _, item := range strings.Split(s, ",") {
		for _, p := range permNames {
			if item == p.name { // case-sensitive, like Asterisk's get_perm
				mask |= p.flag
			}
		}
	}
	return mask
}

func isTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

func isFalse(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "no", "false", "n", "f", "0", "off":
		return true
	}
	return false
}

// parseCallerID is ast_callerid_parse followed by what action_originate does
// with the result: `"Name" <num>`, `Name <num>`, `<num>`, a bare phone number
// or a bare name.
func parseCallerID(s string) (num, name string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", ""
	}
	instr, quoted := stripQuoted(s)
	if ls := strings.LastIndexByte(instr, '<'); ls >= 0 {
		loc := instr[ls+1:]
		if le := strings.LastIndexByte(loc, '>'); le >= 0 {
			loc = loc[:le]
		}
		n, _ := stripQuoted(strings.TrimSpace(instr[:ls]))
		return shrinkPhone(loc), unescapeQuoted(n)
	}
	if tmp := shrinkPhone(instr); !quoted && isPhoneNumber(tmp) {
		return tmp, ""
	}
	n, _ := stripQuoted(instr)
	return "", unescapeQuoted(n)
}

func stripQuoted(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1], true
	}
	return s, false
}

func unescapeQuoted(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// shrinkPhone drops the formatting characters ast_shrink_phone_number drops.
func shrinkPhone(s string) string {
	if !strings.ContainsAny(s, "()-. ") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', ')', '-', '.', ' ':
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isPhoneNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && c != '*' && c != '#' && c != '+' {
			return false
		}
	}
	return true
}
