package amisim

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DeadMode is how a dead trunk fails every call.
type DeadMode string

const (
	// DeadNone: the trunk is alive.
	DeadNone DeadMode = ""
	// DeadCongestion: the carrier answers every INVITE 503 (a carrier in
	// trouble, or one that has blocked us): the channel is created and
	// hung up at once, OriginateResponse Reason 0, Hangup cause 34.
	DeadCongestion DeadMode = "congestion"
	// DeadNoChannel: Asterisk cannot create the channel at all (endpoint
	// unknown, or every contact of its AOR unreachable): chan_pjsip's
	// request fails with AST_CAUSE_NO_ROUTE_DESTINATION, which the dial
	// code reports as Reason 0 with no channel, exactly like the unknown
	// technology of ami-transcripts.txt ("Foo/bar": OriginateResponse
	// Failure Reason 0, no channel event at all).
	DeadNoChannel DeadMode = "nochannel"
)

// Carrier is the model of a SIP carrier behind one PJSIP trunk (endpoint).
// The zero value is a carrier without limits that is alive.
//
// A call routed to a carrier is played as chan_pjsip plays it (one channel
// "PJSIP/<endpoint>-<8 hex>", no ";2" leg; pjsip-transcripts.txt): the
// number's Rule still picks what the far end does, the carrier decides
// first whether the INVITE gets through.
type Carrier struct {
	// CPS is how many calls the carrier lets through in any Window
	// (rolling: a call is refused when CPS calls were already let through
	// in the Window before it). Refused calls do not count. 0: no limit.
	CPS int
	// Window is the CPS window; default 1s. CPS 1 with Window 2s is 0.5 cps.
	Window time.Duration
	// MaxChannels bounds the carrier's calls in progress (INVITE sent →
	// channel hung up). 0: no limit. Carriers over their channel cap
	// mostly answer 503 like an over-CPS call, and so does the simulator
	// (some answer 486 or 403: use a rule for that).
	MaxChannels int
	// Dead makes every call fail (see DeadMode).
	Dead DeadMode
	// Context is the endpoint's context (pjsip.conf "context"), which a
	// new outbound PJSIP channel carries until it is answered; default
	// "from-carrier", as in the transcripts.
	Context string
	// ByeCause is the Q.850 cause of the carrier's BYE (its "Reason:
	// Q.850;cause=N" header) ending an answered call. 0: a BYE without a
	// Reason header, which Asterisk reports as Hangup Cause 0 "Unknown".
	// An answer Rule with a Cause overrides it.
	ByeCause int
	// Match, when set, also routes to this carrier every Originate whose
	// Channel contains it (e.g. "@gw1" for Local channels that the dialplan
	// sends to that trunk); such calls are played as PJSIP calls on the
	// trunk. An endpoint with its own carrier is matched first.
	Match string
}

// TrunkAny is the trunk name of the carrier used by every PJSIP endpoint
// without a carrier of its own (one limit shared by all of them).
const TrunkAny = "*"

func (c Carrier) validate() error {
	switch {
	case c.CPS < 0:
		return errors.New("negative cps")
	case c.Window < 0:
		return errors.New("negative window")
	case c.MaxChannels < 0:
		return errors.New("negative max channels")
	case c.ByeCause < 0 || c.ByeCause > 127:
		return fmt.Errorf("bye cause %d out of range 0-127", c.ByeCause)
	case strings.ContainsAny(c.Context, "\r\n"):
		return errors.New("context contains a line break")
	}
	switch c.Dead {
	case DeadNone, DeadCongestion, DeadNoChannel:
	default:
		return fmt.Errorf("unknown dead mode %q (want congestion or nochannel)", string(c.Dead))
	}
	return nil
}

// String formats the carrier's options in the ParseCarriers syntax (without
// the "carrier=<trunk>:" part).
func (c Carrier) String() string {
	var parts []string
	if c.CPS != 0 {
		parts = append(parts, "cps="+strconv.Itoa(c.CPS))
	}
	if c.Window != 0 && c.Window != time.Second {
		parts = append(parts, "window="+c.Window.String())
	}
	if c.MaxChannels != 0 {
		parts = append(parts, "max="+strconv.Itoa(c.MaxChannels))
	}
	if c.Dead != DeadNone {
		parts = append(parts, "dead="+string(c.Dead))
	}
	if c.Context != "" {
		parts = append(parts, "context="+c.Context)
	}
	if c.ByeCause != 0 {
		parts = append(parts, "bye="+strconv.Itoa(c.ByeCause))
	}
	if c.Match != "" {
		parts = append(parts, "match="+c.Match)
	}
	return strings.Join(parts, ",")
}

// CarrierStats are the counters of one trunk's carrier.
type CarrierStats struct {
	// Originates: Originate actions naming the trunk received by the
	// simulator (refused ones included); len(OriginateTimes).
	Originates int64
	// Attempts: calls that reached the carrier (an INVITE was sent).
	Attempts int64
	// Admitted: attempts the carrier let through (then played by the rule).
	Admitted int64
	// RejectedCPS, RejectedChannels, RejectedDead: attempts answered 503
	// because of the CPS limit, the channel limit, a dead (congestion)
	// trunk.
	RejectedCPS, RejectedChannels, RejectedDead int64
	// NoChannel: Originates that found a "nochannel" dead trunk.
	NoChannel int64
	// Channels is the carrier's calls in progress now; MaxChannelsSeen the
	// most ever at once.
	Channels, MaxChannelsSeen int
}

// maxArrivals bounds the arrival times kept per trunk; beyond it the
// oldest half is dropped (an hour of 300 cps).
const maxArrivals = 1 << 20

// trunkState is one trunk's carrier, its limiter and its counters.
type trunkState struct {
	name string

	mu       sync.Mutex
	cfg      Carrier
	admitted []time.Time // admissions within the CPS window, oldest first
	arrivals []time.Time
	st       CarrierStats
}

// verdict is the carrier's answer to one attempt.
type verdict int

const (
	admitOK verdict = iota
	reject503
	noChannel
)

// admit decides one call attempt at now.
func (t *trunkState) admit(now time.Time) (verdict, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg.Dead == DeadNoChannel {
		t.st.NoChannel++
		return noChannel, "dead trunk (no channel)"
	}
	t.st.Attempts++
	if t.cfg.Dead == DeadCongestion {
		t.st.RejectedDead++
		return reject503, "dead trunk"
	}
	if t.cfg.CPS > 0 {
		win := t.cfg.Window
		if win <= 0 {
			win = time.Second
		}
		cut := now.Add(-win)
		i := 0
		for i < len(t.admitted) && !t.admitted[i].After(cut) {
			i++
		}
		if i > 0 {
			n := copy(t.admitted, t.admitted[i:])
			t.admitted = t.admitted[:n]
		}
		if len(t.admitted) >= t.cfg.CPS {
			t.st.RejectedCPS++
			return reject503, "over " + strconv.Itoa(t.cfg.CPS) + " calls per " + win.String()
		}
	}
	if t.cfg.MaxChannels > 0 && t.st.Channels >= t.cfg.MaxChannels {
		t.st.RejectedChannels++
		return reject503, "over " + strconv.Itoa(t.cfg.MaxChannels) + " channels"
	}
	if t.cfg.CPS > 0 {
		t.admitted = append(t.admitted, now)
	}
	t.st.Admitted++
	t.st.Channels++
	t.st.MaxChannelsSeen = max(t.st.MaxChannelsSeen, t.st.Channels)
	return admitOK, ""
}

func (t *trunkState) release() {
	t.mu.Lock()
	t.st.Channels--
	t.mu.Unlock()
}

// arrived records an Originate. The time is read under the lock: read
// before it, by sessions racing on a loaded machine, times were appended
// out of order and OriginateTimes promises them in order.
func (t *trunkState) arrived(clock func() time.Time) {
	t.mu.Lock()
	now := clock()
	if len(t.arrivals) >= maxArrivals {
		n := copy(t.arrivals, t.arrivals[len(t.arrivals)/2:])
		t.arrivals = t.arrivals[:n]
	}
	t.arrivals = append(t.arrivals, now)
	t.st.Originates++
	t.mu.Unlock()
}

// carriers is the Server's table of trunks.
type carriers struct {
	mu     sync.RWMutex
	trunks map[string]*trunkState
}

func (cs *carriers) get(name string) *trunkState {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	return cs.trunks[name]
}

// now is the simulator's clock for carrier decisions and arrival times.
func (s *Server) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock()
	}
	return time.Now()
}

// SetCarrier puts a carrier behind trunk (a PJSIP endpoint name, or
// TrunkAny), or replaces its settings at once; the trunk's counters,
// arrival times, CPS window and calls in progress are kept, so a limit can
// be lowered or a trunk killed while calls run.
func (s *Server) SetCarrier(trunk string, c Carrier) error {
	if trunk == "" {
		return errors.New("amisim: SetCarrier: empty trunk name")
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("amisim: carrier %s: %w", trunk, err)
	}
	s.carriers.mu.Lock()
	defer s.carriers.mu.Unlock()
	if s.carriers.trunks == nil {
		s.carriers.trunks = make(map[string]*trunkState)
	}
	t := s.carriers.trunks[trunk]
	if t == nil {
		t = &trunkState{name: trunk}
		s.carriers.trunks[trunk] = t
	}
	t.mu.Lock()
	t.cfg = c
	t.mu.Unlock()
	s.logf("amisim: carrier %s: %s", trunk, c)
	return nil
}

// RemoveCarrier takes the carrier off trunk: its calls are played as
// before carriers existed. Calls in progress end normally.
func (s *Server) RemoveCarrier(trunk string) {
	s.carriers.mu.Lock()
	delete(s.carriers.trunks, trunk)
	s.carriers.mu.Unlock()
}

// Carrier returns trunk's carrier settings.
func (s *Server) Carrier(trunk string) (Carrier, bool) {
	t := s.carriers.get(trunk)
	if t == nil {
		return Carrier{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg, true
}

// Carriers returns every trunk's carrier settings.
func (s *Server) Carriers() map[string]Carrier {
	s.carriers.mu.RLock()
	defer s.carriers.mu.RUnlock()
	out := make(map[string]Carrier, len(s.carriers.trunks))
	for name, t := range s.carriers.trunks {
		t.mu.Lock()
		out[name] = t.cfg
		t.mu.Unlock()
	}
	return out
}

// KillTrunk makes every new call on trunk fail the way mode says (""
// means DeadCongestion). A trunk without a carrier gets one, without
// limits. Calls in progress are not touched: a carrier going down does not
// hang up the calls it carries.
func (s *Server) KillTrunk(trunk string, mode DeadMode) error {
	if mode == DeadNone {
		mode = DeadCongestion
	}
	c, _ := s.Carrier(trunk)
	c.Dead = mode
	return s.SetCarrier(trunk, c)
}

// ReviveTrunk brings a killed trunk back, with its limits; false when the
// trunk has no carrier.
func (s *Server) ReviveTrunk(trunk string) bool {
	t := s.carriers.get(trunk)
	if t == nil {
		return false
	}
	t.mu.Lock()
	t.cfg.Dead = DeadNone
	t.mu.Unlock()
	s.logf("amisim: carrier %s revived", trunk)
	return true
}

// CarrierStats returns trunk's counters (zero for a trunk without carrier).
func (s *Server) CarrierStats(trunk string) CarrierStats {
	t := s.carriers.get(trunk)
	if t == nil {
		return CarrierStats{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// OriginateTimes returns when each Originate naming trunk arrived at the
// simulator (by Config.Clock), in order: what a test of a shared limiter
// checks its windows on. Kept only for trunks with a carrier (the last
// million or so).
func (s *Server) OriginateTimes(trunk string) []time.Time {
	t := s.carriers.get(trunk)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Time(nil), t.arrivals...)
}

// endpointOf returns the PJSIP endpoint a dial string names:
// "PJSIP/<number>@<endpoint>", "PJSIP/<endpoint>/<uri>" or
// "PJSIP/<endpoint>"; "" for other technologies.
func endpointOf(channel string) string {
	tech, data, ok := strings.Cut(channel, "/")
	if !ok || !strings.EqualFold(tech, "pjsip") {
		return ""
	}
	if i := strings.IndexByte(data, '/'); i >= 0 {
		return data[:i]
	}
	if i := strings.IndexByte(data, '@'); i >= 0 {
		return data[i+1:]
	}
	return data
}

// route finds the carrier of an Originate's Channel: the endpoint's own,
// then one whose Match the channel contains, then TrunkAny (PJSIP only).
// It returns the trunk and the endpoint the channel is named after.
func (s *Server) route(channel string) (*trunkState, string) {
	s.carriers.mu.RLock()
	defer s.carriers.mu.RUnlock()
	if len(s.carriers.trunks) == 0 {
		return nil, ""
	}
	ep := endpointOf(channel)
	if ep != "" {
		if t := s.carriers.trunks[ep]; t != nil {
			return t, ep
		}
	}
	names := make([]string, 0, len(s.carriers.trunks))
	for name := range s.carriers.trunks {
		names = append(names, name)
	}
	sort.Strings(names) // several matches: the same one every time
	for _, name := range names {
		t := s.carriers.trunks[name]
		t.mu.Lock()
		m := t.cfg.Match
		t.mu.Unlock()
		if m != "" && strings.Contains(channel, m) {
			if name == TrunkAny {
				name = ep
			}
			return t, name
		}
	}
	if ep != "" {
		if t := s.carriers.trunks[TrunkAny]; t != nil {
			return t, ep
		}
	}
	return nil, ""
}

// pjCall is what a carrier-routed call needs beyond a call.
type pjCall struct {
	trunk    *trunkState
	endpoint string
	held     bool // holds one of the carrier's channels
}

// sipCodeFor is the SIP final response a carrier sends for a Q.850 cause
// (the codes of the transcripts for 1, 17, 21, 34, 19; Asterisk's
// hangup_cause2sip for the others; 500 with a Q.850 Reason header, which
// Asterisk prefers, for causes without one). It becomes the TechCause.
func sipCodeFor(cause int) int {
	switch cause {
	case 1, 2, 3:
		return 404
	case 17:
		return 486
	case 18:
		return 408
	case 19, 20, 31:
		return 480
	case 21:
		return 603
	case 22:
		return 410
	case 27:
		return 502
	case 28:
		return 484
	case 34, 41, 42:
		return 503
	case 58:
		return 488
	case 102:
		return 504
	}
	return 500
}

// startPJSIP plays the first instant of a carrier-routed call: one PJSIP
// channel, and the carrier's verdict on its INVITE.
func (c *call) startPJSIP() {
	s := c.srv
	v, why := admitOK, "rule"
	if c.outcome != OutcomeFailed {
		v, why = c.pj.trunk.admit(s.now())
	}
	if v == noChannel || c.outcome == OutcomeFailed {
		s.logf("amisim: %s: Unable to request channel %s (%s)", c.pj.trunk.name, c.req, why)
		bt := newBatch()
		c.addOR(bt, false, 0)
		c.emit(bt)
		return
	}
	c.pj.held = v == admitOK
	c.tech = "PJSIP" // a Match-routed Local dial string too: Status shows the carrier leg
	c.seq = s.chanSeq.Add(1) - 1
	var hex [8]byte
	const digits = "0123456789abcdef"
	for i, n := 7, c.seq; i >= 0; i, n = i-1, n>>4 {
		hex[i] = digits[n&0xf]
	}
	c.base = "PJSIP/" + c.pj.endpoint + "-" + string(hex[:])
	uid := c.channelID
	if uid == "" {
		uid = s.newUniqueid()
	}
	c.linkedid = uid
	c.pj.trunk.mu.Lock()
	ctx := c.pj.trunk.cfg.Context
	c.pj.trunk.mu.Unlock()
	if ctx == "" {
		ctx = "from-carrier"
	}
	c.legs[0] = leg{name: c.base, uniqueid: uid, state: stateDown, context: ctx, exten: "s", priority: 1, created: time.Now()}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.registerCall(c) {
		c.phase = phaseDone
		c.releaseChannel()
		return
	}
	s.nCallsStarted.Add(1)
	c.phase = phaseRinging
	bt := newBatch()
	c.newchannel(bt, 0)
	bt.minOR = len(bt.starts)
	if v == reject503 {
		// 100 Trying, then "503 Service Unavailable" with "Retry-After: 1":
		// the pj-cps-* and pj-unavailable-1 scenarios.
		s.logf("amisim: %s: %s answered 503 Service Unavailable, Retry-After: 1 (%s)", c.pj.trunk.name, c.base, why)
		c.pjFail(bt, 34, 503)
		c.emit(bt)
		return
	}
	if c.outcome == OutcomeDoesNotExist {
		c.pjHangup(bt, 0, 0, false)
		c.addOR(bt, false, 0)
		c.end()
		c.emit(bt)
		return
	}
	ring := c.rule.RingFor
	c.final = c.outcome
	if c.final == OutcomeNoAnswer || ring >= c.timeout {
		c.final, ring = OutcomeNoAnswer, c.timeout
	}
	if c.final == OutcomeNoAnswer || ring > 0 {
		c.newstate(bt, 0, stateRinging) // 180 Ringing
	}
	if ring == 0 {
		c.pjOutcomeStep(bt)
		c.emit(bt)
		return
	}
	c.emit(bt)
	c.schedule(ring, c.pjOutcomeStep)
}

// pjOutcomeStep plays the carrier's final answer (c.mu held).
func (c *call) pjOutcomeStep(bt *batch) {
	switch c.final {
	case OutcomeAnswer:
		// 200 OK. The answer's Newstate and the OriginateResponse come in
		// either order (pj-answer-1, pj-answerq850-1).
		c.newstate(bt, 0, stateUp)
		c.addOR(bt, true, 4)
		c.phase = phaseUp
		c.answerAt = time.Now()
		if c.context != "" {
			c.legs[0].context, c.legs[0].exten = c.context, c.exten
			if c.priority > 0 {
				c.legs[0].priority = c.priority
			}
		}
		if c.rule.TalkFor >= 0 {
			cause := c.rule.Cause
			if cause == 0 {
				c.pj.trunk.mu.Lock()
				cause = c.pj.trunk.cfg.ByeCause
				c.pj.trunk.mu.Unlock()
			}
			c.schedule(c.rule.TalkFor, func(bt *batch) {
				// The carrier's BYE: HangupRequest (its Cause only when the
				// BYE had a Q.850 Reason), SoftHangupRequest with the
				// soft-hangup flag 16, Hangup with the Q.850 cause or 0.
				c.pjHangupRequest(bt, cause, 0, cause != 0)
				c.softHangupRequest(bt)
				c.pjHangup(bt, cause, 0, false)
				c.end()
			})
		}
	case OutcomeBusy:
		c.pjFail(bt, 17, 486)
	case OutcomeCongestion:
		c.pjFail(bt, 34, 503)
	case OutcomeHangup:
		cause := c.rule.Cause
		if cause == 0 {
			cause = 16
		}
		c.pjFail(bt, cause, sipCodeFor(cause))
	case OutcomeNoAnswer:
		// Asterisk CANCELs at the Timeout (Reason: Q.850;cause=19); the
		// carrier's 487 leaves TechCause 480 (pj-noanswer-1).
		c.pjHangup(bt, 19, 480, true)
		c.addOR(bt, false, 3)
		c.end()
	default:
		c.addOR(bt, false, 0)
		c.pjHangup(bt, 0, 0, false)
		c.end()
	}
}

// pjFail plays a final failure response of the carrier: HangupRequest,
// OriginateResponse Reason 0, Hangup (pj-busy-1, pj-cps-*). Only a
// ring-out has another Reason; the cause tells the rest.
func (c *call) pjFail(bt *batch, cause, code int) {
	c.pjHangupRequest(bt, cause, code, true)
	c.addOR(bt, false, 0)
	c.pjHangup(bt, cause, code, true)
	c.end()
}

func (c *call) pjHangupRequest(bt *batch, cause, techCause int, withCause bool) {
	bt.mark()
	b := appendHeader(bt.b, "Event", "HangupRequest")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", 0, false)
	if withCause {
		b = appendHeaderInt(b, "Cause", int64(cause))
	}
	if techCause != 0 {
		b = appendHeaderInt(b, "TechCause", int64(techCause))
	}
	bt.b = append(b, '\r', '\n')
}

// softHangupRequest carries AST_SOFTHANGUP_APPUNLOAD (16) in its Cause: a
// flag, not a Q.850 cause.
func (c *call) softHangupRequest(bt *batch) {
	bt.mark()
	b := appendHeader(bt.b, "Event", "SoftHangupRequest")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", 0, false)
	b = appendHeaderInt(b, "Cause", 16)
	bt.b = append(b, '\r', '\n')
}

func (c *call) pjHangup(bt *batch, cause, techCause int, withTech bool) {
	bt.mark()
	b := appendHeader(bt.b, "Event", "Hangup")
	b = appendHeader(b, "Privilege", "call,all")
	b = c.appendChannel(b, "", 0, false)
	b = appendHeaderInt(b, "Cause", int64(cause))
	b = appendHeader(b, "Cause-txt", CauseText(cause))
	if withTech && techCause != 0 {
		b = appendHeaderInt(b, "TechCause", int64(techCause))
	}
	bt.b = append(b, '\r', '\n')
}

// pjHangupByAMI ends a carrier call on an AMI Hangup action (c.mu held).
func (c *call) pjHangupByAMI(cause int) {
	bt := newBatch()
	c.pjHangupRequest(bt, cause, 0, true)
	c.softHangupRequest(bt)
	if c.phase != phaseUp {
		c.addOR(bt, false, 1)
	}
	c.pjHangup(bt, cause, 0, false)
	c.end()
	c.emit(bt)
}

// releaseChannel gives the call's carrier channel back (once).
func (c *call) releaseChannel() {
	if c.pj != nil && c.pj.held {
		c.pj.held = false
		c.pj.trunk.release()
	}
}

// legIdx lists the call's live legs in the order Asterisk lists channels.
func (c *call) legIdx() []int {
	if c.pj != nil {
		return []int{0}
	}
	return []int{1, 0}
}

// ParseCarriers reads the carrier entries of a rule string (ParseRules
// skips them, so one string configures both):
//
//	carrier=<trunk>[:OPTION=VALUE[,OPTION=VALUE...]]
//
// with OPTIONs cps=N, window=DUR, max=N (channels), dead=congestion|
// nochannel|no, context=NAME, bye=N (Q.850 cause of the carrier's BYE),
// match=TEXT. <trunk> is a PJSIP endpoint name or "*" (TrunkAny). Example:
//
//	carrier=gw1:cps=4,max=10;carrier=gw2:dead=nochannel;suffix=5:busy;answer,talk=2s
func ParseCarriers(s string) (map[string]Carrier, error) {
	out := map[string]Carrier{}
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if !isCarrierPart(part) {
			continue
		}
		name, c, err := parseCarrier(part)
		if err != nil {
			return nil, fmt.Errorf("rule %d %q: %w", i+1, part, err)
		}
		out[name] = c
	}
	return out, nil
}

func isCarrierPart(part string) bool {
	return len(part) >= 8 && strings.EqualFold(part[:8], "carrier=")
}

func parseCarrier(part string) (string, Carrier, error) {
	var c Carrier
	name, opts, _ := strings.Cut(part[8:], ":")
	name = strings.TrimSpace(name)
	if name == "" {
		return "", c, errors.New("missing trunk name")
	}
	for _, f := range strings.Split(opts, ",") {
		k, v, ok := option(f)
		if !ok {
			continue
		}
		var err error
		switch k {
		case "cps":
			c.CPS, err = strconv.Atoi(v)
		case "window":
			c.Window, err = parseDur(v, false)
		case "max", "channels", "max_channels":
			c.MaxChannels, err = strconv.Atoi(v)
		case "dead":
			switch strings.ToLower(v) {
			case "", "congestion", "congest", "503", "yes", "true":
				c.Dead = DeadCongestion
			case "nochannel", "no_channel", "no-channel", "unreachable":
				c.Dead = DeadNoChannel
			case "no", "false", "off", "alive":
				c.Dead = DeadNone
			default:
				err = fmt.Errorf("want congestion, nochannel or no, not %q", v)
			}
		case "context":
			c.Context = v
		case "bye":
			c.ByeCause, err = strconv.Atoi(v)
		case "match":
			c.Match = v
		default:
			return "", c, fmt.Errorf("unknown carrier option %q (want cps, window, max, dead, context, bye, match)", k)
		}
		if err != nil {
			return "", c, fmt.Errorf("option %s: %w", k, err)
		}
	}
	return name, c, c.validate()
}

// FormatCarrier formats one carrier entry in the ParseCarriers syntax.
func FormatCarrier(trunk string, c Carrier) string {
	s := "carrier=" + trunk
	if o := c.String(); o != "" {
		s += ":" + o
	}
	return s
}

// Control is the simulator's text control, for the standalone
// simulate-ami and the demo (one command a line):
//
//	kill <trunk> [congestion|nochannel]   every new call fails (default congestion)
//	revive <trunk>                        the trunk works again, with its limits
//	carrier=<trunk>:<options>             sets a carrier (ParseCarriers syntax; several
//	                                      entries and rules may be joined by ";")
//	rules <rules>                         replaces the rule table (ParseRules syntax)
//	uncarrier <trunk>                     removes a carrier
//	carriers                              one status line per trunk
//
// It returns a line to show the operator.
func (s *Server) Control(line string) (string, error) {
	line = strings.TrimSpace(line)
	verb, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(verb) {
	case "kill":
		trunk, mode, _ := strings.Cut(rest, " ")
		if trunk == "" {
			return "", errors.New("kill: which trunk?")
		}
		m := DeadMode(strings.ToLower(strings.TrimSpace(mode)))
		if m != DeadNone && m != DeadCongestion && m != DeadNoChannel {
			return "", fmt.Errorf("kill: unknown mode %q (want congestion or nochannel)", mode)
		}
		if err := s.KillTrunk(trunk, m); err != nil {
			return "", err
		}
		c, _ := s.Carrier(trunk)
		return "trunk " + trunk + " dead (" + string(c.Dead) + ")", nil
	case "revive":
		if !s.ReviveTrunk(rest) {
			return "", fmt.Errorf("revive: no carrier on trunk %q", rest)
		}
		return "trunk " + rest + " alive", nil
	case "uncarrier":
		s.RemoveCarrier(rest)
		return "trunk " + rest + " has no carrier", nil
	case "rules":
		rules, err := ParseRules(rest)
		if err != nil {
			return "", err
		}
		s.SetRules(rules)
		return "rules: " + FormatRules(rules), nil
	case "carriers", "status":
		return s.carrierStatus(), nil
	}
	if isCarrierPart(line) {
		cs, err := ParseCarriers(line)
		if err != nil {
			return "", err
		}
		names := make([]string, 0, len(cs))
		for name, c := range cs {
			if err := s.SetCarrier(name, c); err != nil {
				return "", err
			}
			names = append(names, FormatCarrier(name, c))
		}
		sort.Strings(names)
		return strings.Join(names, "; "), nil
	}
	return "", fmt.Errorf("unknown command %q (want kill, revive, carrier=, uncarrier, rules, carriers)", verb)
}

func (s *Server) carrierStatus() string {
	cs := s.Carriers()
	names := make([]string, 0, len(cs))
	for name := range cs {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte('\n')
		}
		st := s.CarrierStats(name)
		fmt.Fprintf(&b, "%s originates=%d attempts=%d admitted=%d over_cps=%d over_channels=%d dead=%d nochannel=%d channels=%d",
			FormatCarrier(name, cs[name]), st.Originates, st.Attempts, st.Admitted, st.RejectedCPS,
			st.RejectedChannels, st.RejectedDead, st.NoChannel, st.Channels)
	}
	if len(names) == 0 {
		return "no carriers"
	}
	return b.String()
}

// actionCommand is manager.c's Command action for the simulator's only CLI
// commands, "amisim <Control line>", so that a simulator running in
// another process (simulate-ami) can be driven with any AMI client:
//
//	Action: Command
//	Command: amisim kill gw1 nochannel
//
// Other commands get Asterisk's answer for a command no module provides.
func (ss *session) actionCommand(m *message, id string) {
	cmd := strings.TrimSpace(m.get("Command"))
	resp, out := "Success", ""
	word, rest, _ := strings.Cut(cmd, " ")
	if !strings.EqualFold(word, "amisim") {
		resp, out = "Error", "No such command '"+cmd+"' (type 'core show help "+cmd+"' for other possible commands)"
	} else if res, err := ss.srv.Control(rest); err != nil {
		resp, out = "Error", err.Error()
	} else {
		out = res
	}
	b := appendResponse(nil, resp, id, "", "Command output follows", true)
	for _, line := range strings.Split(out, "\n") {
		b = appendHeader(b, "Output", strings.TrimRight(line, "\r"))
	}
	ss.send(append(b, '\r', '\n'))
}

// MaxInWindow returns the most times that fall in any window [t, t+w):
// what a shared limiter promises to bound (contract §7: ≤ cps + burst − 1
// in any 0.97 s). times may come in any order (hooks called from several
// goroutines append out of order); it sorts a copy.
func MaxInWindow(times []time.Time, w time.Duration) int {
	times = slices.SortedFunc(slices.Values(times), time.Time.Compare)
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
