package ami

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

func TestOriginateAction(t *testing.T) {
	base := bridge.OriginateRequest{
		ActionID: "o-1", ChannelID: "c-1", Channel: "PJSIP/1@t", Context: "ctx", Exten: "s", Priority: 1,
		Timeout: 1500 * time.Millisecond,
	}
	m, err := originateAction(base)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Action": "Originate", "ActionID": "o-1", "ChannelId": "c-1", "Channel": "PJSIP/1@t",
		"Context": "ctx", "Exten": "s", "Priority": "1", "Timeout": "1500", "Async": "true",
	}
	if len(m) != len(want) {
		t.Errorf("headers %v, want exactly %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	// A fresh map each call: amigo mutates the one it is given.
	m2, _ := originateAction(base)
	m2["AmigoConnID"] = "1"
	if _, ok := m["AmigoConnID"]; ok {
		t.Error("maps are shared between calls")
	}

	noTimeout := base
	noTimeout.Timeout = 0
	if m, _ := originateAction(noTimeout); m["Timeout"] != "" {
		t.Errorf("zero Timeout sent as %q; Asterisk's default should apply", m["Timeout"])
	}

	bad := []func(*bridge.OriginateRequest){
		func(r *bridge.OriginateRequest) { r.Exten = "s\r\nAction: Hangup" },
		func(r *bridge.OriginateRequest) { r.ChannelID = "c\n" },
		func(r *bridge.OriginateRequest) { r.Variables = []bridge.Variable{{Name: "X", Value: "a\x00"}} },
		func(r *bridge.OriginateRequest) { r.Variables = []bridge.Variable{{Name: "", Value: "a"}} },
		func(r *bridge.OriginateRequest) { r.Channel = "" },
		func(r *bridge.OriginateRequest) { r.Timeout = -time.Second },
	}
	for i, mod := range bad {
		r := base
		mod(&r)
		if _, err := originateAction(r); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("case %d: %v, want ErrInvalidRequest", i, err)
		}
	}
}

// registered is a watch registered with r, closed when the test ends.
func registered(t *testing.T, r *router, actionID, channelID string) *watch {
	t.Helper()
	w := newWatch(r, actionID, channelID)
	if err := r.register(w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestRouterLegsAndUnknownIDs(t *testing.T) {
	r := newRouter()
	w := registered(t, r, "o-a", "a-1")

	r.onNewchannel(map[string]string{"Uniqueid": "a-1", "Channel": "Local/x;1"})
	r.onNewchannel(map[string]string{"Uniqueid": "a-1;2", "Channel": "Local/x;2"})
	r.onNewstate(map[string]string{"Uniqueid": "a-1", "ChannelState": "5"}) // Ringing
	r.onNewstate(map[string]string{"Uniqueid": "a-1", "ChannelState": "4"}) // Ring: ignored
	r.onNewstate(map[string]string{"Uniqueid": "a-1;2", "ChannelState": "6"})
	r.onHangup(map[string]string{"Uniqueid": "a-1;2", "Cause": "17", "Cause-txt": "User busy"})
	r.onOriginateResponse(map[string]string{"ActionID": "o-a", "Response": "Failure", "Reason": "5", "Uniqueid": "a-1"})
	// Other daemons' calls and ids that only look alike.
	r.onHangup(map[string]string{"Uniqueid": "a-10", "Cause": "16"})
	r.onHangup(map[string]string{"Uniqueid": "a-1;3", "Cause": "16"})
	r.onHangup(map[string]string{"Uniqueid": "", "Cause": "16"})
	r.onOriginateResponse(map[string]string{"ActionID": "o-b", "Response": "Success", "Reason": "4"})
	r.onOriginateResponse(map[string]string{"Response": "Success", "Reason": "4"})

	select {
	case <-w.C():
	default:
		t.Fatal("no signal")
	}
	evs := w.Drain()
	want := []struct {
		kind bridge.EventKind
		leg  int
	}{
		{bridge.EventNewchannel, 1}, {bridge.EventNewchannel, 2}, {bridge.EventRinging, 1},
		{bridge.EventUp, 2}, {bridge.EventHangup, 2}, {bridge.EventOriginateResponse, 0},
	}
	if len(evs) != len(want) {
		t.Fatalf("events %s", describe(evs))
	}
	for i, e := range evs {
		if e.Kind != want[i].kind || e.Leg != want[i].leg {
			t.Errorf("event %d = %s leg %d, want %s leg %d", i, e.Kind, e.Leg, want[i].kind, want[i].leg)
		}
		if e.At.IsZero() {
			t.Errorf("event %d without At", i)
		}
	}
	if evs[4].Cause != 17 || evs[4].CauseText != "User busy" || evs[5].Reason != 5 || evs[5].Response != "Failure" {
		t.Errorf("fields: %s", describe(evs))
	}
	if got := w.Drain(); len(got) != 0 {
		t.Errorf("second Drain: %s", describe(got))
	}

	// Closed: nothing more is routed, and the ids are free again.
	w.Close()
	w.Close()
	r.onHangup(map[string]string{"Uniqueid": "a-1", "Cause": "16"})
	if got := w.Drain(); len(got) != 0 {
		t.Errorf("events after Close: %s", describe(got))
	}
	if r.watches.Load() != 0 {
		t.Errorf("%d watches registered", r.watches.Load())
	}
	w2 := newWatch(r, "o-a", "a-1")
	if err := r.register(w2); err != nil {
		t.Errorf("re-register after Close: %v", err)
	}
	w2.Close()
}

func TestRouterDuplicates(t *testing.T) {
	r := newRouter()
	registered(t, r, "o-a", "a-1")
	if err := r.register(newWatch(r, "o-a", "other")); !errors.Is(err, errDuplicateID) {
		t.Errorf("same ActionID: %v", err)
	}
	if err := r.register(newWatch(r, "o-b", "a-1")); !errors.Is(err, errDuplicateID) {
		t.Errorf("same ChannelID: %v", err)
	}
	// The failed registration of o-b must not leave its ActionID behind.
	w3 := newWatch(r, "o-b", "b-1")
	if err := r.register(w3); err != nil {
		t.Errorf("o-b after a failed registration: %v", err)
	}
	w3.Close()
	if r.watches.Load() != 1 {
		t.Errorf("%d watches registered, want 1", r.watches.Load())
	}
}

func TestRouterLostRestored(t *testing.T) {
	r := newRouter()
	a := registered(t, r, "o-a", "a")
	b := registered(t, r, "o-b", "b")
	now := time.Now()
	r.lost(now)
	r.lost(now) // once per outage
	c := registered(t, r, "o-c", "c")
	r.restored(now)
	r.restored(now)
	for _, w := range []*watch{a, b} {
		evs := w.Drain()
		if len(evs) != 2 || evs[0].Kind != bridge.EventLost || evs[1].Kind != bridge.EventRestored {
			t.Errorf("%s: %s, want Lost, Restored", w.actionID, describe(evs))
		}
	}
	if evs := c.Drain(); len(evs) != 0 {
		t.Errorf("watch registered after the loss got %s", describe(evs))
	}
}

// Delivery never blocks, whatever the reader does, and is safe from many
// goroutines at once.
func TestWatchConcurrentDelivery(t *testing.T) {
	r := newRouter()
	w := registered(t, r, "o-a", "a")
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r.onHangup(map[string]string{"Uniqueid": "a", "Cause": "16"})
			}
		}()
	}
	got := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for got < writers*each {
		select {
		case <-w.C():
			got += len(w.Drain())
		case <-done:
			got += len(w.Drain())
			if got != writers*each {
				t.Fatalf("got %d events, want %d", got, writers*each)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	c := New(Options{Username: "u", MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}, testLogger())
	for n, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		for range 50 {
			d := c.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
	if d := c.backoff(1000); d > 2*time.Second || d < time.Second {
		t.Errorf("backoff(1000) = %s", d)
	}
}

func TestConnErrorClassification(t *testing.T) {
	c := New(Options{Host: "10.0.0.1", Port: 5038, Username: "x", Secret: "hidden"}, testLogger())
	cases := []struct {
		msg     string
		refused bool
		text    string
	}{
		{"Asterisk login error: Authentication failed", true, `AMI 10.0.0.1:5038: login refused for user "x": Authentication failed`},
		{"Asterisk login error: EOF", false, "connection failed during login: EOF"},
		{"Asterisk login error: read tcp 1.2.3.4:1->5.6.7.8:2: read: connection reset by peer", false, "connection reset"},
		{"AMI Reconnect failed", false, "AMI 10.0.0.1:5038: cannot connect"},
		{"AMI TCP ERROR: ping timeout", false, "connection lost: ping timeout"},
		{"Asterisk connection error: EOF", false, "no banner: EOF"},
	}
	for _, tc := range cases {
		err := c.connError(tc.msg)
		if errors.Is(err, ErrLoginRefused) != tc.refused {
			t.Errorf("%q: refused=%v, want %v", tc.msg, !tc.refused, tc.refused)
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%q: %q does not contain %q", tc.msg, err, tc.text)
		}
		if strings.Contains(err.Error(), "hidden") {
			t.Errorf("secret in %q", err)
		}
	}
}

func TestStartChecksOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no user":        {Secret: "s"},
		"CR in secret":   {Username: "u", Secret: "s\rAction: Originate"},
		"LF in username": {Username: "u\n", Secret: "s"},
		"bad port":       {Username: "u", Secret: "s", Port: 70000},
	} {
		c := New(o, testLogger())
		err := c.Start(context.Background())
		if err == nil {
			c.Close()
			t.Errorf("%s: Start accepted it", name)
			continue
		}
		if strings.Contains(err.Error(), "Action: Originate") {
			t.Errorf("%s: secret quoted in %q", name, err)
		}
	}
}

// A server that accepts and then says nothing (no banner): amigo would wait
// for ever; the attempt must end by our login timeout, and the client must
// keep trying without blocking Close.
func TestSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	opts := testOptions("127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	opts.CommandResponse = 200 * time.Millisecond
	c, buf := newClient(t, opts)
	c.dialTimeout = 100 * time.Millisecond
	start := time.Now()
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("Start returned after %s, want about the login timeout (300ms)", d)
	}
	if c.Ready() {
		t.Fatal("ready against a silent server")
	}
	if !strings.Contains(buf.String(), "no login answer") {
		t.Errorf("log does not say why:\n%s", buf)
	}
	t0 := time.Now()
	c.Close()
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("Close took %s", d)
	}
}

// TestWatchNotify: Notify is how a parked call learns of its next event. It
// fires once per Notify, at once when events wait, never after stop, and a
// stale stop leaves a newer Notify alone.
func TestWatchNotify(t *testing.T) {
	r := newRouter()
	w := registered(t, r, "o-a", "a")
	fired := make(chan string, 4)
	notify := func(name string) func() { return func() { fired <- name } }
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-fired:
			if got != want {
				t.Fatalf("fired %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q never fired", want)
		}
	}
	expectNone := func() {
		t.Helper()
		select {
		case got := <-fired:
			t.Fatalf("%q fired unexpectedly", got)
		case <-time.After(50 * time.Millisecond):
		}
	}
	hangup := func() { r.onHangup(map[string]string{"Uniqueid": "a", "Cause": "16"}) }

	w.Notify(notify("later"))
	expectNone()
	hangup()
	expect("later")
	hangup() // one-shot: the next event wakes nobody
	expectNone()

	w.Notify(notify("pending")) // events wait already: fires at once
	expect("pending")
	w.Drain()

	stop := w.Notify(notify("stopped"))
	stop()
	hangup()
	expectNone()
	w.Drain()

	stale := w.Notify(notify("first"))
	w.Notify(notify("second"))
	stale()
	hangup()
	expect("second")
}

// EventFilter (documented for manager.conf) lets through exactly the events
// the router has handlers for. Go's regexp stands in for POSIX ERE here:
// the expression uses only syntax both read the same way.
func TestEventFilter(t *testing.T) {
	re := regexp.MustCompile(EventFilter)
	r := &router{}
	if len(r.handlers()) != len(RoutedEvents) {
		t.Fatalf("%d handlers, %d RoutedEvents", len(r.handlers()), len(RoutedEvents))
	}
	for _, name := range RoutedEvents {
		if _, ok := r.handlers()[name]; !ok {
			t.Errorf("no handler for %s", name)
		}
		if !re.MatchString("Event: " + name + "\r\nPrivilege: call,all\r\n\r\n") {
			t.Errorf("EventFilter drops %s", name)
		}
	}
	for _, name := range []string{"HangupRequest", "SoftHangupRequest", "NewCallerid", "NewConnectedLine", "LocalBridge",
		"DialBegin", "DialEnd", "DialState", "DeviceStateChange", "VarSet", "Newexten", "Cdr", "FullyBooted"} {
		if re.MatchString("Event: " + name + "\r\nPrivilege: call,all\r\nChannel: Local/1@lab-00000001;1\r\n\r\n") {
			t.Errorf("EventFilter lets %s through", name)
		}
	}
}
