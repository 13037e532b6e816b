package amisim

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ivahaev/amigo"
)

// fakeClock is the carriers' injectable clock: CPS decisions depend on it
// only, never on how fast a loaded machine runs the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1796517298, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// pjCallTrace is what a listener saw of one carrier call: its
// OriginateResponse and the events of its channel (Uniqueid = ChannelId).
type pjCallTrace struct {
	or     amiMsg
	events []amiMsg // channel events in order, OriginateResponse included
}

func (tr pjCallTrace) names() string {
	var s []string
	for _, m := range tr.events {
		s = append(s, m.event())
	}
	return strings.Join(s, " ")
}

func (tr pjCallTrace) find(event string) amiMsg {
	for _, m := range tr.events {
		if m.event() == event {
			return m
		}
	}
	return amiMsg{}
}

// originatePJ sends an async Originate with ChannelId "uid-<aid>".
func (c *client) originatePJ(aid, channel string, extra ...string) {
	c.t.Helper()
	h := []string{"Action", "Originate", "ActionID", aid, "Channel", channel, "Context", "agents",
		"Exten", "s", "Priority", "1", "Async", "true", "ChannelId", "uid-" + aid}
	c.send(append(h, extra...)...)
}

// traceCalls reads until every one of aids has its OriginateResponse and,
// unless its channel never existed, its Hangup.
func (c *client) traceCalls(aids ...string) map[string]*pjCallTrace {
	c.t.Helper()
	return c.traceCallsOpt(false, aids...)
}

// traceCallsOpt is traceCalls; with upOK an answered call needs no Hangup.
func (c *client) traceCallsOpt(upOK bool, aids ...string) map[string]*pjCallTrace {
	c.t.Helper()
	out := map[string]*pjCallTrace{}
	byUID := map[string]*pjCallTrace{}
	for _, aid := range aids {
		tr := &pjCallTrace{}
		out[aid], byUID["uid-"+aid] = tr, tr
	}
	done := func() bool {
		for _, tr := range out {
			if tr.or.event() == "" {
				return false
			}
			if upOK && tr.or.get("Response") == "Success" {
				continue
			}
			if tr.find("Newchannel").event() != "" && tr.find("Hangup").event() == "" {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("tracing %v: %v", aids, err)
		}
		if m.event() == "OriginateResponse" {
			if tr := out[m.get("ActionID")]; tr != nil {
				tr.or = m
				tr.events = append(tr.events, m)
			}
			continue
		}
		if tr := byUID[m.get("Uniqueid")]; tr != nil && m.has("Event") {
			tr.events = append(tr.events, m)
		}
	}
	return out
}

var pjChanRE = regexp.MustCompile(`^PJSIP/gw-[0-9a-f]{8}$`)

// TestCarrierCallShapes checks each carrier answer against the events of
// pjsip-transcripts.txt: one channel, Reason 0 for every failure but a
// ring-out, the cause (and TechCause) on the Hangup.
func TestCarrierCallShapes(t *testing.T) {
	rules, err := ParseRules("suffix=1:answer,ring=20ms,talk=30ms;suffix=2:answer,talk=10ms,cause=16;" +
		"suffix=3:busy;suffix=4:hangup,cause=21;suffix=5:hangup,cause=1;suffix=6:congestion;" +
		"suffix=7:noanswer;suffix=8:busy,ring=10ms")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		events    string
		response  string
		reason    string
		cause     string
		causeTxt  string
		techCause string // "" = no TechCause header
		hangupReq string // Cause header of the HangupRequest, "-" for none
		state     string // ChannelStateDesc of the Hangup
	}
	cases := []struct {
		name, number string
		w            want
	}{
		{"answer, BYE without Reason (pj-answer-1)", "5551001", want{
			"Newchannel Newstate Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup",
			"Success", "4", "0", "Unknown", "", "-", "Up"}},
		{"answer, BYE with Q.850 16 (pj-answerq850-1)", "5551002", want{
			"Newchannel Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup",
			"Success", "4", "16", "Normal Clearing", "", "16", "Up"}},
		{"486 (pj-busy-1)", "5551003", want{
			"Newchannel HangupRequest OriginateResponse Hangup", "Failure", "0", "17", "User busy", "486", "17", "Down"}},
		{"603 (pj-decline-1)", "5551004", want{
			"Newchannel HangupRequest OriginateResponse Hangup", "Failure", "0", "21", "Call Rejected", "603", "21", "Down"}},
		{"404 (pj-notfound-1)", "5551005", want{
			"Newchannel HangupRequest OriginateResponse Hangup", "Failure", "0", "1", "Unallocated (unassigned) number", "404", "1", "Down"}},
		{"503 (pj-unavailable-1)", "5551006", want{
			"Newchannel HangupRequest OriginateResponse Hangup", "Failure", "0", "34", "Circuit/channel congestion", "503", "34", "Down"}},
		{"ring-out (pj-noanswer-1)", "5551007", want{
			"Newchannel Newstate Hangup OriginateResponse", "Failure", "3", "19", "User alerting, no answer", "480", "-", "Ringing"}},
		{"180 then 486", "5551008", want{
			"Newchannel Newstate HangupRequest OriginateResponse Hangup", "Failure", "0", "17", "User busy", "486", "17", "Ringing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, Config{Rules: rules, Carriers: map[string]Carrier{"gw": {}}})
			c := dial(t, srv)
			c.loginDrain()
			aid := "pj-" + tc.number
			dialStr := "PJSIP/" + tc.number + "@gw"
			c.originatePJ(aid, dialStr, "Timeout", "300")
			tr := c.traceCalls(aid)[aid]
			w := tc.w
			if got := tr.names(); got != w.events {
				t.Fatalf("events %q, want %q", got, w.events)
			}
			nc := tr.find("Newchannel")
			ch := nc.get("Channel")
			if !pjChanRE.MatchString(ch) || nc.get("Context") != "from-carrier" || nc.get("Exten") != "s" ||
				nc.get("ChannelStateDesc") != "Down" || nc.get("Linkedid") != "uid-"+aid {
				t.Fatalf("Newchannel %s", nc)
			}
			or := tr.or
			if or.get("Response") != w.response || or.get("Reason") != w.reason || or.get("Uniqueid") != "uid-"+aid {
				t.Fatalf("OriginateResponse %s", or)
			}
			if wantCh := map[bool]string{true: ch, false: dialStr}[w.response == "Success"]; or.get("Channel") != wantCh {
				t.Fatalf("OriginateResponse Channel %q, want %q", or.get("Channel"), wantCh)
			}
			h := tr.find("Hangup")
			if h.get("Channel") != ch || h.get("Cause") != w.cause || h.get("Cause-txt") != w.causeTxt ||
				h.get("TechCause") != w.techCause || h.has("TechCause") != (w.techCause != "") || h.get("ChannelStateDesc") != w.state {
				t.Fatalf("Hangup %s", h)
			}
			if hr := tr.find("HangupRequest"); hr.event() != "" {
				if got := map[bool]string{true: hr.get("Cause"), false: "-"}[hr.has("Cause")]; got != w.hangupReq {
					t.Fatalf("HangupRequest Cause %q, want %q: %s", got, w.hangupReq, hr)
				}
			}
			if sh := tr.find("SoftHangupRequest"); sh.event() != "" && sh.get("Cause") != "16" {
				t.Fatalf("SoftHangupRequest %s", sh)
			}
			for _, m := range tr.events {
				if strings.Contains(m.get("Channel"), ";") {
					t.Fatalf("a Local-style leg on a carrier call: %s", m)
				}
			}
			waitFor(t, "the channel to be released", 10*time.Second, func() bool {
				return srv.CarrierStats("gw").Channels == 0 && srv.Stats().InFlight == 0
			})
		})
	}
}

// burst originates one call per aid at once and returns each one's
// Reason and Hangup cause ("" when no channel).
func burst(t *testing.T, c *client, channel string, aids ...string) map[string]string {
	t.Helper()
	return burstOpt(t, c, false, channel, aids...)
}

// burstOpt is burst; with upOK answered calls may still be up.
func burstOpt(t *testing.T, c *client, upOK bool, channel string, aids ...string) map[string]string {
	t.Helper()
	for _, aid := range aids {
		c.originatePJ(aid, channel)
	}
	got := map[string]string{}
	for aid, tr := range c.traceCallsOpt(upOK, aids...) {
		got[aid] = tr.or.get("Reason") + "/" + tr.find("Hangup").get("Cause")
		if tr.or.get("Reason") == "0" {
			if want := "Newchannel HangupRequest OriginateResponse Hangup"; tr.names() != want ||
				tr.find("Hangup").get("TechCause") != "503" || tr.find("HangupRequest").get("TechCause") != "503" {
				t.Fatalf("%s: rejected call %q, want %q with TechCause 503", aid, tr.names(), want)
			}
		}
	}
	return got
}

func countValues(m map[string]string) map[string]int {
	n := map[string]int{}
	for _, v := range m {
		n[v]++
	}
	return n
}

func TestCarrierCPS(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, Config{
		Rules:    []Rule{{Outcome: OutcomeAnswer}},
		Carriers: map[string]Carrier{"gw": {CPS: 3}},
		Clock:    clk.Now,
	})
	c := dial(t, srv)
	c.loginDrain()
	aids := func(prefix string, n int) []string {
		var a []string
		for i := range n {
			a = append(a, fmt.Sprintf("%s-%d", prefix, i))
		}
		return a
	}
	steps := []struct {
		advance  time.Duration
		n        int
		admitted int
	}{
		{0, 8, 3},                      // a burst: 3 through, 5 answered 503
		{500 * time.Millisecond, 2, 0}, // the same second: still full
		{501 * time.Millisecond, 4, 3}, // the first three aged out
		{999 * time.Millisecond, 1, 0}, // those three are 999 ms old
		{2 * time.Millisecond, 3, 3},   // and now they are gone
	}
	var total, admitted int
	var want []time.Time
	for i, st := range steps {
		clk.Advance(st.advance)
		got := countValues(burst(t, c, "PJSIP/5551001@gw", aids(fmt.Sprintf("s%d", i), st.n)...))
		if got["4/0"] != st.admitted || got["0/34"] != st.n-st.admitted {
			t.Fatalf("step %d: outcomes %v, want %d answered and %d × Reason 0 cause 34", i, got, st.admitted, st.n-st.admitted)
		}
		total += st.n
		admitted += st.admitted
		for range st.n {
			want = append(want, clk.Now())
		}
	}
	stats := srv.CarrierStats("gw")
	if stats.Originates != int64(total) || stats.Attempts != int64(total) || stats.Admitted != int64(admitted) ||
		stats.RejectedCPS != int64(total-admitted) || stats.RejectedChannels != 0 || stats.RejectedDead != 0 {
		t.Fatalf("stats %+v (total %d, admitted %d)", stats, total, admitted)
	}
	times := srv.OriginateTimes("gw")
	if len(times) != len(want) {
		t.Fatalf("%d arrival times, want %d", len(times), len(want))
	}
	for i := range times {
		if !times[i].Equal(want[i]) {
			t.Fatalf("arrival %d at %v, want %v", i, times[i], want[i])
		}
	}
	if srv.OriginateTimes("other") != nil {
		t.Fatal("arrival times for a trunk without carrier")
	}
}

func TestCarrierMaxChannels(t *testing.T) {
	srv := newServer(t, Config{
		Rules:    []Rule{{Outcome: OutcomeAnswer, TalkFor: -1}},
		Carriers: map[string]Carrier{"gw": {MaxChannels: 2}},
	})
	c := dial(t, srv)
	c.loginDrain()
	got := countValues(burstOpt(t, c, true, "PJSIP/5551001@gw", "m1", "m2", "m3"))
	if got["4/"] != 2 || got["0/34"] != 1 {
		t.Fatalf("outcomes %v, want 2 answered (still up) and one Reason 0 cause 34", got)
	}
	if st := srv.CarrierStats("gw"); st.Channels != 2 || st.MaxChannelsSeen != 2 || st.RejectedChannels != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Only the carrier's channel exists: CoreShowChannels lists two.
	c.send("Action", "CoreShowChannels", "ActionID", "csc")
	done, items := c.until(func(m amiMsg) bool { return m.event() == "CoreShowChannelsComplete" })
	if done.get("ListItems") != "2" {
		t.Fatalf("CoreShowChannels: %s", done)
	}
	var name string
	for _, m := range items {
		if m.event() == "CoreShowChannel" {
			name = m.get("Channel")
			if !pjChanRE.MatchString(name) {
				t.Fatalf("channel %q", name)
			}
		}
	}
	c.send("Action", "Status", "ActionID", "st", "Channel", name)
	stEv, _ := c.until(func(m amiMsg) bool { return m.event() == "Status" })
	if stEv.get("Type") != "PJSIP" || stEv.get("Channel") != name || stEv.get("ChannelStateDesc") != "Up" {
		t.Fatalf("Status %s", stEv)
	}
	c.until(func(m amiMsg) bool { return m.event() == "StatusComplete" })
	c.send("Action", "Hangup", "ActionID", "hup", "Channel", name)
	h, _ := c.until(func(m amiMsg) bool { return m.event() == "Hangup" && m.get("Channel") == name })
	if h.get("Cause") != "16" {
		t.Fatalf("Hangup by AMI %s", h)
	}
	waitFor(t, "a channel back", 10*time.Second, func() bool { return srv.CarrierStats("gw").Channels == 1 })
	if got := countValues(burstOpt(t, c, true, "PJSIP/5551001@gw", "m4", "m5")); got["4/"] != 1 || got["0/34"] != 1 {
		t.Fatalf("after a hangup: %v", got)
	}
}

// TestCarrierDeadModesAndFlip kills and revives a trunk at run time, with
// the Go API and the text control, while a second trunk carries on.
func TestCarrierDeadModesAndFlip(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, Config{
		Rules: []Rule{{Outcome: OutcomeAnswer}},
		Clock: clk.Now,
	})
	for trunk, spec := range map[string]string{"gw": "carrier=gw:cps=1", "gw2": "carrier=gw2:cps=1"} {
		if _, err := srv.Control(spec); err != nil {
			t.Fatalf("%s: %v", trunk, err)
		}
	}
	c := dial(t, srv)
	c.loginDrain()
	n := 0
	one := func(trunk string) pjCallTrace {
		t.Helper()
		n++
		clk.Advance(2 * time.Second) // never the CPS limit here
		aid := fmt.Sprintf("f%d", n)
		c.originatePJ(aid, "PJSIP/5551001@"+trunk)
		return *c.traceCalls(aid)[aid]
	}
	type step struct {
		name   string
		flip   func() error
		trunk  string
		events string
		reason string
	}
	ctl := func(line string) func() error {
		return func() error { _, err := srv.Control(line); return err }
	}
	steps := []step{
		{"alive", nil, "gw", "Newchannel Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup", "4"},
		{"KillTrunk congestion", func() error { return srv.KillTrunk("gw", "") }, "gw",
			"Newchannel HangupRequest OriginateResponse Hangup", "0"},
		{"other trunk unaffected", nil, "gw2", "Newchannel Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup", "4"},
		{"kill nochannel (text)", ctl("kill gw nochannel"), "gw", "OriginateResponse", "0"},
		{"revive (text)", ctl("revive gw"), "gw", "Newchannel Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup", "4"},
		{"dead=congestion (text)", ctl("carrier=gw:cps=1,dead=congestion"), "gw", "Newchannel HangupRequest OriginateResponse Hangup", "0"},
		{"ReviveTrunk", func() error {
			if !srv.ReviveTrunk("gw") {
				return fmt.Errorf("no carrier")
			}
			return nil
		}, "gw", "Newchannel Newstate OriginateResponse HangupRequest SoftHangupRequest Hangup", "4"},
	}
	for _, st := range steps {
		if st.flip != nil {
			if err := st.flip(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		tr := one(st.trunk)
		if tr.names() != st.events || tr.or.get("Reason") != st.reason {
			t.Fatalf("%s: %q Reason %s, want %q Reason %s", st.name, tr.names(), tr.or.get("Reason"), st.events, st.reason)
		}
		if st.reason == "0" {
			if tr.or.get("Channel") != "PJSIP/5551001@"+st.trunk || tr.or.get("Response") != "Failure" {
				t.Fatalf("%s: %s", st.name, tr.or)
			}
			if h := tr.find("Hangup"); h.event() != "" && (h.get("Cause") != "34" || h.get("TechCause") != "503") {
				t.Fatalf("%s: %s", st.name, h)
			}
		}
	}
	gw, gw2 := srv.CarrierStats("gw"), srv.CarrierStats("gw2")
	if gw.Originates != 6 || gw.Attempts != 5 || gw.Admitted != 3 || gw.RejectedDead != 2 || gw.NoChannel != 1 || gw.RejectedCPS != 0 {
		t.Fatalf("gw stats %+v", gw)
	}
	if gw2.Originates != 1 || gw2.Admitted != 1 {
		t.Fatalf("gw2 stats %+v", gw2)
	}
	if s, err := srv.Control("carriers"); err != nil || !strings.Contains(s, "carrier=gw:cps=1 originates=6") {
		t.Fatalf("carriers: %q %v", s, err)
	}
}

// TestCarrierTrunksIndependent: a full trunk does not slow another.
func TestCarrierTrunksIndependent(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, Config{
		Rules:    []Rule{{Outcome: OutcomeAnswer}},
		Carriers: map[string]Carrier{"a": {CPS: 2}, "b": {CPS: 2}, TrunkAny: {CPS: 1}},
		Clock:    clk.Now,
	})
	c := dial(t, srv)
	c.loginDrain()
	ga := countValues(burst(t, c, "PJSIP/5551001@a", "a1", "a2", "a3", "a4"))
	gb := countValues(burst(t, c, "PJSIP/5551001@b", "b1", "b2", "b3"))
	gx := countValues(burst(t, c, "PJSIP/5551001@x", "x1", "x2"))
	gy := countValues(burst(t, c, "PJSIP/y", "y1")) // TrunkAny: one limit for every other endpoint
	if ga["4/0"] != 2 || gb["4/0"] != 2 || gx["4/0"] != 1 || gy["0/34"] != 1 {
		t.Fatalf("a %v b %v x %v y %v", ga, gb, gx, gy)
	}
	if a, b, any := srv.CarrierStats("a"), srv.CarrierStats("b"), srv.CarrierStats(TrunkAny); a.RejectedCPS != 2 ||
		b.RejectedCPS != 1 || any.Originates != 3 || any.RejectedCPS != 2 {
		t.Fatalf("a %+v b %+v any %+v", a, b, any)
	}
	// Match: a Local channel the dialplan sends out through trunk m.
	if err := srv.SetCarrier("m", Carrier{Match: "@out", Dead: DeadCongestion}); err != nil {
		t.Fatal(err)
	}
	c.originatePJ("lm", "Local/5551001@out")
	if tr := c.traceCalls("lm")["lm"]; tr.or.get("Reason") != "0" || !strings.HasPrefix(tr.find("Hangup").get("Channel"), "PJSIP/m-") ||
		tr.find("Hangup").get("Cause") != "34" || srv.CarrierStats("m").RejectedDead != 1 {
		t.Fatalf("match: %q %s", tr.names(), tr.find("Hangup"))
	}
	// Without a carrier a PJSIP channel is still played as before.
	srv.RemoveCarrier(TrunkAny)
	c.send("Action", "Originate", "ActionID", "z", "Channel", "PJSIP/1@z", "Context", "agents", "Exten", "s",
		"Priority", "1", "Async", "true")
	tr := c.traceCall("z", "PJSIP/1@z", 2)
	if tr.or.get("Reason") != "4" || len(tr.newchans) != 2 {
		t.Fatalf("no carrier: %s", tr.order())
	}
}

func TestCarrierSyncOriginate(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer}}, Carriers: map[string]Carrier{"gw": {Dead: DeadCongestion}}})
	c := dial(t, srv)
	c.loginDrain()
	c.send("Action", "Originate", "ActionID", "sync", "Channel", "PJSIP/1@gw", "Context", "agents", "Exten", "s", "Priority", "1")
	r := c.response("sync")
	if r.get("Response") != "Error" || r.get("Message") != "Originate failed" {
		t.Fatalf("sync: %s", r)
	}
	h, _ := c.until(func(m amiMsg) bool { return m.event() == "Hangup" })
	if h.get("Cause") != "34" {
		t.Fatalf("%s", h)
	}
}

// TestCarrierAmigo: the real client sees a rejected and an admitted call.
func TestCarrierAmigo(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, Config{Username: "bridge", Secret: "bridgesecret", Clock: clk.Now,
		Rules: []Rule{{Outcome: OutcomeAnswer, TalkFor: 10 * time.Millisecond}}, Carriers: map[string]Carrier{"gw": {CPS: 1}}})
	a := amigo.New(&amigo.Settings{Username: "bridge", Password: "bridgesecret", Host: srv.Host(),
		Port: strconv.Itoa(srv.Port()), ReconnectInterval: 50 * time.Millisecond})
	ors := make(chan map[string]string, 16)
	hangups := make(chan map[string]string, 16)
	for ev, ch := range map[string]chan map[string]string{"OriginateResponse": ors, "Hangup": hangups} {
		if err := a.RegisterHandler(ev, func(m map[string]string) {
			select {
			case ch <- m:
			default:
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	a.Connect()
	defer a.Close()
	waitFor(t, "amigo connected", 10*time.Second, a.Connected)
	for _, tc := range []struct{ aid, reason, cause string }{{"ok", "4", "0"}, {"over", "0", "34"}} {
		res, err := a.Action(map[string]string{"Action": "Originate", "ActionID": tc.aid, "Channel": "PJSIP/5551001@gw",
			"Context": "agents", "Exten": "s", "Priority": "1", "Async": "true", "ChannelId": "uid-" + tc.aid})
		if err != nil || res["Response"] != "Success" {
			t.Fatalf("originate: %v %v", res, err)
		}
		select {
		case or := <-ors:
			if or["ActionID"] != tc.aid || or["Reason"] != tc.reason {
				t.Fatalf("OriginateResponse %v", or)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no OriginateResponse")
		}
		select {
		case h := <-hangups:
			if h["Uniqueid"] != "uid-"+tc.aid || h["Cause"] != tc.cause {
				t.Fatalf("Hangup %v", h)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no Hangup")
		}
	}
}

func TestParseCarriers(t *testing.T) {
	spec := "carrier=gw1:cps=4,max=10;suffix=5:busy;carrier=gw2:dead=nochannel;carrier=*:cps=2,window=2s,context=pstn,bye=16,match=@out;answer,talk=2s"
	cs, err := ParseCarriers(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Carrier{
		"gw1": {CPS: 4, MaxChannels: 10},
		"gw2": {Dead: DeadNoChannel},
		"*":   {CPS: 2, Window: 2 * time.Second, Context: "pstn", ByeCause: 16, Match: "@out"},
	}
	if len(cs) != len(want) {
		t.Fatalf("%+v", cs)
	}
	for name, c := range want {
		if cs[name] != c {
			t.Fatalf("%s: %+v, want %+v", name, cs[name], c)
		}
		back, err := ParseCarriers(FormatCarrier(name, c))
		if err != nil || back[name] != c {
			t.Fatalf("round trip %s: %+v %v", FormatCarrier(name, c), back, err)
		}
	}
	rules, err := ParseRules(spec)
	if err != nil || len(rules) != 2 || rules[0].Outcome != OutcomeBusy {
		t.Fatalf("ParseRules with carriers: %v %v", rules, err)
	}
	for _, bad := range []string{"carrier=", "carrier=gw:cps=-1", "carrier=gw:dead=maybe", "carrier=gw:foo=1", "carrier=gw:bye=200", "carrier=gw:cps=x"} {
		if _, err := ParseCarriers(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := New(Config{Carriers: map[string]Carrier{"gw": {CPS: -1}}}); err == nil {
		t.Error("New accepted a negative cps")
	}
	for _, tc := range []struct{ channel, ep string }{
		{"PJSIP/5551001@trunk-a", "trunk-a"}, {"PJSIP/trunk-b/sip:5551001@carrier.example", "trunk-b"},
		{"pjsip/trunk-c", "trunk-c"}, {"Local/5551001@trunk-a", ""}, {"SIP/x@y", ""},
	} {
		if got := endpointOf(tc.channel); got != tc.ep {
			t.Errorf("endpointOf(%q) = %q, want %q", tc.channel, got, tc.ep)
		}
	}
}

func TestCarrierCommandAction(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer}}})
	c := dial(t, srv)
	c.loginDrain()
	for _, tc := range []struct{ cmd, resp, out string }{
		{"amisim carrier=gw:cps=4,max=10", "Success", "carrier=gw:cps=4,max=10"},
		{"amisim kill gw nochannel", "Success", "trunk gw dead (nochannel)"},
		{"amisim carriers", "Success", "carrier=gw:cps=4,max=10,dead=nochannel originates=0"},
		{"amisim revive gw", "Success", "trunk gw alive"},
		{"amisim revive nosuch", "Error", `revive: no carrier on trunk "nosuch"`},
		{"amisim kill gw maybe", "Error", "kill: unknown mode"},
		{"core show version", "Error", "No such command 'core show version'"},
	} {
		c.send("Action", "Command", "ActionID", "cmd", "Command", tc.cmd)
		r := c.response("cmd")
		if r.get("Response") != tc.resp || r.get("Message") != "Command output follows" || !strings.HasPrefix(r.get("Output"), tc.out) {
			t.Fatalf("%q: %s", tc.cmd, r)
		}
	}
	if cr, ok := srv.Carrier("gw"); !ok || cr != (Carrier{CPS: 4, MaxChannels: 10}) {
		t.Fatalf("carrier %+v %v", cr, ok)
	}
}

func TestMaxInWindow(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	for _, tc := range []struct {
		ms   []int
		want int
	}{
		{nil, 0}, {[]int{0}, 1}, {[]int{0, 999, 1000, 1001}, 3}, {[]int{0, 250, 500, 750, 1000, 1250}, 4},
		{[]int{0, 0, 0, 2000}, 3},
		// Out of order, as hooks on several goroutines append them: the
		// window [200, 1200) holds 200..1000, five, not the 0 after 200.
		{[]int{200, 0, 0, 400, 600, 800, 1000}, 6},
		{[]int{1000, 800, 600, 400, 200, 0}, 5},
	} {
		if got := MaxInWindow(at(tc.ms...), time.Second); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.ms, got, tc.want)
		}
	}
}

// TestCarrierConcurrentSessions: Originates from several connections at
// once never get more calls through than the carrier's CPS, and every
// Originate is counted and timed.
func TestCarrierConcurrentSessions(t *testing.T) {
	clk := newFakeClock()
	const cps, sessions, each = 5, 4, 6
	srv := newServer(t, Config{
		Rules:    []Rule{{Outcome: OutcomeAnswer}},
		Carriers: map[string]Carrier{"gw": {CPS: cps}},
		Clock:    clk.Now,
	})
	listener := dial(t, srv)
	listener.loginDrain()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	var aids []string
	for s := range sessions {
		var mine []string
		for i := range each {
			mine = append(mine, fmt.Sprintf("c%d-%d", s, i))
		}
		aids = append(aids, mine...)
		c := dial(t, srv)
		c.login("off")
		wg.Add(1)
		go func() { // no t.Fatal off the test goroutine: errors go back
			defer wg.Done()
			var b strings.Builder
			for _, aid := range mine {
				fmt.Fprintf(&b, "Action: Originate\r\nActionID: %s\r\nChannel: PJSIP/5551001@gw\r\nContext: agents\r\n"+
					"Exten: s\r\nPriority: 1\r\nAsync: true\r\nChannelId: uid-%s\r\n\r\n", aid, aid)
			}
			c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err := io.WriteString(c.conn, b.String())
			errs <- err
		}()
	}
	wg.Wait()
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, tr := range listener.traceCalls(aids...) {
		got[tr.or.get("Reason")+"/"+tr.find("Hangup").get("Cause")]++
	}
	if got["4/0"] != cps || got["0/34"] != sessions*each-cps {
		t.Fatalf("outcomes %v", got)
	}
	st := srv.CarrierStats("gw")
	if st.Originates != sessions*each || st.Admitted != cps || st.RejectedCPS != sessions*each-cps {
		t.Fatalf("stats %+v", st)
	}
	times := srv.OriginateTimes("gw")
	if n := MaxInWindow(times, time.Second); n != sessions*each {
		t.Fatalf("MaxInWindow %d", n)
	}
	// In order although the sessions' Originates raced (tests take
	// times[0] for the first and the last for the end of a run).
	for i := 1; i < len(times); i++ {
		if times[i].Before(times[i-1]) {
			t.Fatalf("OriginateTimes out of order at %d: %s before %s", i, times[i], times[i-1])
		}
	}
	for _, r := range srv.Originates() {
		if r.Trunk != "gw" {
			t.Fatalf("record trunk %q", r.Trunk)
		}
	}
}

// TestCarrierShuffle: with ShuffleSeed the OriginateResponse of a carrier
// call moves among its channel events, never before its Newchannel.
func TestCarrierShuffle(t *testing.T) {
	srv := newServer(t, Config{ShuffleSeed: 7, Rules: []Rule{{Outcome: OutcomeBusy}}, Carriers: map[string]Carrier{"gw": {}}})
	c := dial(t, srv)
	c.loginDrain()
	var aids []string
	for i := range 20 {
		aids = append(aids, fmt.Sprintf("sh%d", i))
		c.originatePJ(aids[i], "PJSIP/5551001@gw")
	}
	orders := map[string]bool{}
	for aid, tr := range c.traceCalls(aids...) {
		names := tr.names()
		orders[names] = true
		if !strings.HasPrefix(names, "Newchannel ") || len(tr.events) != 4 {
			t.Fatalf("%s: %q", aid, names)
		}
	}
	if len(orders) < 2 {
		t.Fatalf("one order only: %v", orders)
	}
}
