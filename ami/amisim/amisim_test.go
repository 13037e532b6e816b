package amisim

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// amigo v0.1.11 leaks its connection reader goroutines after
		// Close: (*amiAdapter).reader (or its inner func1) blocks forever
		// sending the read error of the closed connection that nobody
		// receives any more. Not ours; seen without these ignores.
		goleak.IgnoreTopFunction("github.com/ivahaev/amigo.(*amiAdapter).reader.func1"),
		goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).reader"),
	)
}

func TestBannerAlone(t *testing.T) {
	srv := newServer(t, Config{})
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Like amigo: one Read of 100 bytes must return exactly the banner.
	buf := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failure only
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "Asterisk Call Manager/11.0.0\r\n" {
		t.Fatalf("banner %q", got)
	}
	// Nothing else (no blank line) follows.
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("unexpected bytes after banner: %q", buf[:n])
	}
}

func TestActionsBeforeLoginRefused(t *testing.T) {
	srv := newServer(t, Config{})
	c := dial(t, srv)
	c.send("Action", "Ping", "ActionID", "prelogin-ping")
	r := c.mustRead()
	want := "Response: Error\r\nActionID: prelogin-ping\r\nMessage: Permission denied\r\n\r\n"
	if r.raw != want {
		t.Fatalf("got %q want %q", r.raw, want)
	}
	c.send("Action", "Originate", "Channel", "Local/answer@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "prelogin-orig")
	r = c.mustRead()
	if r.get("Message") != "Permission denied" || r.get("ActionID") != "prelogin-orig" {
		t.Fatalf("got %s", r)
	}
	// Unknown actions are also refused before login, not "unknown".
	c.send("Action", "Bogus", "ActionID", "x")
	if r = c.mustRead(); r.get("Message") != "Permission denied" {
		t.Fatalf("got %s", r)
	}
	if n := srv.OriginateCount(); n != 0 {
		t.Fatalf("OriginateCount = %d", n)
	}
}

func TestBadLogin(t *testing.T) {
	srv := newServer(t, Config{AuthDelay: 150 * time.Millisecond})
	watcher := dial(t, srv)
	watcher.loginDrain()

	c := dial(t, srv)
	start := time.Now()
	c.send("Action", "Login", "Username", "dialbridge", "Secret", "wrong", "ActionID", "badlogin")
	r := c.mustRead()
	if el := time.Since(start); el < 140*time.Millisecond {
		t.Fatalf("answered after %v, want the auth delay", el)
	}
	want := "Response: Error\r\nActionID: badlogin\r\nMessage: Authentication failed\r\n\r\n"
	if r.raw != want {
		t.Fatalf("got %q", r.raw)
	}
	c.expectClosed()
	ev, _ := watcher.until(func(m amiMsg) bool { return m.event() == "InvalidPassword" })
	if ev.get("AccountID") != "dialbridge" || ev.get("Service") != "AMI" {
		t.Fatalf("security event %s", ev)
	}
	// Unknown user.
	c2 := dial(t, srv)
	c2.send("Action", "Login", "Username", "nobody", "Secret", "secret")
	if r := c2.mustRead(); r.get("Message") != "Authentication failed" || r.has("ActionID") {
		t.Fatalf("got %s", r)
	}
	c2.expectClosed()
	if st := srv.Stats(); st.FailedLogins != 2 || st.Logins != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLogin(t *testing.T) {
	srv := newServer(t, Config{Username: "bridge", Secret: "bridgesecret"})
	c := dial(t, srv)
	c.send("Action", "Login", "username", "BRIDGE", "SECRET", "bridgesecret", "ActionID", "login1", "AmigoConnID", "7")
	r := c.mustRead()
	if r.raw != "Response: Success\r\nActionID: login1\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Fatalf("got %q", r.raw)
	}
	fb := c.mustRead()
	if strings.Join(fb.keys, ",") != "Event,Privilege,Uptime,LastReload,Status" || fb.get("Event") != "FullyBooted" || fb.get("Status") != "Fully Booted" || fb.get("Privilege") != "system,all" {
		t.Fatalf("FullyBooted: %s", fb)
	}
	sa := c.mustRead()
	if sa.event() != "SuccessfulAuth" || sa.get("AccountID") != "BRIDGE" || !strings.HasPrefix(sa.get("RemoteAddress"), "IPV4/TCP/127.0.0.1/") {
		t.Fatalf("SuccessfulAuth: %s", sa)
	}
	c.send("Action", "Login", "Username", "bridge", "Secret", "bridgesecret", "ActionID", "again")
	if r := c.response("again"); r.get("Message") != "Already authenticated" {
		t.Fatalf("got %s", r)
	}
}

func TestChallengeLogin(t *testing.T) {
	srv := newServer(t, Config{})
	c := dial(t, srv)
	c.send("Action", "Challenge", "ActionID", "ch0")
	if r := c.mustRead(); r.get("Message") != "Must specify AuthType" {
		t.Fatalf("got %s", r)
	}
	c.send("Action", "Challenge", "AuthType", "md5", "ActionID", "ch1")
	r := c.mustRead()
	if strings.Join(r.keys, ",") != "Response,ActionID,Challenge" || r.get("Challenge") == "" {
		t.Fatalf("got %s", r)
	}
	sum := md5.Sum([]byte(r.get("Challenge") + "secret"))
	c.send("Action", "Login", "AuthType", "MD5", "Username", "dialbridge", "Key", hex.EncodeToString(sum[:]), "ActionID", "l")
	if r := c.mustRead(); r.get("Message") != "Authentication accepted" {
		t.Fatalf("got %s", r)
	}
	c2 := dial(t, srv)
	c2.send("Action", "Challenge", "AuthType", "MD5", "ActionID", "ch1")
	c2.mustRead()
	c2.send("Action", "Login", "AuthType", "MD5", "Username", "dialbridge", "Key", "00", "ActionID", "l")
	if r := c2.mustRead(); r.get("Message") != "Authentication failed" {
		t.Fatalf("got %s", r)
	}
	c2.expectClosed()
}

func TestPingUnknownLogoff(t *testing.T) {
	srv := newServer(t, Config{})
	c := dial(t, srv)
	c.login("off")
	c.send("Action", "Ping", "ActionID", "p1")
	r := c.mustRead()
	if strings.Join(r.keys, ",") != "Response,ActionID,Ping,Timestamp" || r.get("Ping") != "Pong" {
		t.Fatalf("ping: %s", r)
	}
	if !regexp.MustCompile(`^\d{10}\.\d{6}$`).MatchString(r.get("Timestamp")) {
		t.Fatalf("timestamp %q", r.get("Timestamp"))
	}
	c.send("Action", "ping") // action names are case-insensitive; no ActionID
	if r := c.mustRead(); r.has("ActionID") || r.get("Ping") != "Pong" {
		t.Fatalf("ping: %s", r)
	}
	c.send("Action", "FooBar", "ActionID", "u1")
	r = c.mustRead()
	if r.get("Response") != "Error" || !strings.HasPrefix(r.get("Message"), "Invalid/unknown command") || r.get("ActionID") != "u1" {
		t.Fatalf("unknown: %s", r)
	}
	c.send("ActionID", "noaction")
	if r := c.mustRead(); r.get("Message") != "Missing action in request" {
		t.Fatalf("got %s", r)
	}
	c.send("Action", "CoreSettings", "ActionID", "cs")
	r = c.mustRead()
	if r.get("AsteriskVersion") != "22.10.1" || r.get("AMIversion") != "11.0.0" || r.keys[1] != "ActionID" {
		t.Fatalf("CoreSettings: %s", r)
	}
	c.send("Action", "CoreStatus", "ActionID", "cst")
	if r := c.mustRead(); r.get("CoreCurrentCalls") != "0" || r.get("CoreStartupDate") == "" {
		t.Fatalf("CoreStatus: %s", r)
	}
	c.send("Action", "Logoff", "ActionID", "bye")
	r = c.mustRead()
	if r.raw != "Response: Goodbye\r\nActionID: bye\r\nMessage: Thanks for all the fish.\r\n\r\n" {
		t.Fatalf("logoff %q", r.raw)
	}
	c.expectClosed()
}

func TestEventsOffAndOn(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer}}})
	c := dial(t, srv)
	c.login("off")
	// Events off: no FullyBooted, no SuccessfulAuth, no call events.
	c.send("Action", "Originate", "Channel", "Local/1@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "o1")
	r := c.mustRead()
	if r.get("ActionID") != "o1" || r.get("Message") != "Originate successfully queued" {
		t.Fatalf("got %s", r)
	}
	c.expectNothing(150 * time.Millisecond)

	c.send("Action", "Events", "EventMask", "on", "ActionID", "e1")
	r = c.mustRead()
	if r.raw != "Response: Success\r\nActionID: e1\r\nEvents: On\r\n\r\n" {
		t.Fatalf("events on: %q", r.raw)
	}
	c.send("Action", "Originate", "Channel", "Local/2@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "o2")
	c.response("o2")
	tr := c.traceCall("o2", "Local/2@lab", 2)
	if tr.or.get("Reason") != "4" {
		t.Fatalf("OR %s", tr.or)
	}

	// "system" only: call events stay off.
	c.send("Action", "Events", "EventMask", "system", "ActionID", "e2")
	if r := c.response("e2"); r.get("Events") != "On" {
		t.Fatalf("got %s", r)
	}
	c.send("Action", "Originate", "Channel", "Local/3@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "o3")
	c.response("o3")
	c.expectNothing(150 * time.Millisecond)

	c.send("Action", "Events", "EventMask", "off", "ActionID", "e3")
	if r := c.response("e3"); r.get("Events") != "Off" {
		t.Fatalf("got %s", r)
	}
	c.send("Action", "Events", "ActionID", "e4")
	if r := c.response("e4"); r.get("Response") != "Error" || r.get("Message") != "Invalid event mask" {
		t.Fatalf("got %s", r)
	}
	// "call" via the Login header, on a second session.
	c2 := dial(t, srv)
	c2.login("call")
	c2.send("Action", "Originate", "Channel", "Local/4@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "o4")
	m, skipped := c2.until(func(m amiMsg) bool { return m.event() == "OriginateResponse" })
	if m.get("ActionID") != "o4" {
		t.Fatalf("got %s", m)
	}
	for _, s := range skipped {
		if s.event() == "FullyBooted" || s.event() == "SuccessfulAuth" {
			t.Fatalf("system/security event with mask call: %s", s)
		}
	}
}

var (
	orKeys     = "Event,Privilege,ActionID,Response,Channel,Context,Exten,Reason,Uniqueid,CallerIDNum,CallerIDName"
	chanKeys   = "Event,Privilege,Channel,ChannelState,ChannelStateDesc,CallerIDNum,CallerIDName,ConnectedLineNum,ConnectedLineName,Language,AccountCode,Context,Exten,Priority,Uniqueid,Linkedid"
	hangupKeys = chanKeys + ",Cause,Cause-txt"
)

func TestOutcomes(t *testing.T) {
	rules, err := ParseRules("suffix=01:answer,talk=50ms;suffix=02:answer,ring=40ms,talk=30ms;" +
		"suffix=03:busy;suffix=04:congestion,ring=30ms;suffix=05:noanswer;suffix=06:hangup,cause=21;" +
		"suffix=07:hangup,cause=1;suffix=08:failed;suffix=09:doesnotexist;suffix=10:busy,ring=5s")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{Rules: rules})
	type want struct {
		resp, reason   string
		states         string // Newstate sequence "leg:state"
		c1, c2         string // hangup causes of ;1 and ;2, "" = no hangups
		c1txt, c2txt   string
		order          string // transcript order
		minOR, maxOR   time.Duration
		successChannel bool
	}
	cases := []struct {
		num       string
		channelID string
		callerID  string
		want      want
	}{
		{"5511001", "cid-answer", `"Lab t1" <1000>`, want{"Success", "4", ";2:6 ;1:6", "16", "16", "Normal Clearing", "Normal Clearing",
			"Newchannel;1 Newchannel;2 Newstate;2 Newstate;1 OriginateResponse Hangup;2 Hangup;1", 0, 30 * time.Millisecond, true}},
		{"5511002", "", "", want{"Success", "4", ";1:5 ;1:6 ;2:6", "16", "16", "Normal Clearing", "Normal Clearing",
			"Newchannel;1 Newchannel;2 Newstate;1 Newstate;1 Newstate;2 OriginateResponse Hangup;2 Hangup;1", 40 * time.Millisecond, time.Second, true}},
		{"5511003", "cid-busy", "1000", want{"Failure", "5", ";2:7", "0", "17", "Unknown", "User busy",
			"Newchannel;1 Newchannel;2 Newstate;2 OriginateResponse Hangup;1 Hangup;2", 0, 30 * time.Millisecond, false}},
		{"5511004", "", "Jane Doe <5551234>", want{"Failure", "8", ";1:5 ;2:7", "0", "34", "Unknown", "Circuit/channel congestion",
			"Newchannel;1 Newchannel;2 Newstate;1 Newstate;2 Hangup;1 Hangup;2 OriginateResponse", 30 * time.Millisecond, time.Second, false}},
		{"5511005", "", "", want{"Failure", "3", ";1:5", "19", "19", "User alerting, no answer", "User alerting, no answer",
			"Newchannel;1 Newchannel;2 Newstate;1 OriginateResponse Hangup;1 Hangup;2", 200 * time.Millisecond, 2 * time.Second, false}},
		{"5511006", "cid-rej", "", want{"Failure", "0", "", "21", "21", "Call Rejected", "Call Rejected",
			"Newchannel;1 Newchannel;2 Hangup;2 OriginateResponse Hangup;1", 0, 30 * time.Millisecond, false}},
		{"5511007", "", "", want{"Failure", "0", "", "1", "1", "Unallocated (unassigned) number", "Unallocated (unassigned) number",
			"Newchannel;1 Newchannel;2 Hangup;2 OriginateResponse Hangup;1", 0, 30 * time.Millisecond, false}},
		{"5511008", "cid-failed", "", want{"Failure", "0", "", "", "", "", "",
			"OriginateResponse", 0, 30 * time.Millisecond, false}},
		{"5511009", "", "", want{"Failure", "0", "", "0", "0", "Unknown", "Unknown",
			"Newchannel;1 Newchannel;2 Hangup;2 Hangup;1 OriginateResponse", 0, 30 * time.Millisecond, false}},
		// Ringing longer than the Timeout: Asterisk reports a no answer.
		{"5511010", "", "", want{"Failure", "3", ";1:5", "19", "19", "User alerting, no answer", "User alerting, no answer",
			"Newchannel;1 Newchannel;2 Newstate;1 OriginateResponse Hangup;1 Hangup;2", 200 * time.Millisecond, 2 * time.Second, false}},
	}
	for _, tc := range cases {
		t.Run(tc.num, func(t *testing.T) {
			t.Parallel()
			c := dial(t, srv)
			c.loginDrain()
			dialStr := "PJSIP/" + tc.num + "@trunk"
			aid := "orig-" + tc.num
			h := []string{"Action", "Originate", "Channel", dialStr, "Context", "agents", "Exten", "s", "Priority", "1",
				"Timeout", "200", "Async", "true", "ActionID", aid, "Variable", "CAMPAIGN=c1,LEAD=9", "AmigoConnID", "3"}
			if tc.channelID != "" {
				h = append(h, "ChannelId", tc.channelID)
			}
			if tc.callerID != "" {
				h = append(h, "CallerID", tc.callerID)
			}
			start := time.Now()
			c.send(h...)
			r := c.response(aid)
			if r.raw != "Response: Success\r\nActionID: "+aid+"\r\nMessage: Originate successfully queued\r\n\r\n" {
				t.Fatalf("response %q", r.raw)
			}
			nh := 2
			if tc.want.c1 == "" {
				nh = 0
			}
			tr := c.traceCall(aid, dialStr, nh)
			el := time.Since(start)
			w := tc.want
			if got := tr.order(); got != w.order {
				t.Errorf("order:\n got %s\nwant %s", got, w.order)
			}
			or := tr.or
			if strings.Join(or.keys, ",") != orKeys {
				t.Errorf("OR headers %v", or.keys)
			}
			if or.get("Response") != w.resp || or.get("Reason") != w.reason || or.get("Privilege") != "call,all" ||
				or.get("Context") != "agents" || or.get("Exten") != "s" {
				t.Errorf("OR %s", or)
			}
			if el < w.minOR {
				t.Errorf("outcome after %v, want at least %v", el, w.minOR)
			}
			wantNum, wantName := "<unknown>", "<unknown>"
			switch tc.callerID {
			case `"Lab t1" <1000>`:
				wantNum, wantName = "1000", "Lab t1"
			case "1000":
				wantNum = "1000"
			case "Jane Doe <5551234>":
				wantNum, wantName = "5551234", "Jane Doe"
			}
			if or.get("CallerIDNum") != wantNum || or.get("CallerIDName") != wantName {
				t.Errorf("OR caller id %q %q", or.get("CallerIDNum"), or.get("CallerIDName"))
			}
			var ch1, uid1 string
			if len(tr.newchans) > 0 {
				if len(tr.newchans) != 2 {
					t.Fatalf("newchannels %d", len(tr.newchans))
				}
				n1, n2 := tr.newchans[0], tr.newchans[1]
				if strings.Join(n1.keys, ",") != chanKeys {
					t.Errorf("Newchannel headers %v", n1.keys)
				}
				ch1, uid1 = n1.get("Channel"), n1.get("Uniqueid")
				if !regexp.MustCompile(`^` + regexp.QuoteMeta(dialStr) + `-[0-9a-f]{8};1$`).MatchString(ch1) {
					t.Errorf("channel %q", ch1)
				}
				if n2.get("Channel") != strings.TrimSuffix(ch1, ";1")+";2" {
					t.Errorf("channel 2 %q", n2.get("Channel"))
				}
				if n1.get("ChannelState") != "0" || n1.get("ChannelStateDesc") != "Down" || n2.get("ChannelState") != "4" || n2.get("ChannelStateDesc") != "Ring" {
					t.Errorf("newchannel states %s / %s", n1, n2)
				}
				if n1.get("CallerIDNum") != "<unknown>" {
					t.Errorf("Newchannel caller id %s", n1)
				}
				if tc.channelID != "" {
					if uid1 != tc.channelID || n2.get("Uniqueid") != tc.channelID+";2" {
						t.Errorf("uniqueids %q %q", uid1, n2.get("Uniqueid"))
					}
				} else if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(uid1) {
					t.Errorf("generated uniqueid %q", uid1)
				}
				for _, m := range tr.all[1:] {
					if m.event() != "OriginateResponse" && m.get("Linkedid") != uid1 {
						t.Errorf("linkedid of %s", m)
					}
				}
			}
			if w.resp == "Success" {
				if or.get("Channel") != ch1 || or.get("Uniqueid") != uid1 {
					t.Errorf("success OR channel/uniqueid %s", or)
				}
			} else {
				wantUID := tc.channelID
				if wantUID == "" {
					wantUID = "<unknown>"
				}
				if or.get("Channel") != dialStr || or.get("Uniqueid") != wantUID {
					t.Errorf("failure OR channel/uniqueid %s", or)
				}
			}
			var states []string
			for _, s := range tr.states {
				ch := s.get("Channel")
				states = append(states, ch[strings.LastIndexByte(ch, ';'):]+":"+s.get("ChannelState"))
				if s.get("CallerIDNum") != wantNum {
					t.Errorf("Newstate caller id %s", s)
				}
			}
			if got := strings.Join(states, " "); got != w.states {
				t.Errorf("states %q want %q", got, w.states)
			}
			if w.c1 != "" {
				h1, h2 := tr.hangupOf(";1"), tr.hangupOf(";2")
				if strings.Join(h1.keys, ",") != hangupKeys {
					t.Errorf("Hangup headers %v", h1.keys)
				}
				if h1.get("Cause") != w.c1 || h1.get("Cause-txt") != w.c1txt || h2.get("Cause") != w.c2 || h2.get("Cause-txt") != w.c2txt {
					t.Errorf("hangups %s / %s", h1, h2)
				}
				if h1.get("Uniqueid") != uid1 {
					t.Errorf("hangup uniqueid %s", h1)
				}
				if w.resp == "Success" && (h1.get("Context") != "agents" || h1.get("ChannelStateDesc") != "Up") {
					t.Errorf("answered ;1 hangup %s", h1)
				}
			}
		})
	}
	t.Cleanup(func() {
		recs := srv.Originates()
		if len(recs) != len(cases) {
			t.Errorf("records %d", len(recs))
		}
		for _, r := range recs {
			if r.Variables["CAMPAIGN"] != "c1" || r.Variables["LEAD"] != "9" || r.Headers["AmigoConnID"] != "3" || !r.Async ||
				r.Timeout != 200*time.Millisecond || r.Priority != 1 || r.Context != "agents" || !strings.HasPrefix(r.Number, "55110") {
				t.Errorf("record %+v", r)
			}
		}
	})
}

func TestChannelIDsAndCallerID(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer, TalkFor: 10 * time.Millisecond}}})
	c := dial(t, srv)
	c.loginDrain()
	c.send("Action", "Originate", "Channel", "Local/answer@lab", "Context", "agents", "Exten", "s", "Priority", "1",
		"Async", "yes", "ActionID", "t13", "ChannelId", "lab-chan-0001", "OtherChannelId", "lab-chan-0002",
		"CallerID", `"Lab t13" <1000>`, "Account", "acct7")
	c.response("t13")
	tr := c.traceCall("t13", "Local/answer@lab", 2)
	n1, n2 := tr.newchans[0], tr.newchans[1]
	if n1.get("Uniqueid") != "lab-chan-0001" || n1.get("Linkedid") != "lab-chan-0001" ||
		n2.get("Uniqueid") != "lab-chan-0002" || n2.get("Linkedid") != "lab-chan-0001" {
		t.Fatalf("ids %s / %s", n1, n2)
	}
	if n1.get("Context") != "lab" || n1.get("Exten") != "answer" || n1.get("AccountCode") != "acct7" {
		t.Fatalf("newchannel %s", n1)
	}
	if tr.or.get("CallerIDNum") != "1000" || tr.or.get("CallerIDName") != "Lab t13" || tr.or.get("Uniqueid") != "lab-chan-0001" {
		t.Fatalf("OR %s", tr.or)
	}
}

func TestParseCallerID(t *testing.T) {
	for _, tc := range []struct{ in, num, name string }{
		{`"Lab t1" <1000>`, "1000", "Lab t1"},
		{`Multcall <1133334444>`, "1133334444", "Multcall"},
		{`<1000>`, "1000", ""},
		{`1000`, "1000", ""},
		{`+55 (11) 3333-4444`, "+551133334444", ""},
		{`Just A Name`, "", "Just A Name"},
		{`"1000"`, "", "1000"},
		{`"Quote \"x\"" <12>`, "12", `Quote "x"`},
		{``, "", ""},
	} {
		num, name := parseCallerID(tc.in)
		if num != tc.num || name != tc.name {
			t.Errorf("parseCallerID(%q) = %q, %q; want %q, %q", tc.in, num, name, tc.num, tc.name)
		}
	}
}

func TestOriginateErrors(t *testing.T) {
	srv := newServer(t, Config{})
	c := dial(t, srv)
	c.login("off")
	for _, tc := range []struct {
		headers []string
		msg     string
	}{
		{[]string{"Context", "agents", "Exten", "s", "Priority", "1", "Async", "true"}, "Channel not specified"},
		{[]string{"Channel", "Local/1@lab", "Priority", "x", "Async", "true"}, "Invalid priority"},
		{[]string{"Channel", "Local/1@lab", "Timeout", "soon", "Async", "true"}, "Invalid timeout"},
		{[]string{"Channel", "nochannel", "Async", "true"}, "Invalid channel"},
		{[]string{"Channel", "Local/1@lab", "Async", "true", "ChannelId", strings.Repeat("u", 150)}, "Uniqueid length exceeds maximum of 149"},
		{[]string{"Async", "true", "OtherChannelId", strings.Repeat("u", 150)}, "Uniqueid length exceeds maximum of 149"},
		{[]string{"Channel", "Local/1@lab", "Context", "agents", "Exten", "s"}, "Originate with 'Exten' requires 'Context' and 'Priority'"},
	} {
		h := append([]string{"Action", "Originate", "ActionID", "bad"}, tc.headers...)
		c.send(h...)
		r := c.mustRead()
		if r.raw != "Response: Error\r\nActionID: bad\r\nMessage: "+tc.msg+"\r\n\r\n" {
			t.Errorf("%v: got %q", tc.headers, r.raw)
		}
	}
	recs := srv.Originates()
	if len(recs) != 7 || recs[0].Outcome != OutcomeRefuse {
		t.Fatalf("records %+v", recs)
	}
	// AST_MAX_PUBLIC_UNIQUEID itself is allowed.
	c.send("Action", "Originate", "ActionID", "max", "Channel", "Local/1@lab", "Context", "agents", "Exten", "s",
		"Priority", "1", "Async", "true", "ChannelId", strings.Repeat("u", 149))
	if r := c.mustRead(); r.get("Response") != "Success" {
		t.Fatalf("149-byte ChannelId: %s", r)
	}
}

func TestUnknownTechnologyFails(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer}}})
	c := dial(t, srv)
	c.loginDrain()
	c.send("Action", "Originate", "Channel", "Foo/bar", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "t19",
		"CallerID", `"Lab t19" <1000>`)
	c.response("t19")
	or := c.mustRead()
	want := "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: t19\r\nResponse: Failure\r\nChannel: Foo/bar\r\nContext: agents\r\nExten: s\r\nReason: 0\r\nUniqueid: <unknown>\r\nCallerIDNum: 1000\r\nCallerIDName: Lab t19\r\n\r\n"
	if or.raw != want {
		t.Fatalf("got %q", or.raw)
	}
	c.expectNothing(100 * time.Millisecond)
	if recs := srv.Originates(); recs[0].Outcome != OutcomeFailed {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestBroadcastToSecondSession(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeBusy}}})
	orig := dial(t, srv)
	orig.login("off")
	listen1 := dial(t, srv)
	listen1.loginDrain()
	listen2 := dial(t, srv)
	listen2.loginDrain()
	listen1.until(func(m amiMsg) bool { return m.event() == "SuccessfulAuth" }) // listen2's login
	orig.send("Action", "Originate", "Channel", "PJSIP/777@trunk", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "from-orig")
	orig.response("from-orig")
	for _, l := range []*client{listen1, listen2} {
		tr := l.traceCall("from-orig", "PJSIP/777@trunk", 2)
		if tr.or.get("Reason") != "5" {
			t.Fatalf("OR %s", tr.or)
		}
	}
	orig.expectNothing(100 * time.Millisecond)
}

func TestRefuseSlowNoResponseDrop(t *testing.T) {
	rules, err := ParseRules("prefix=1:refuse;prefix=2:refuse,message=Originate failed: trunk down;" +
		"prefix=3:answer,delay=200ms;prefix=4:noresponse;prefix=5:noresponse,play;prefix=6:drop;prefix=7:drop,play")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{Rules: rules})
	listener := dial(t, srv)
	listener.loginDrain()
	orig := func(c *client, num, aid string) {
		c.send("Action", "Originate", "Channel", "PJSIP/"+num+"@trunk", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", aid)
	}
	c := dial(t, srv)
	c.login("off")

	orig(c, "100", "r1")
	if r := c.mustRead(); r.raw != "Response: Error\r\nActionID: r1\r\nMessage: Originate failed\r\n\r\n" {
		t.Fatalf("refuse %q", r.raw)
	}
	orig(c, "200", "r2")
	if r := c.mustRead(); r.get("Message") != "Originate failed: trunk down" {
		t.Fatalf("refuse %s", r)
	}

	// Slow response: the session answers nothing else meanwhile; others do.
	start := time.Now()
	orig(c, "300", "slow")
	c.send("Action", "Ping", "ActionID", "after-slow")
	listener.send("Action", "Ping", "ActionID", "other")
	listener.response("other")
	if el := time.Since(start); el > 150*time.Millisecond {
		t.Fatalf("another session waited %v", el)
	}
	r := c.mustRead()
	if r.get("ActionID") != "slow" || time.Since(start) < 190*time.Millisecond {
		t.Fatalf("slow response %s after %v", r, time.Since(start))
	}
	if r := c.mustRead(); r.get("ActionID") != "after-slow" {
		t.Fatalf("got %s", r)
	}
	listener.traceCall("slow", "PJSIP/300@trunk", 2)

	// No response: nothing, the session keeps serving.
	orig(c, "400", "nr1")
	c.send("Action", "Ping", "ActionID", "p")
	if r := c.mustRead(); r.get("ActionID") != "p" {
		t.Fatalf("got %s", r)
	}
	orig(c, "500", "nr2")
	tr := listener.traceCall("nr2", "PJSIP/500@trunk", 2) // played anyway
	if tr.or.get("Reason") != "4" {
		t.Fatalf("OR %s", tr.or)
	}
	c.send("Action", "Ping", "ActionID", "p2")
	if r := c.mustRead(); r.get("ActionID") != "p2" {
		t.Fatalf("got %s", r)
	}

	// Drop: the connection closes, with no response.
	orig(c, "600", "d1")
	c.expectClosed()
	c2 := dial(t, srv)
	c2.login("off")
	orig(c2, "700", "d2")
	c2.expectClosed()
	tr = listener.traceCall("d2", "PJSIP/700@trunk", 2)
	if tr.or.get("ActionID") != "d2" {
		t.Fatalf("OR %s", tr.or)
	}
	if n := srv.OriginateCount(); n != 7 {
		t.Fatalf("count %d", n)
	}
}

func TestSyncOriginate(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Suffix: "1", Outcome: OutcomeAnswer, RingFor: 100 * time.Millisecond, TalkFor: 10 * time.Millisecond}, {Suffix: "2", Outcome: OutcomeBusy, RingFor: 50 * time.Millisecond}}})
	c := dial(t, srv)
	c.loginDrain()
	start := time.Now()
	c.send("Action", "Originate", "Channel", "Local/1@lab", "Context", "agents", "Exten", "s", "Priority", "1", "ActionID", "s1")
	r := c.mustRead() // the Response comes first, the held events after it
	if r.get("ActionID") != "s1" || r.get("Response") != "Success" || r.get("Message") != "Originate successfully queued" {
		t.Fatalf("got %s", r)
	}
	if time.Since(start) < 90*time.Millisecond {
		t.Fatal("sync originate answered before the outcome")
	}
	m, _ := c.until(func(m amiMsg) bool { return m.event() == "Hangup" })
	if !strings.HasPrefix(m.get("Channel"), "Local/1@lab-") {
		t.Fatalf("got %s", m)
	}
	c.send("Action", "Originate", "Channel", "Local/2@lab", "Context", "agents", "Exten", "s", "Priority", "1", "ActionID", "s2")
	r = c.response("s2")
	if r.get("Response") != "Error" || r.get("Message") != "Originate failed" {
		t.Fatalf("got %s", r)
	}
	_, skipped := c.until(func(m amiMsg) bool { return m.event() == "Hangup" && strings.HasSuffix(m.get("Channel"), ";2") })
	for _, m := range skipped {
		if m.event() == "OriginateResponse" {
			t.Fatalf("sync originate produced %s", m)
		}
	}
}

func TestShuffleOrders(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeBusy}}, ShuffleSeed: 42})
	c := dial(t, srv)
	c.loginDrain()
	orders := map[string]int{}
	for i := 0; i < 40; i++ {
		aid := "sh" + strconv.Itoa(i)
		dialStr := "Local/" + strconv.Itoa(1000+i) + "@lab"
		c.send("Action", "Originate", "Channel", dialStr, "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", aid)
		c.response(aid)
		tr := c.traceCall(aid, dialStr, 2)
		if !strings.HasPrefix(tr.order(), "Newchannel;1 ") {
			t.Fatalf("OR before the ;1 channel: %s", tr.order())
		}
		orders[tr.order()]++
	}
	before, after := 0, 0
	for o, n := range orders {
		if strings.Index(o, "OriginateResponse") < strings.Index(o, "Hangup;1") {
			before += n
		} else {
			after += n
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("shuffle gave a single order: %v", orders)
	}
}

func TestDropConnections(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Outcome: OutcomeAnswer, TalkFor: -1}}})
	a, b := dial(t, srv), dial(t, srv)
	a.login("off")
	b.loginDrain()
	a.send("Action", "Originate", "Channel", "Local/1@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "o")
	a.response("o")
	// Like fast_originate's thread, the call starts beside the Response,
	// not before it.
	waitFor(t, "the call to start", 10*time.Second, func() bool { return srv.Stats().InFlight == 1 })
	srv.DropConnections()
	a.expectClosed()
	b.expectClosed()
	if st := srv.Stats(); st.Sessions != 0 || st.InFlight != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Clients reconnect; the call is still there.
	c := dial(t, srv)
	c.login("off")
	c.send("Action", "CoreShowChannels", "ActionID", "csc")
	r := c.mustRead()
	if r.raw != "Response: Success\r\nActionID: csc\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n" {
		t.Fatalf("got %q", r.raw)
	}
	var items []amiMsg
	for {
		m := c.mustRead()
		if m.event() == "CoreShowChannelsComplete" {
			if m.get("ListItems") != "2" || m.get("EventList") != "Complete" || m.get("ActionID") != "csc" {
				t.Fatalf("complete %s", m)
			}
			break
		}
		items = append(items, m)
	}
	if len(items) != 2 || items[0].keys[1] != "ActionID" || !strings.HasSuffix(items[0].get("Channel"), ";2") || items[1].get("Context") != "agents" {
		t.Fatalf("items %v", items)
	}
}

func TestStatusAndHangupAction(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{{Prefix: "1", Outcome: OutcomeAnswer, TalkFor: -1}, {Prefix: "2", Outcome: OutcomeNoAnswer}}})
	c := dial(t, srv)
	c.loginDrain()
	c.send("Action", "Originate", "Channel", "Local/100@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "a", "ChannelId", "forever-1")
	c.response("a")
	tr := c.traceCall("a", "Local/100@lab", 0)
	ch1 := tr.or.get("Channel")

	c.send("Action", "Status", "ActionID", "st")
	r := c.response("st")
	if r.get("EventList") != "start" || r.get("Message") != "Channel status will follow" {
		t.Fatalf("status %s", r)
	}
	var n int
	for {
		m := c.mustRead()
		if m.event() == "StatusComplete" {
			if m.get("ListItems") != "2" || m.get("Items") != "2" {
				t.Fatalf("complete %s", m)
			}
			break
		}
		if m.event() == "Status" {
			n++
			if m.get("ActionID") != "st" || m.keys[len(m.keys)-1] != "ActionID" || m.get("Type") != "Local" {
				t.Fatalf("status item %s", m)
			}
		}
	}
	c.send("Action", "Status", "Channel", "forever-1", "ActionID", "st1")
	c.response("st1")
	if m := c.mustRead(); m.get("Channel") != ch1 || m.get("ChannelStateDesc") != "Up" {
		t.Fatalf("status by uniqueid %s", m)
	}
	c.mustRead() // StatusComplete
	c.send("Action", "Status", "Channel", "Local/nope-00000000;1", "ActionID", "st2")
	if r := c.response("st2"); r.get("Message") != "No such channel" {
		t.Fatalf("got %s", r)
	}

	c.send("Action", "Hangup", "Channel", ch1, "Cause", "16", "ActionID", "h1")
	if r := c.response("h1"); r.get("Message") != "Channel Hungup" {
		t.Fatalf("hangup %s", r)
	}
	h1 := c.mustRead()
	h2 := c.mustRead()
	if h1.event() != "Hangup" || h1.get("Channel") != ch1 || h1.get("Cause") != "16" || h2.get("Cause-txt") != "Normal Clearing" {
		t.Fatalf("hangups %s / %s", h1, h2)
	}
	c.send("Action", "Hangup", "Channel", ch1, "ActionID", "h2")
	if r := c.response("h2"); r.get("Message") != "No such channel" {
		t.Fatalf("got %s", r)
	}

	// Regex hangup of a ringing call: OriginateResponse reason 1.
	c.send("Action", "Originate", "Channel", "Local/200@lab", "Context", "agents", "Exten", "s", "Priority", "1", "Async", "true", "ActionID", "b", "Timeout", "60000")
	c.response("b")
	c.until(func(m amiMsg) bool { return m.event() == "Newstate" })
	c.send("Action", "Hangup", "Channel", "/^Local/200@lab-.*;2$/", "Cause", "21", "ActionID", "h3")
	r = c.response("h3")
	if r.get("EventList") != "start" {
		t.Fatalf("got %s", r)
	}
	if m := c.mustRead(); m.event() != "ChannelHungup" || !strings.HasSuffix(m.get("Channel"), ";2") {
		t.Fatalf("got %s", m)
	}
	if m := c.mustRead(); m.event() != "ChannelsHungupListComplete" || m.get("ListItems") != "1" {
		t.Fatalf("got %s", m)
	}
	tr = c.traceCall("b", "Local/200@lab", 2)
	if tr.or.get("Reason") != "1" || tr.hangupOf(";2").get("Cause") != "21" {
		t.Fatalf("OR %s", tr.or)
	}
	if st := srv.Stats(); st.InFlight != 0 {
		t.Fatalf("in flight %d", st.InFlight)
	}
}

func TestWaitOriginates(t *testing.T) {
	srv, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv)
	c.login("off")
	done := make(chan error, 1)
	go func() { done <- srv.WaitOriginates(context.Background(), 3) }()
	for i := 0; i < 3; i++ {
		c.send("Action", "Originate", "Channel", "Local/1@lab", "Async", "true", "ActionID", strconv.Itoa(i))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitOriginates(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := srv.WaitOriginates(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	go func() { done <- srv.WaitOriginates(context.Background(), 10) }()
	time.Sleep(20 * time.Millisecond)
	srv.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("got %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSlowReaderDropped(t *testing.T) {
	t.Run("queue bound", func(t *testing.T) {
		testSlowReader(t, Config{MaxQueue: 2000, WriteTimeout: -1}, "outbound queue over 2000 messages")
	})
	t.Run("write timeout", func(t *testing.T) {
		testSlowReader(t, Config{MaxQueue: -1, WriteTimeout: 200 * time.Millisecond}, "write blocked longer than 200ms")
	})
}

func testSlowReader(t *testing.T, cfg Config, reason string) {
	var logMu sync.Mutex
	var dropLog []string
	cfg.Rules = []Rule{{Outcome: OutcomeBusy}}
	cfg.Logf = func(format string, args ...any) {
		if line := fmt.Sprintf(format, args...); strings.Contains(line, "dropped") {
			logMu.Lock()
			dropLog = append(dropLog, line)
			logMu.Unlock()
		}
	}
	srv := newServer(t, cfg)
	// The slow client: logs in with events on, then never reads again.
	slow, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "Action: Login\r\nUsername: dialbridge\r\nSecret: secret\r\n\r\n")

	fast := dial(t, srv)
	fast.login("off")
	go io.Copy(io.Discard, fast.conn) // the Responses
	listener := dial(t, srv)
	listener.loginDrain()
	// Flood in paced batches, so that the listener (a prompt reader) is
	// never more than a batch behind while the slow session falls further
	// behind at each batch. Every call makes 5 events of about 1 KB for
	// every listening session.
	const batch, maxCalls = 25, 20000
	account := strings.Repeat("a", 600)
	sent := 0
	deadline := time.Now().Add(15 * time.Second)
	for srv.Stats().SessionsDropped == 0 && sent < maxCalls && time.Now().Before(deadline) {
		var b strings.Builder
		for i := 0; i < batch; i++ {
			fmt.Fprintf(&b, "Action: Originate\r\nChannel: Local/%d@lab\r\nAsync: true\r\nActionID: f%d\r\nAccount: %s\r\n\r\n", sent+i, sent+i, account)
		}
		fast.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(fast.conn, b.String()); err != nil {
			t.Fatal(err)
		}
		sent += batch
		for seen := 0; seen < batch; {
			m, err := listener.read(5 * time.Second)
			if err != nil {
				t.Fatalf("listener after %d calls: %v (stats %+v)", sent, err, srv.Stats())
			}
			if m.event() == "OriginateResponse" {
				seen++
			}
		}
	}
	if st := srv.Stats(); st.SessionsDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	logMu.Lock()
	if len(dropLog) != 1 || !strings.Contains(dropLog[0], reason) {
		t.Errorf("drop log %q, want %q", dropLog, reason)
	}
	logMu.Unlock()
	// The others go on.
	listener.send("Action", "Ping", "ActionID", "still")
	listener.response("still")
	// The slow client's connection was closed by the server.
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, slow); err != nil && !isReset(err) {
		t.Fatalf("slow conn: %v after %d bytes", err, n)
	}
}

func TestConcurrentOriginates(t *testing.T) {
	rules, err := ParseRules("suffix=0:busy;suffix=1:congestion,ring=5ms;suffix=2:hangup,cause=21;suffix=3:noanswer;suffix=4:failed;suffix=5:doesnotexist;answer,ring=10ms,talk=20ms")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{Rules: rules, ShuffleSeed: 7})
	const conns, per = 4, 500
	clients := make([]*client, conns)
	for i := range clients {
		clients[i] = dial(t, srv)
		clients[i].loginDrain()
	}
	// Each client drains its own reads (every session sees every event).
	type result struct {
		responses map[string]int
		ors       map[string]int
		err       error
	}
	results := make(chan result, conns)
	for i, c := range clients {
		go func(i int, c *client) {
			res := result{responses: map[string]int{}, ors: map[string]int{}}
			for len(res.ors) < conns*per || len(res.responses) < per {
				m, err := c.read(10 * time.Second)
				if err != nil {
					res.err = err
					break
				}
				if m.event() == "OriginateResponse" {
					res.ors[m.get("ActionID")]++
				} else if m.has("Response") {
					res.responses[m.get("ActionID")]++
				}
			}
			results <- res
		}(i, c)
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func(i int, c *client) {
			defer wg.Done()
			var b strings.Builder
			for j := 0; j < per; j++ {
				fmt.Fprintf(&b, "Action: Originate\r\nActionID: c%d-%d\r\nChannel: PJSIP/55%d%03d@trunk\r\nContext: agents\r\nExten: s\r\nPriority: 1\r\nTimeout: 100\r\nAsync: true\r\nChannelId: id-%d-%d\r\n\r\n", i, j, i, j, i, j)
			}
			c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c.conn, b.String()); err != nil {
				t.Error(err)
			}
		}(i, c)
	}
	wg.Wait()
	for i := 0; i < conns; i++ {
		res := <-results
		if res.err != nil {
			t.Fatalf("reader: %v (responses %d, ORs %d, stats %+v)", res.err, len(res.responses), len(res.ors), srv.Stats())
		}
		if len(res.responses) != per {
			t.Fatalf("responses %d", len(res.responses))
		}
		for id, n := range res.responses {
			if n != 1 {
				t.Fatalf("%s answered %d times", id, n)
			}
		}
		if len(res.ors) != conns*per {
			t.Fatalf("ORs %d", len(res.ors))
		}
		for id, n := range res.ors {
			if n != 1 {
				t.Fatalf("%s: %d OriginateResponses", id, n)
			}
		}
	}
	if st := srv.Stats(); st.Originates != conns*per {
		t.Fatalf("stats %+v", st)
	}
}

func TestSetRulesAtRuntime(t *testing.T) {
	srv := newServer(t, Config{})
	c := dial(t, srv)
	c.loginDrain()
	call := func(aid string) amiMsg {
		c.send("Action", "Originate", "Channel", "Local/"+aid+"@lab", "Async", "true", "ActionID", aid)
		c.response(aid)
		m, _ := c.until(func(m amiMsg) bool { return m.event() == "OriginateResponse" && m.get("ActionID") == aid })
		return m
	}
	if m := call("1"); m.get("Reason") != "4" {
		t.Fatalf("got %s", m)
	}
	srv.SetRules([]Rule{{Outcome: OutcomeCongestion}, {Outcome: "bogus"}})
	if got := srv.Rules(); len(got) != 1 {
		t.Fatalf("rules %v", got)
	}
	if m := call("2"); m.get("Reason") != "8" {
		t.Fatalf("got %s", m)
	}
	if _, err := New(Config{Rules: []Rule{{Outcome: "bogus"}}}); err == nil {
		t.Fatal("New accepted a bad rule")
	}
}

func TestAuthTimeout(t *testing.T) {
	srv := newServer(t, Config{AuthTimeout: 100 * time.Millisecond})
	c := dial(t, srv)
	c.expectClosed()
	_ = srv
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		in   string
		want []Rule
		err  string
	}{
		{in: "", want: nil},
		{in: "suffix=1:busy;suffix=2:noanswer;prefix=999:refuse;suffix=3:answer,talk=2s;suffix=4:hangup,cause=21", want: []Rule{
			{Suffix: "1", Outcome: OutcomeBusy},
			{Suffix: "2", Outcome: OutcomeNoAnswer},
			{Prefix: "999", Outcome: OutcomeRefuse},
			{Suffix: "3", Outcome: OutcomeAnswer, TalkFor: 2 * time.Second},
			{Suffix: "4", Outcome: OutcomeHangup, Cause: 21},
		}},
		{in: " prefix=55,suffix=9 : congest , ring=1.5s ; answer,talk=forever ", want: []Rule{
			{Prefix: "55", Suffix: "9", Outcome: OutcomeCongestion, RingFor: 1500 * time.Millisecond},
			{Outcome: OutcomeAnswer, TalkFor: -1},
		}},
		{in: "*:noresponse,play,delay=250;any:drop,play=false", want: []Rule{
			{Outcome: OutcomeNoResponse, PlayCall: true, ResponseDelay: 250 * time.Millisecond},
			{Outcome: OutcomeDrop},
		}},
		{in: "refuse,message=Originate failed: no, really", want: []Rule{{Outcome: OutcomeRefuse, Message: "Originate failed: no, really"}}},
		{in: "Failed;DOESNOTEXIST;no_answer", want: []Rule{{Outcome: OutcomeFailed}, {Outcome: OutcomeDoesNotExist}, {Outcome: OutcomeNoAnswer}}},
		{in: "suffix=1:explode", err: `unknown outcome "explode"`},
		{in: "suffix=1", err: `missing ":"`},
		{in: "suffix=1:", err: "missing outcome"},
		{in: "middle=1:busy", err: "unknown outcome"},
		{in: "prefix=1,middle=2:busy", err: "bad match key"},
		{in: "prefix:busy", err: "unknown outcome"},
		{in: "prefix=1,suffix:busy", err: "bad match"},
		{in: "busy,ring=soon", err: "option ring"},
		{in: "busy,ring=-1s", err: "negative"},
		{in: "hangup,cause=300", err: "out of range"},
		{in: "hangup,cause=x", err: "option cause"},
		{in: "busy,colour=red", err: "unknown option"},
		{in: "drop,play=maybe", err: "option play"},
	}
	for _, tc := range tests {
		got, err := ParseRules(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRules(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || len(got) != len(tc.want) {
			t.Errorf("ParseRules(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		// FormatRules round-trips.
		again, err := ParseRules(FormatRules(got))
		if err != nil || fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", got) {
			t.Errorf("round trip of %q: %q → %+v, %v", tc.in, FormatRules(got), again, err)
		}
	}
	mix := DefaultMix()
	if err := ValidateRules(mix); err != nil {
		t.Fatal(err)
	}
	for digit, want := range map[string]Outcome{"0": OutcomeAnswer, "4": OutcomeAnswer, "5": OutcomeBusy, "6": OutcomeNoAnswer, "7": OutcomeCongestion, "8": OutcomeHangup, "9": OutcomeHangup} {
		if got := matchRule(mix, "551199999"+digit).Outcome; got != want {
			t.Errorf("DefaultMix %s: %s, want %s", digit, got, want)
		}
	}
	if r := matchRule(mix, "5511999998"); r.Cause != 21 {
		t.Errorf("8: %+v", r)
	}
	if r := matchRule(mix, "5511999999"); r.Cause != 1 {
		t.Errorf("9: %+v", r)
	}
	if again, err := ParseRules(FormatRules(mix)); err != nil || fmt.Sprint(again) != fmt.Sprint(mix) {
		t.Errorf("DefaultMix round trip: %v %v", again, err)
	}
}

func TestCauseText(t *testing.T) {
	for cause, want := range map[int]string{0: "Unknown", 1: "Unallocated (unassigned) number", 16: "Normal Clearing", 17: "User busy",
		18: "No user responding", 19: "User alerting, no answer", 21: "Call Rejected", 22: "Number changed", 28: "Invalid number format",
		34: "Circuit/channel congestion", 38: "Network out of order", 41: "Temporary failure", 4: "Unknown"} {
		if got := CauseText(cause); got != want {
			t.Errorf("CauseText(%d) = %q, want %q", cause, got, want)
		}
	}
}

// TestCoreShowChannelsLikeAsterisk22: a live call's channels as Asterisk
// 22's action_coreshowchannels lists them (main/manager.c; the transcript's
// "CoreShowChannels during a call"): the headers in its order, the
// ChannelId as the ;1 leg's Uniqueid and Linkedid and "<id>;2" for the other
// half, ChannelState 6 Up once answered and not before, and Duration
// counted from the channel's creation in whole seconds. Crash recovery
// adopts calls from this listing, to a session with events off.
func TestCoreShowChannelsLikeAsterisk22(t *testing.T) {
	srv := newServer(t, Config{Rules: []Rule{
		{Prefix: "1", Outcome: OutcomeAnswer, TalkFor: -1},
		{Prefix: "2", Outcome: OutcomeBusy, RingFor: time.Minute},
	}})
	c := dial(t, srv)
	c.login("off")
	for _, o := range [][2]string{{"100", "talking-1"}, {"200", "ringing-1"}} {
		c.send("Action", "Originate", "Channel", "Local/"+o[0]+"@lab", "Context", "agents", "Exten", "s", "Priority", "1",
			"Async", "true", "Timeout", "120000", "ActionID", "o-"+o[1], "ChannelId", o[1])
		c.response("o-" + o[1])
	}
	waitFor(t, "both calls started", 10*time.Second, func() bool { return srv.Stats().InFlight == 2 })
	list := func() map[string]amiMsg {
		c.send("Action", "CoreShowChannels", "ActionID", "csc")
		c.response("csc")
		items := map[string]amiMsg{}
		for {
			m := c.mustRead()
			if m.event() == "CoreShowChannelsComplete" {
				if m.get("ListItems") != strconv.Itoa(len(items)) {
					t.Fatalf("complete %s after %d items", m, len(items))
				}
				return items
			}
			items[m.get("Uniqueid")] = m
		}
	}
	var items map[string]amiMsg
	waitFor(t, "the answered call Up", 10*time.Second, func() bool {
		items = list()
		return items["talking-1"].get("ChannelState") == "6"
	})
	order := []string{"Event", "ActionID", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
		"ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority", "Uniqueid",
		"Linkedid", "Application", "ApplicationData", "Duration", "BridgeId"}
	for _, uid := range []string{"talking-1", "talking-1;2", "ringing-1", "ringing-1;2"} {
		m, ok := items[uid]
		if !ok {
			t.Fatalf("%s not listed: %v", uid, items)
		}
		if strings.Join(m.keys, ",") != strings.Join(order, ",") {
			t.Errorf("%s headers %v, want Asterisk's %v", uid, m.keys, order)
		}
		if base := strings.TrimSuffix(uid, ";2"); m.get("Linkedid") != base {
			t.Errorf("%s Linkedid %q, want %q", uid, m.get("Linkedid"), base)
		}
	}
	if m := items["talking-1"]; m.get("ChannelStateDesc") != "Up" || !strings.HasSuffix(m.get("Channel"), ";1") {
		t.Errorf("answered leg %s", m)
	}
	if m := items["ringing-1"]; m.get("ChannelState") == "6" {
		t.Errorf("ringing leg listed Up: %s", m)
	}
	if d := items["ringing-1"].get("Duration"); d != "00:00:00" && d != "00:00:01" {
		t.Errorf("Duration %q of a channel created a moment ago", d)
	}
	waitFor(t, "Duration to count a whole second", 10*time.Second, func() bool {
		items = list()
		return items["ringing-1"].get("Duration") == "00:00:01"
	})
}
