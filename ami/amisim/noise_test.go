package amisim

import (
	"strings"
	"testing"
	"time"
)

// The filter the docs recommend (manager.conf eventfilter): the four event
// types dialbridge routes, nothing else.
const fourEvents = `Event: (OriginateResponse|Newchannel|Newstate|Hangup)[[:space:]]`

// eventsOfCall originates an answered call (talk 20 ms) and returns the
// events that mention it, "Name;leg" for channel events, until 300 ms pass
// without any.
func eventsOfCall(t *testing.T, srv *Server, num string) []string {
	t.Helper()
	c := dial(t, srv)
	c.login("")
	dialStr := "Local/" + num + "@lab"
	c.send("Action", "Originate", "Channel", dialStr, "Context", "agents", "Exten", "s",
		"Timeout", "2000", "Async", "true", "ActionID", "a-"+num, "CallerID", `"Lab t1" <1000>`)
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		m, err := c.read(300 * time.Millisecond)
		if err != nil {
			break
		}
		if m.has("Response") && !m.has("Event") || !strings.Contains(m.raw, dialStr) {
			continue // the Originate's Response, login events
		}
		s := m.event()
		if ch := m.get("Channel"); ch != "" && s != "OriginateResponse" {
			s += ch[strings.LastIndexByte(ch, ';'):]
		}
		got = append(got, s)
	}
	return got
}

func TestAllEventsAndEventFilters(t *testing.T) {
	rules, err := ParseRules("suffix=1:answer,talk=20ms")
	if err != nil {
		t.Fatal(err)
	}
	routed := "Newchannel;1 Newchannel;2 Newstate;2 Newstate;1 OriginateResponse Hangup;2 Hangup;1"
	tests := []struct {
		name    string
		all     bool
		filters []string
		want    string
	}{
		{"the routed events only (default)", false, nil, routed},
		{"all events, as Asterisk sends them to read=call", true, nil,
			"Newchannel;1 Newchannel;2 NewCallerid;1 NewConnectedLine;1 NewCallerid;2 NewConnectedLine;2 LocalBridge DialBegin " +
				"Newstate;2 Newstate;1 DialEnd OriginateResponse DeviceStateChange DeviceStateChange " +
				"SoftHangupRequest;2 Hangup;2 SoftHangupRequest;1 HangupRequest;1 Hangup;1 DeviceStateChange DeviceStateChange"},
		{"all events through the recommended filter", true, []string{fourEvents}, routed},
		{"all events through advanced name filters", true, []string{"eventfilter(name(OriginateResponse))", "eventfilter(name(Newchannel))",
			"eventfilter(action(include),name(Newstate))", "eventfilter(name(Hangup))"}, routed},
		{"an advanced exclude", true, []string{"eventfilter(action(exclude),name(DeviceStateChange))", "eventfilter(name(DialEnd),action(exclude))"},
			"Newchannel;1 Newchannel;2 NewCallerid;1 NewConnectedLine;1 NewCallerid;2 NewConnectedLine;2 LocalBridge DialBegin " +
				"Newstate;2 Newstate;1 OriginateResponse SoftHangupRequest;2 Hangup;2 SoftHangupRequest;1 HangupRequest;1 Hangup;1"},
		{"advanced and legacy together", true, []string{"eventfilter(name(Hangup))", "Event: OriginateResponse"}, "OriginateResponse Hangup;2 Hangup;1"},
		{"an exclude filter", true, []string{"!Event: (New|Dial|Local|Device|SoftHangup|HangupRequest)"},
			"OriginateResponse Hangup;2 Hangup;1"},
		{"include and exclude", true, []string{"Event: (Newstate|Hangup)", "!Channel: [^\r]*;2"},
			"Newstate;1 HangupRequest;1 Hangup;1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, Config{Rules: rules, AllEvents: tt.all, EventFilters: tt.filters})
			got := strings.Join(eventsOfCall(t, srv, "55"+string(rune('0'+i))+"1"), " ")
			if got != tt.want {
				t.Errorf("events:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEventFilterInvalid(t *testing.T) {
	for _, f := range []string{"Event: (Hangup", "eventfilter(name(Hangup)", "eventfilter(header(Channel),name(Hangup))", "eventfilter(action(include))"} {
		if _, err := New(Config{EventFilters: []string{f}}); err == nil || !strings.Contains(err.Error(), "eventfilter") {
			t.Errorf("New with %q: %v", f, err)
		}
	}
}

// With name filters only the simulator knows an event is dropped before
// rendering it; with a regular expression it must render it to know.
func TestEventFilterDrops(t *testing.T) {
	names, err := newEventFilter([]string{"eventfilter(name(Hangup))", "eventfilter(action(exclude),name(Newstate))"})
	if err != nil {
		t.Fatal(err)
	}
	excl, err := newEventFilter([]string{"eventfilter(action(exclude),name(Newstate))"})
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := newEventFilter([]string{"Event: Hangup"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		f    *eventFilter
		name string
		want bool
	}{
		{names, "Hangup", false}, {names, "Newstate", true}, {names, "DialEnd", true},
		{excl, "Newstate", true}, {excl, "DialEnd", false},
		{legacy, "DialEnd", false}, {nil, "DialEnd", false},
	}
	for _, tt := range tests {
		if got := tt.f.drops(tt.name); got != tt.want {
			t.Errorf("drops(%s) = %v with %+v", tt.name, got, tt.f)
		}
	}
}

// The noise events carry the headers of the transcripts.
func TestNoiseHeaders(t *testing.T) {
	rules, err := ParseRules("suffix=1:answer,talk=20ms")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, Config{Rules: rules, AllEvents: true})
	c := dial(t, srv)
	c.login("")
	c.send("Action", "Originate", "Channel", "Local/771@lab", "Context", "agents", "Exten", "s",
		"Timeout", "2000", "Async", "true", "ActionID", "n1")
	seen := map[string]amiMsg{}
	for len(seen) < 4 {
		m, err := c.read(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch e := m.event(); e {
		case "LocalBridge", "DialBegin", "DialEnd", "DeviceStateChange":
			if _, ok := seen[e]; !ok {
				seen[e] = m
			}
		}
	}
	checks := []struct{ event, key, want string }{
		{"LocalBridge", "LocalOneChannel", "Local/771@lab-"},
		{"LocalBridge", "LocalTwoUniqueid", ""},
		{"LocalBridge", "LocalOptimization", "Yes"},
		{"DialBegin", "DestChannel", "Local/771@lab-"},
		{"DialBegin", "DialString", "771@lab"},
		{"DialEnd", "DialStatus", "ANSWER"},
		{"DialEnd", "DestChannelStateDesc", "Up"},
		{"DeviceStateChange", "Device", "Local/771@lab"},
		{"DeviceStateChange", "State", "INUSE"},
	}
	for _, ck := range checks {
		m := seen[ck.event]
		if !m.has(ck.key) || !strings.HasPrefix(m.get(ck.key), ck.want) {
			t.Errorf("%s %s = %q, want %q…: %s", ck.event, ck.key, m.get(ck.key), ck.want, m)
		}
	}
}
