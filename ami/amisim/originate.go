package amisim

import (
	"strconv"
	"strings"
	"time"
)

// maxPublicUniqueID is AST_MAX_PUBLIC_UNIQUEID: a longer ChannelId is refused.
const maxPublicUniqueID = 149

// knownTechs are the channel technologies a stock Asterisk 22 knows; an
// Originate to any other one fails with Reason 0 and no channel at all.
var knownTechs = map[string]bool{
	"local": true, "pjsip": true, "sip": true, "iax2": true, "dahdi": true,
	"motif": true, "console": true, "unicastrtp": true, "multicastrtp": true,
	"audiosocket": true, "websocket": true, "bridgemedia": true, "announcer": true,
	"recorder": true, "test": true,
}

// leadingInt parses like sscanf("%d"): optional sign, then digits, the rest
// ignored; ok is false when there is no digit.
func leadingInt(s string) (int, bool) {
	s = strings.TrimLeft(s, " \t")
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, false
	}
	n, err := strconv.Atoi(s[:j])
	if err != nil {
		return 0, false
	}
	return n, true
}

// numberOf returns the dialled number: the part of a dial string between
// the "/" and the first "@".
func numberOf(channel string) string {
	_, data, ok := strings.Cut(channel, "/")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(data, '@'); i >= 0 {
		data = data[:i]
	}
	return data
}

// actionOriginate handles Originate (manager.c action_originate plus
// fast_originate). It returns false when the session ends.
func (ss *session) actionOriginate(m *message, id string) bool {
	srv := ss.srv
	channel := m.get("Channel")
	trunk, endpoint := srv.route(channel)
	if trunk != nil {
		trunk.arrived(srv.now)
	}
	rec := OriginateRecord{
		ActionID:  id,
		Channel:   channel,
		Number:    numberOf(channel),
		ChannelID: m.get("ChannelId"),
		Context:   m.get("Context"),
		Exten:     m.get("Exten"),
		CallerID:  m.get("CallerID"),
		Async:     isTrue(m.get("Async")),
		At:        time.Now(),
		Timeout:   30 * time.Second,
		Trunk:     endpoint,
	}
	ov := parseOriginateVars(m.getAll("Variable"))
	rec.Variables, rec.VariableNames = ov.read()
	rec.Functions = ov.funcs
	if srv.cfg.MaxRecords >= 0 {
		rec.Headers = make(map[string]string, len(m.headers))
		for _, h := range m.headers {
			if old, ok := rec.Headers[h.name]; ok {
				rec.Headers[h.name] = old + "," + h.value
			} else {
				rec.Headers[h.name] = h.value
			}
		}
	}
	refuse := func(msg string) bool {
		rec.Outcome = OutcomeRefuse
		srv.record(rec)
		srv.logf("amisim: originate %q (ActionID %q) refused: %s", channel, id, msg)
		ss.send(appendResponse(nil, "Error", id, "", msg, false))
		return true
	}
	// Checked first, and only over the limit, as action_originate does.
	otherID := m.get("OtherChannelId")
	if len(rec.ChannelID) > maxPublicUniqueID || len(otherID) > maxPublicUniqueID {
		return refuse("Uniqueid length exceeds maximum of " + strconv.Itoa(maxPublicUniqueID))
	}
	if channel == "" {
		return refuse("Channel not specified")
	}
	if p := m.get("Priority"); p != "" {
		n, ok := leadingInt(p)
		if !ok {
			return refuse("Invalid priority")
		}
		rec.Priority = n
	}
	if t := m.get("Timeout"); t != "" {
		n, ok := leadingInt(t)
		if !ok {
			return refuse("Invalid timeout")
		}
		if n > 0 {
			rec.Timeout = time.Duration(n) * time.Millisecond
		}
	}
	tech, _, ok := strings.Cut(channel, "/")
	if !ok {
		return refuse("Invalid channel")
	}
	app := m.get("Application")
	if !rec.Async && app == "" && rec.Priority == 0 {
		return refuse("Originate with 'Exten' requires 'Context' and 'Priority'")
	}

	rule := matchRule(*srv.rules.Load(), rec.Number)
	outcome := rule.Outcome
	switch outcome {
	case OutcomeRefuse, OutcomeNoResponse, OutcomeDrop:
		// Manager-level behaviours: they apply whatever the channel.
	default:
		if !knownTechs[strings.ToLower(tech)] {
			outcome = OutcomeFailed
		}
	}
	rec.Outcome = outcome
	srv.record(rec)
	srv.logf("amisim: originate %s (number %q, ActionID %q, ChannelId %q, async %v) -> %s (rule %s)",
		channel, rec.Number, id, rec.ChannelID, rec.Async, outcome, rule)

	num, name := parseCallerID(rec.CallerID)
	newCall := func(async bool) *call {
		outcome := outcome
		if outcome == OutcomeNoResponse || outcome == OutcomeDrop {
			outcome = OutcomeAnswer // PlayCall: the call itself goes well
		}
		c := &call{
			srv:       srv,
			req:       channel,
			tech:      tech,
			number:    rec.Number,
			actionID:  id,
			async:     async,
			outcome:   outcome,
			rule:      rule,
			timeout:   rec.Timeout,
			context:   rec.Context,
			exten:     rec.Exten,
			priority:  rec.Priority,
			account:   m.get("Account"),
			cidNum:    orUnknown(num),
			cidName:   orUnknown(name),
			channelID: rec.ChannelID,
			otherID:   otherID,
		}
		if !async {
			c.syncRes = make(chan bool, 1)
		}
		if trunk != nil {
			c.pj = &pjCall{trunk: trunk, endpoint: endpoint}
		}
		return c
	}

	if !ss.sleep(rule.ResponseDelay) {
		return false
	}
	switch outcome {
	case OutcomeRefuse:
		msg := rule.Message
		if msg == "" {
			msg = "Originate failed"
		}
		ss.send(appendResponse(nil, "Error", id, "", msg, false))
		return true
	case OutcomeNoResponse:
		if rule.PlayCall {
			newCall(true).start()
		}
		return true
	case OutcomeDrop:
		if rule.PlayCall {
			newCall(true).start()
		}
		ss.kill("closed by a drop rule after Originate " + strconv.Quote(id))
		return false
	}

	if rec.Async {
		ss.send(appendResponse(nil, "Success", id, "", "Originate successfully queued", false))
		newCall(true).start()
		return true
	}

	// Sync Originate: the session blocks until the outcome; its events wait
	// and arrive right after the Response, as in Asterisk.
	c := newCall(false)
	ss.hold()
	c.start()
	var answered bool
	select {
	case answered = <-c.syncRes:
	case <-ss.done:
		return false
	}
	if answered {
		ss.release(appendResponse(nil, "Success", id, "", "Originate successfully queued", false))
	} else {
		ss.release(appendResponse(nil, "Error", id, "", "Originate failed", false))
	}
	return true
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}
