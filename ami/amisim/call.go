package amisim

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// leg is one half of the Local-style channel pair of a call.
type leg struct {
	name, uniqueid string
	state          int
	context, exten string
	priority       int
	created        time.Time
}

const (
	phaseNew = iota
	phaseRinging
	phaseUp
	phaseDone
)

// call is one originated call. Its timeline is driven by time.AfterFunc:
// each step renders its events, broadcasts them and schedules the next
// step, all under mu, so the events of a call keep their order.
type call struct {
	srv *Server

	// Fixed at creation.
	seq                     uint32
	base, req, tech, number string
	actionID                string
	async                   bool
	outcome                 Outcome
	rule                    Rule
	timeout                 time.Duration
	context, exten          string
	priority                int
	account                 string
	cidNum, cidName         string
	channelID, otherID      string
	linkedid                string
	syncRes                 chan bool // sync Originate: the outcome (answered?)
	pj                      *pjCall   // carrier-routed: one PJSIP channel (carrier.go)
	orDone                  bool      // the outcome (OriginateResponse or sync result) was produced

	mu       sync.Mutex
	legs     [2]leg
	final    Outcome // outcome after the Timeout rule (noanswer when the ring is too long)
	phase    int
	timer    *time.Timer
	dead     bool // stopped by Close
	answerAt time.Time
}

// batch collects the events of one instant of a call.
type batch struct {
	b      []byte
	starts []int
	or     int // index of the OriginateResponse, -1 if none
	minOR  int // the OriginateResponse may not move before this index
	sync   int // 0: nothing; 1: report answered; 2: report failed
}

func (bt *batch) mark() { bt.starts = append(bt.starts, len(bt.b)) }

func newBatch() *batch { return &batch{b: make([]byte, 0, 2048), or: -1} }

func (s *Server) newUniqueid() string {
	n := s.uidSeq.Add(1) - 1
	b := make([]byte, 0, 24)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, n, 10)
	return string(b)
}

// start plays the first instant of the call. It runs on the session's
// reader goroutine, after the Response was queued.
func (c *call) start() {
	s := c.srv
	if c.pj != nil {
		c.startPJSIP()
		return
	}
	if c.outcome == OutcomeFailed {
		bt := newBatch()
		c.addOR(bt, false, 0)
		c.emit(bt)
		return
	}
	c.seq = s.chanSeq.Add(1) - 1
	var hex [8]byte
	const digits = "0123456789abcdef"
	for i, v := 7, c.seq; i >= 0; i, v = i-1, v>>4 {
		hex[i] = digits[v&0xf]
	}
	c.base = c.req + "-" + string(hex[:])
	uid1 := c.channelID
	if uid1 == "" {
		uid1 = s.newUniqueid()
	}
	uid2 := c.otherID
	if uid2 == "" {
		if c.channelID != "" {
			uid2 = c.channelID + ";2"
		} else {
			uid2 = s.newUniqueid()
		}
	}
	c.linkedid = uid1
	ctx := "default"
	if _, after, ok := strings.Cut(c.req, "@"); ok && after != "" {
		ctx = after
		if i := strings.IndexByte(ctx, '/'); i >= 0 {
			ctx = ctx[:i]
		}
	}
	now := time.Now()
	c.legs[0] = leg{name: c.base + ";1", uniqueid: uid1, state: stateDown, context: ctx, exten: c.number, priority: 1, created: now}
	c.legs[1] = leg{name: c.base + ";2", uniqueid: uid2, state: stateRing, context: ctx, exten: c.number, priority: 1, created: now}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.registerCall(c) {
		c.phase = phaseDone
		return
	}
	s.nCallsStarted.Add(1)
	c.phase = phaseRinging
	bt := newBatch()
	c.newchannel(bt, 0)
	bt.minOR = len(bt.starts)
	c.newchannel(bt, 1)

	if c.outcome == OutcomeDoesNotExist {
		c.hangup(bt, 1, 0)
		c.hangup(bt, 0, 0)
		c.addOR(bt, false, 0)
		c.end()
		c.emit(bt)
		return
	}
	c.callerIDs(bt)
	c.dialBegin(bt)
	ring := c.rule.RingFor
	c.final = c.outcome
	if c.final == OutcomeNoAnswer || ring >= c.timeout {
		c.final, ring = OutcomeNoAnswer, c.timeout
	}
	if c.final == OutcomeNoAnswer || ring > 0 {
		c.newstate(bt, 0, stateRinging)
	}
	if ring == 0 {
		c.outcomeStep(bt)
		c.emit(bt)
		return
	}
	c.emit(bt)
	c.schedule(ring, c.outcomeStep)
}

// schedule runs step after d as a new instant (c.mu held).
func (c *call) schedule(d time.Duration, step func(*batch)) {
	if c.dead || c.srv.closed.Load() {
		return
	}
	c.timer = c.srv.after(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.dead || c.phase == phaseDone {
			return
		}
		c.timer = nil
		bt := newBatch()
		step(bt)
		c.emit(bt)
	})
}

// outcomeStep plays the moment the far end answers, refuses or the ring
// times out (c.mu held).
func (c *call) outcomeStep(bt *batch) {
	switch c.final {
	case OutcomeAnswer:
		if c.rule.RingFor == 0 {
			c.newstate(bt, 1, stateUp)
			c.newstate(bt, 0, stateUp)
		} else {
			c.newstate(bt, 0, stateUp)
			c.newstate(bt, 1, stateUp)
		}
		c.dialEnd(bt, "ANSWER")
		c.addOR(bt, true, 4)
		c.deviceState(bt, "INUSE")
		c.phase = phaseUp
		c.answerAt = time.Now()
		// The ;1 leg now runs the Originate's target.
		if c.context != "" {
			c.legs[0].context, c.legs[0].exten = c.context, c.exten
			if c.priority > 0 {
				c.legs[0].priority = c.priority
			}
		}
		c.legs[1].priority = 2
		if c.rule.TalkFor >= 0 {
			c.schedule(c.rule.TalkFor, func(bt *batch) {
				c.hangup(bt, 1, 16)
				c.hangup(bt, 0, 16)
				c.deviceState(bt, "NOT_INUSE")
				c.end()
			})
		}
	case OutcomeBusy:
		c.dialEnd(bt, "BUSY")
		c.newstate(bt, 1, stateBusy)
		c.addOR(bt, false, 5)
		c.hangup(bt, 0, 0)
		c.hangup(bt, 1, 17)
		c.end()
	case OutcomeCongestion:
		c.dialEnd(bt, "CONGESTION")
		c.newstate(bt, 1, stateBusy)
		c.hangup(bt, 0, 0)
		c.hangup(bt, 1, 34)
		c.addOR(bt, false, 8)
		c.end()
	case OutcomeHangup:
		cause := c.rule.Cause
		if cause == 0 {
			cause = 16
		}
		c.hangup(bt, 1, cause)
		c.addOR(bt, false, 0)
		c.hangup(bt, 0, cause)
		c.end()
	case OutcomeNoAnswer:
		c.dialEnd(bt, "NOANSWER")
		c.addOR(bt, false, 3)
		c.hangup(bt, 0, 19)
		c.hangup(bt, 1, 19)
		c.end()
	default: // not reached: other outcomes never create channels
		c.addOR(bt, false, 0)
		c.hangup(bt, 0, 0)
		c.hangup(bt, 1, 0)
		c.end()
	}
}

// hangupByAMI hangs up the call because of a Hangup action on leg i.
func (c *call) hangupByAMI(i, cause int) bool {
	if cause <= 0 {
		cause = 16
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.phase == phaseDone {
		return false
	}
	c.srv.stopTimer(c.timer)
	c.timer = nil
	if c.pj != nil {
		c.pjHangupByAMI(cause)
		return true
	}
	bt := newBatch()
	c.hangup(bt, i, cause)
	if c.phase != phaseUp {
		c.addOR(bt, false, 1) // AST_CONTROL_HANGUP: hung up before answer
	}
	c.hangup(bt, 1-i, cause)
	c.end()
	c.emit(bt)
	return true
}

// stop cancels the call without events (Close).
func (c *call) stop() {
	c.mu.Lock()
	c.dead = true
	c.srv.stopTimer(c.timer)
	c.timer = nil
	c.mu.Unlock()
}

// end marks the call finished (c.mu held).
func (c *call) end() {
	c.phase = phaseDone
	c.releaseChannel()
	c.srv.unregisterCall(c)
}

// emit shuffles the OriginateResponse if asked, then broadcasts the batch
// (c.mu held, so the instants of a call reach every session in order).
func (c *call) emit(bt *batch) {
	n := len(bt.starts)
	if c.srv.rng != nil && bt.or >= 0 && n > 1 {
		lo := min(bt.minOR, n-1)
		p := lo + c.srv.shuffle(n-lo) // new index of the OriginateResponse
		if p != bt.or {
			ev := func(i int) []byte {
				end := len(bt.b)
				if i+1 < n {
					end = bt.starts[i+1]
				}
				return bt.b[bt.starts[i]:end]
			}
			or := ev(bt.or)
			out := make([]byte, 0, len(bt.b))
			k := 0
			for i := 0; i < n; i++ {
				if i == bt.or {
					continue
				}
				if k == p {
					out = append(out, or...)
				}
				out = append(out, ev(i)...)
				k++
			}
			if p == n-1 {
				out = append(out, or...)
			}
			bt.b = out
		}
	}
	c.srv.broadcast(bt.b, n, flagCall)
	switch bt.sync {
	case 1:
		c.syncRes <- true
	case 2:
		c.syncRes <- false
	}
}

// addOR adds the OriginateResponse of an async Originate; a sync one gets
// its Response instead.
func (c *call) addOR(bt *batch, success bool, reason int) {
	if c.orDone {
		return
	}
	c.orDone = true
	if !c.async {
		if success {
			bt.sync = 1
		} else {
			bt.sync = 2
		}
		return
	}
	bt.or = len(bt.starts)
	bt.mark()
	b := bt.b
	b = appendHeader(b, "Event", "OriginateResponse")
	b = appendHeader(b, "Privilege", "call,all")
	if c.actionID != "" {
		b = appendHeader(b, "ActionID", c.actionID)
	}
	channel, uid := c.req, c.channelID
	if success {
		b = appendHeader(b, "Response", "Success")
		channel, uid = c.legs[0].name, c.legs[0].uniqueid
	} else {
		b = appendHeader(b, "Response", "Failure")
		if uid == "" {
			uid = "<unknown>"
		}
	}
	b = appendHeader(b, "Channel", channel)
	b = appendHeader(b, "Context", c.context)
	b = appendHeader(b, "Exten", c.exten)
	b = appendHeaderInt(b, "Reason", int64(reason))
	b = appendHeader(b, "Uniqueid", uid)
	b = appendHeader(b, "CallerIDNum", c.cidNum)
	b = appendHeader(b, "CallerIDName", c.cidName)
	bt.b = append(b, '\r', '\n')
}

// appendChannel renders the standard channel snapshot block of leg i, each
// header name preceded by prefix ("Dest", "LocalOne"... or none).
func (c *call) appendChannel(b []byte, prefix string, i int, fresh bool) []byte {
	l := &c.legs[i]
	num, name := c.cidNum, c.cidName
	if fresh { // Newchannel: the caller id is set just after
		num, name = "<unknown>", "<unknown>"
	}
	h := func(k, v string) {
		b = append(b, prefix...)
		b = appendHeader(b, k, v)
	}
	hInt := func(k string, v int64) {
		b = append(b, prefix...)
		b = appendHeaderInt(b, k, v)
	}
	h("Channel", l.name)
	hInt("ChannelState", int64(l.state))
	h("ChannelStateDesc", stateDesc[l.state])
	h("CallerIDNum", num)
	h("CallerIDName", name)
	h("ConnectedLineNum", num)
	h("ConnectedLineName", name)
	h("Language", "en")
	h("AccountCode", c.account)
	h("Context", l.context)
	h("Exten", l.exten)
	hInt("Priority", int64(l.priority))
	h("Uniqueid", l.uniqueid)
	h("Linkedid", c.linkedid)
	return b
}

func (c *call) newchannel(bt *batch, i int) {
	bt.mark()
	b := appendHeader(bt.b, "Event", "Newchannel")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", i, true)
	bt.b = append(b, '\r', '\n')
}

func (c *call) newstate(bt *batch, i, state int) {
	c.legs[i].state = state
	if i == 1 && state != stateRing {
		c.legs[1].priority = 2
	}
	bt.mark()
	b := appendHeader(bt.b, "Event", "Newstate")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", i, false)
	bt.b = append(b, '\r', '\n')
}

func (c *call) hangup(bt *batch, i, cause int) {
	if i == 1 && c.outcome != OutcomeDoesNotExist && c.legs[1].priority < 2 {
		c.legs[1].priority = 2 // the ;2 leg ran its dialplan a step further
	}
	c.hangupRequest(bt, i, cause)
	bt.mark()
	b := appendHeader(bt.b, "Event", "Hangup")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", i, false)
	b = appendHeaderInt(b, "Cause", int64(cause))
	b = appendHeader(b, "Cause-txt", CauseText(cause))
	bt.b = append(b, '\r', '\n')
}
