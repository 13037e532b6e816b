package amisim

import "strings"

// The call-class events dialbridge does not route. A real Asterisk sends
// them to every session whose user may read "call": the transcripts show 21
// events for an answered Local call, 7 of them the Newchannel, Newstate,
// OriginateResponse and Hangup events dialbridge uses. With
// Config.AllEvents the simulator sends them too, at the same instants, so
// that a benchmark parses what production parses; Config.EventFilters (the
// manager.conf eventfilter) is how an operator keeps them off the wire.
// Each function runs with c.mu held and renders nothing unless AllEvents.

func (c *call) noisy() bool { return c.srv.cfg.AllEvents }

// renders reports whether an event named name is rendered at all: not when
// the eventfilter is sure to drop it (what Asterisk pays to render it is
// not dialbridge's cost, and the simulator shares the benchmark's CPU).
func (c *call) renders(name string) bool { return !c.srv.filter.drops(name) }

// begin starts rendering an event named name into bt, or reports false
// when it is not rendered.
func (c *call) begin(bt *batch, name string) ([]byte, bool) {
	if !c.noisy() || !c.renders(name) {
		return nil, false
	}
	bt.mark()
	b := appendHeader(bt.b, "Event", name)
	return appendHeader(b, "Privilege", "call,all"), true
}

// callerIDs: NewCallerid and NewConnectedLine of both legs, right after
// their Newchannel events.
func (c *call) callerIDs(bt *batch) {
	for i := range c.legs {
		if b, ok := c.begin(bt, "NewCallerid"); ok {
			b = c.appendChannel(b, "", i, false)
			b = appendHeader(b, "CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
			bt.b = append(b, '\r', '\n')
		}
		if b, ok := c.begin(bt, "NewConnectedLine"); ok {
			b = c.appendChannel(b, "", i, false)
			bt.b = append(b, '\r', '\n')
		}
	}
}

// dialBegin: the Local channel's two halves are bridged and the ;1 leg
// dialled (LocalBridge, DialBegin).
func (c *call) dialBegin(bt *batch) {
	if b, ok := c.begin(bt, "LocalBridge"); ok {
		b = c.appendChannel(b, "LocalOne", 0, false)
		b = c.appendChannel(b, "LocalTwo", 1, false)
		b = appendHeader(b, "Context", c.legs[1].context)
		b = appendHeader(b, "Exten", c.legs[1].exten)
		b = appendHeader(b, "LocalOptimization", "Yes")
		bt.b = append(b, '\r', '\n')
	}
	if b, ok := c.begin(bt, "DialBegin"); ok {
		b = c.appendChannel(b, "Dest", 0, false)
		b = appendHeader(b, "DialString", c.dialString())
		bt.b = append(b, '\r', '\n')
	}
}

// dialEnd: the dial is over (ANSWER, BUSY, CONGESTION, NOANSWER).
func (c *call) dialEnd(bt *batch, status string) {
	if b, ok := c.begin(bt, "DialEnd"); ok {
		b = c.appendChannel(b, "Dest", 0, false)
		b = appendHeader(b, "DialStatus", status)
		bt.b = append(b, '\r', '\n')
	}
}

// deviceState: the Local device changes state (INUSE, NOT_INUSE), once per
// leg as in the transcripts.
func (c *call) deviceState(bt *batch, state string) {
	for range c.legs {
		if b, ok := c.begin(bt, "DeviceStateChange"); ok {
			b = appendHeader(b, "Device", c.req)
			b = appendHeader(b, "State", state)
			bt.b = append(b, '\r', '\n')
		}
	}
}

// hangupRequest: what precedes a Hangup (SoftHangupRequest; the ;1 leg of
// an answered call also shows a HangupRequest).
func (c *call) hangupRequest(bt *batch, i, cause int) {
	for _, name := range [...]string{"SoftHangupRequest", "HangupRequest"} {
		if name == "HangupRequest" && (i != 0 || c.phase != phaseUp) {
			continue
		}
		if b, ok := c.begin(bt, name); ok {
			b = c.appendChannel(b, "", i, false)
			b = appendHeaderInt(b, "Cause", int64(cause))
			bt.b = append(b, '\r', '\n')
		}
	}
}

// dialString is what the ;1 leg dialled: the request without its
// technology ("answer@lab" for "Local/answer@lab").
func (c *call) dialString() string {
	if _, after, ok := strings.Cut(c.req, "/"); ok {
		return after
	}
	return c.req
}
