package ami

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/testport"
)

func TestStartReady(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, buf := startClient(t, srv, func(o *Options) { o.Connections = 3 })

	st := c.State()
	if !st.Ready || !st.EventSession || st.ActionSessions != 3 || st.ActionSessionsUp != 3 {
		t.Fatalf("state after Start: %+v", st)
	}
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatalf("WaitReady when ready: %v", err)
	}
	if got := srv.Stats().Logins; got != 4 {
		t.Errorf("logins = %d, want 4 (1 event + 3 action sessions)", got)
	}
	if !strings.Contains(buf.String(), `"message":"AMI connected"`) {
		t.Errorf("no 'AMI connected' line in log:\n%s", buf)
	}
	if strings.Contains(buf.String(), testSecret) {
		t.Errorf("secret in log:\n%s", buf)
	}
}

func TestStartLoginRefused(t *testing.T) {
	srv := newSim(t, amisim.Config{Secret: "the-right-one"})
	opts := testOptions(srv.Host(), srv.Port())
	c, buf := newClient(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Start(ctx)
	if err == nil {
		t.Fatal("Start succeeded with a wrong secret")
	}
	if !errors.Is(err, ErrLoginRefused) {
		t.Errorf("error %v is not ErrLoginRefused", err)
	}
	want := fmt.Sprintf(`AMI %s: login refused for user %q: Authentication failed`, srv.Addr(), testUser)
	if err.Error() != want {
		t.Errorf("error text\n got %q\nwant %q", err.Error(), want)
	}
	if strings.Contains(err.Error(), testSecret) || strings.Contains(buf.String(), testSecret) {
		t.Errorf("secret leaked: err %q, log %s", err, buf)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %s to report a refused login", d)
	}
	if c.Ready() {
		t.Error("Ready after a refused login")
	}
	if _, err := c.Originate(ctx, request("100")); !errors.Is(err, bridge.ErrNotWritten) {
		t.Errorf("Originate after failed Start: %v, want ErrNotWritten", err)
	}
}

func TestStartUnreachableThenUp(t *testing.T) {
	port := testport.Reserve(t)
	opts := testOptions("127.0.0.1", port)
	c, buf := newClient(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start with AMI down: %v (want nil: the daemon keeps running)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %s with AMI down", d)
	}
	if c.Ready() {
		t.Fatal("Ready with AMI down")
	}

	// Originate must not block while AMI is down.
	t0 := time.Now()
	_, err := c.Originate(ctx, request("100"))
	if !errors.Is(err, bridge.ErrNotWritten) {
		t.Fatalf("Originate with AMI down: %v, want ErrNotWritten", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Originate with AMI down took %s", d)
	}

	// Several retries pass silently, then Asterisk comes up.
	time.Sleep(600 * time.Millisecond)
	srv := newSim(t, amisim.Config{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady after AMI came up: %v", err)
	}
	w, err := c.Originate(ctx, request("100"))
	if err != nil {
		t.Fatalf("Originate once up: %v", err)
	}
	w.Close()
	if srv.OriginateCount() != 1 {
		t.Errorf("simulator got %d originates, want 1", srv.OriginateCount())
	}
	c.Close() // before the simulator: a Logoff on a live session is quick
	log := buf.String()
	if n := strings.Count(log, "AMI unreachable"); n != 1 {
		t.Errorf("'AMI unreachable' logged %d times, want once:\n%s", n, log)
	}
}

// outcomeCase is one simulator outcome and the events it must produce.
type outcomeCase struct {
	name     string
	rule     amisim.Rule
	response string
	reason   int
	up       bool      // Up on both legs
	hangups  [2]int    // causes on leg 1 and 2; -1 = no Hangup expected
	texts    [2]string // Cause-txt expected, "" = don't check
	timeout  time.Duration
}

func outcomeCases() []outcomeCase {
	return []outcomeCase{
		{name: "answer", rule: amisim.Rule{Outcome: amisim.OutcomeAnswer, TalkFor: 50 * time.Millisecond},
			response: "Success", reason: 4, up: true, hangups: [2]int{16, 16}, texts: [2]string{"Normal Clearing", "Normal Clearing"}},
		{name: "busy", rule: amisim.Rule{Outcome: amisim.OutcomeBusy},
			response: "Failure", reason: 5, hangups: [2]int{0, 17}, texts: [2]string{"", "User busy"}},
		{name: "congestion", rule: amisim.Rule{Outcome: amisim.OutcomeCongestion},
			response: "Failure", reason: 8, hangups: [2]int{0, 34}},
		{name: "noanswer", rule: amisim.Rule{Outcome: amisim.OutcomeNoAnswer}, timeout: 300 * time.Millisecond,
			response: "Failure", reason: 3, hangups: [2]int{19, 19}},
		{name: "hangup21", rule: amisim.Rule{Outcome: amisim.OutcomeHangup, Cause: 21},
			response: "Failure", reason: 0, hangups: [2]int{21, 21}},
		{name: "failed", rule: amisim.Rule{Outcome: amisim.OutcomeFailed},
			response: "Failure", reason: 0, hangups: [2]int{-1, -1}},
		{name: "doesnotexist", rule: amisim.Rule{Outcome: amisim.OutcomeDoesNotExist},
			response: "Failure", reason: 0, hangups: [2]int{0, 0}},
	}
}

func TestOriginateOutcomes(t *testing.T) {
	cases := outcomeCases()
	var rules []amisim.Rule
	for i, tc := range cases {
		r := tc.rule
		r.Prefix = strconv.Itoa(100 + i)
		rules = append(rules, r)
	}
	srv := newSim(t, amisim.Config{Rules: rules, ShuffleSeed: 7})
	c, _ := startClient(t, srv, nil)

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req := request(strconv.Itoa(100+i) + "555")
			if tc.timeout > 0 {
				req.Timeout = tc.timeout
			}
			w, err := c.Originate(ctx, req)
			if err != nil {
				t.Fatalf("Originate: %v", err)
			}
			defer w.Close()
			wantHangups := 0
			for _, cause := range tc.hangups {
				if cause >= 0 {
					wantHangups++
				}
			}
			// The calls last at most 300 ms; the deadline is for a loaded
			// machine (seven parallel subtests under -race).
			evs, err := collect(w, 10*time.Second, func(evs []bridge.Event) bool {
				return count(evs, bridge.EventOriginateResponse) == 1 && count(evs, bridge.EventHangup) == wantHangups
			})
			if err != nil {
				t.Fatal(err)
			}
			or, _ := find(evs, bridge.EventOriginateResponse, 0)
			if or.Response != tc.response || or.Reason != tc.reason {
				t.Errorf("OriginateResponse %s/%d, want %s/%d", or.Response, or.Reason, tc.response, tc.reason)
			}
			if tc.response == "Success" && or.Uniqueid != req.ChannelID {
				t.Errorf("OriginateResponse Uniqueid %q, want our ChannelId %q", or.Uniqueid, req.ChannelID)
			}
			for leg := 1; leg <= 2; leg++ {
				want := tc.hangups[leg-1]
				h, ok := find(evs, bridge.EventHangup, leg)
				if want < 0 {
					if ok {
						t.Errorf("unexpected Hangup on leg %d: %+v", leg, h)
					}
					continue
				}
				if !ok {
					t.Errorf("no Hangup on leg %d: %s", leg, describe(evs))
					continue
				}
				if h.Cause != want {
					t.Errorf("leg %d Hangup cause %d, want %d", leg, h.Cause, want)
				}
				if txt := tc.texts[leg-1]; txt != "" && h.CauseText != txt {
					t.Errorf("leg %d Cause-txt %q, want %q", leg, h.CauseText, txt)
				}
				wantUID := req.ChannelID
				if leg == 2 {
					wantUID += ";2"
				}
				if h.Uniqueid != wantUID {
					t.Errorf("leg %d Uniqueid %q, want %q", leg, h.Uniqueid, wantUID)
				}
			}
			if tc.up {
				for leg := 1; leg <= 2; leg++ {
					if _, ok := find(evs, bridge.EventUp, leg); !ok {
						t.Errorf("no Up on leg %d: %s", leg, describe(evs))
					}
				}
			} else if n := count(evs, bridge.EventUp); n != 0 {
				t.Errorf("%d Up events for a call that was not answered", n)
			}
			for _, e := range evs {
				if e.At.IsZero() {
					t.Errorf("event %s without At", e.Kind)
				}
			}
		})
	}
}

// With a shuffled simulator, OriginateResponse comes both before and after
// the Hangups: every order must give the same outcome.
func TestOriginateEitherOrder(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeBusy}}, ShuffleSeed: 42})
	c, _ := startClient(t, srv, nil)
	// One deadline for 30 calls in a row: generous for a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var before, after int
	for range 30 {
		w, err := c.Originate(ctx, request("200"))
		if err != nil {
			t.Fatalf("Originate: %v", err)
		}
		evs, err := collect(w, 10*time.Second, func(evs []bridge.Event) bool {
			return count(evs, bridge.EventOriginateResponse) == 1 && count(evs, bridge.EventHangup) == 2
		})
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if evs[len(evs)-1].Kind == bridge.EventOriginateResponse {
			after++
		} else {
			before++
		}
		or, _ := find(evs, bridge.EventOriginateResponse, 0)
		h2, _ := find(evs, bridge.EventHangup, 2)
		if or.Reason != 5 || h2.Cause != 17 {
			t.Fatalf("busy call: reason %d, leg 2 cause %d", or.Reason, h2.Cause)
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("OriginateResponse last in %d calls, not last in %d: want both orders", after, before)
	}
}

func TestOriginateHeaders(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	ctx := context.Background()

	req := bridge.OriginateRequest{
		ActionID:  "o-abc-1",
		ChannelID: "abc-1",
		Channel:   "PJSIP/5511999@trunk",
		Context:   "agents",
		Exten:     "s",
		Priority:  2,
		Timeout:   15 * time.Second,
		CallerID:  `"Multcall" <5550000>`,
		Variables: []bridge.Variable{
			{Name: "A", Value: "1"},
			{Name: "B", Value: "two words"},
			{Name: "DIALBRIDGE_ID", Value: "abc"},
			{Name: "DIALBRIDGE_CALL_CODE", Value: "C-77"},
		},
	}
	w, err := c.Originate(ctx, req)
	if err != nil {
		t.Fatalf("Originate: %v", err)
	}
	w.Close()
	bare := request("5511998")
	bare.CallerID = ""
	bare.Variables = nil
	w, err = c.Originate(ctx, bare)
	if err != nil {
		t.Fatalf("Originate without CallerID/variables: %v", err)
	}
	w.Close()

	recs := srv.Originates()
	if len(recs) != 2 {
		t.Fatalf("%d originates recorded, want 2", len(recs))
	}
	h := recs[0].Headers
	want := map[string]string{
		"Action":    "Originate",
		"ActionID":  "o-abc-1",
		"ChannelId": "abc-1",
		"Channel":   "PJSIP/5511999@trunk",
		"Context":   "agents",
		"Exten":     "s",
		"Priority":  "2",
		"Timeout":   "15000",
		"CallerID":  `"Multcall" <5550000>`,
		"Async":     "true",
		"Variable":  "A=1,B=two words,DIALBRIDGE_ID=abc,DIALBRIDGE_CALL_CODE=C-77",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	for k, v := range h {
		if strings.ContainsAny(k+v, "\r\n\x00") {
			t.Errorf("header %q: %q contains CR/LF/NUL", k, v)
		}
		if _, known := want[k]; !known && k != "AmigoConnID" {
			t.Errorf("unexpected header %s: %q", k, v)
		}
	}
	if got := recs[0].Variables["B"]; got != "two words" {
		t.Errorf("simulator parsed B=%q", got)
	}
	if !recs[0].Async || recs[0].Timeout != 15*time.Second {
		t.Errorf("record: Async %v Timeout %s", recs[0].Async, recs[0].Timeout)
	}
	if _, ok := recs[1].Headers["CallerID"]; ok {
		t.Error("empty CallerID was sent")
	}
	if _, ok := recs[1].Headers["Variable"]; ok {
		t.Error("empty Variable was sent")
	}
}

func TestOriginateRejectsInjection(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	cases := map[string]func(*bridge.OriginateRequest){
		"CR in CallerID": func(r *bridge.OriginateRequest) { r.CallerID = "x\rAction: Hangup" },
		"LF in variable": func(r *bridge.OriginateRequest) {
			r.Variables = []bridge.Variable{{Name: "A", Value: "1\nAction: Logoff"}}
		},
		"NUL in Channel":    func(r *bridge.OriginateRequest) { r.Channel = "PJSIP/1\x00@t" },
		"LF in ActionID":    func(r *bridge.OriginateRequest) { r.ActionID = "o-1\n" },
		"CRLF in Context":   func(r *bridge.OriginateRequest) { r.Context = "a\r\n\r\nAction: Originate" },
		"comma in variable": func(r *bridge.OriginateRequest) { r.Variables = []bridge.Variable{{Name: "A", Value: "1,B=2"}} },
		"empty ActionID":    func(r *bridge.OriginateRequest) { r.ActionID = "" },
		"bad variable name": func(r *bridge.OriginateRequest) { r.Variables = []bridge.Variable{{Name: "A=B", Value: "1"}} },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			req := request("300")
			mod(&req)
			w, err := c.Originate(context.Background(), req)
			if err == nil {
				w.Close()
				t.Fatal("Originate accepted it")
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %v is not ErrInvalidRequest", err)
			}
		})
	}
	if n := srv.OriginateCount(); n != 0 {
		t.Errorf("simulator received %d originates", n)
	}
	if st := c.State(); st.Watches != 0 {
		t.Errorf("%d watches left registered", st.Watches)
	}
}

func TestOriginateDuplicateID(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeAnswer, TalkFor: -1}}})
	c, _ := startClient(t, srv, nil)
	req := request("400")
	w, err := c.Originate(context.Background(), req)
	if err != nil {
		t.Fatalf("Originate: %v", err)
	}
	defer w.Close()
	again := request("400")
	again.ActionID = req.ActionID
	if _, err := c.Originate(context.Background(), again); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("second Originate with the same ActionID: %v, want ErrInvalidRequest", err)
	}
	if n := srv.OriginateCount(); n != 1 {
		t.Errorf("simulator received %d originates, want 1", n)
	}
}

func TestOriginateRefused(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeRefuse, Message: "Extension does not exist."}}})
	c, _ := startClient(t, srv, nil)
	_, err := c.Originate(context.Background(), request("500"))
	var refused *bridge.RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("Originate: %v, want *bridge.RefusedError", err)
	}
	if refused.Message != "Extension does not exist." {
		t.Errorf("message %q", refused.Message)
	}
	if errors.Is(err, bridge.ErrNotWritten) || errors.Is(err, bridge.ErrNoResponse) {
		t.Errorf("refusal also matches ErrNotWritten/ErrNoResponse: %v", err)
	}
	st := c.State()
	if st.Watches != 0 || st.Refused != 1 || st.Sent != 1 {
		t.Errorf("state %+v", st)
	}
}

func TestOriginateNoResponse(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{
		{Prefix: "61", Outcome: amisim.OutcomeNoResponse},
		{Prefix: "62", Outcome: amisim.OutcomeAnswer, ResponseDelay: 900 * time.Millisecond},
	}})
	const cr = 300 * time.Millisecond
	c, _ := startClient(t, srv, func(o *Options) { o.CommandResponse = cr })
	for _, number := range []string{"61", "62"} {
		t.Run(number, func(t *testing.T) {
			start := time.Now()
			_, err := c.Originate(context.Background(), request(number))
			d := time.Since(start)
			if !errors.Is(err, bridge.ErrNoResponse) {
				t.Fatalf("Originate: %v, want ErrNoResponse", err)
			}
			if errors.Is(err, bridge.ErrNotWritten) {
				t.Errorf("no-response error also matches ErrNotWritten: %v", err)
			}
			if d < cr || d > cr+responseGrace+500*time.Millisecond {
				t.Errorf("ErrNoResponse after %s, want about %s", d, cr)
			}
		})
	}
	if st := c.State(); st.Watches != 0 || st.NoResponse != 2 {
		t.Errorf("state %+v", st)
	}
	// The late Response must not confuse the session.
	time.Sleep(700 * time.Millisecond)
	srv.SetRules(nil)
	w, err := c.Originate(context.Background(), request("100"))
	if err != nil {
		t.Fatalf("Originate after a late response: %v", err)
	}
	w.Close()
}

func TestOriginateContext(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeNoResponse}}})
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 1; o.CommandResponse = 400 * time.Millisecond })

	// Written, then ctx ends: the call may exist.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Originate(ctx, request("100"))
	if !errors.Is(err, bridge.ErrNoResponse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Originate: %v, want ErrNoResponse and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("returned after %s", d)
	}

	// The only action session still waits for that Response: a second
	// originate whose ctx ends meanwhile was never handed over.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = c.Originate(ctx2, request("100"))
	if !errors.Is(err, bridge.ErrNotWritten) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued Originate: %v, want ErrNotWritten and DeadlineExceeded", err)
	}
	if n := srv.OriginateCount(); n != 1 {
		t.Errorf("simulator received %d originates, want 1", n)
	}
	if st := c.State(); st.Watches != 0 || st.NotWritten != 1 || st.NoResponse != 1 {
		t.Errorf("state %+v", st)
	}
}

func TestServerGoneNotWritten(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, nil)
	srv.Close()
	waitFor(t, "client to notice AMI is gone", 30*time.Second, func() bool { return !c.Ready() })
	start := time.Now()
	_, err := c.Originate(context.Background(), request("100"))
	if !errors.Is(err, bridge.ErrNotWritten) {
		t.Fatalf("Originate with AMI gone: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Originate blocked %s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady with AMI gone: %v", err)
	}
}

func TestDropConnections(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{
		{Prefix: "71", Outcome: amisim.OutcomeAnswer, TalkFor: -1},
		{Outcome: amisim.OutcomeBusy},
	}})
	const minBackoff = 100 * time.Millisecond
	c, buf := startClient(t, srv, func(o *Options) { o.MinBackoff = minBackoff })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w, err := c.Originate(ctx, request("71"))
	if err != nil {
		t.Fatalf("Originate: %v", err)
	}
	defer w.Close()
	if _, err := collect(w, 10*time.Second, func(evs []bridge.Event) bool {
		return count(evs, bridge.EventOriginateResponse) == 1
	}); err != nil {
		t.Fatal(err)
	}

	dropped := time.Now()
	srv.DropConnections()
	evs, err := collect(w, 30*time.Second, func(evs []bridge.Event) bool {
		return count(evs, bridge.EventRestored) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Kind != bridge.EventLost || count(evs, bridge.EventLost) != 1 {
		t.Errorf("events after drop: %s, want Lost first, once", describe(evs))
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(dropped); d < minBackoff/2 {
		t.Errorf("ready again %s after the drop: no backoff", d)
	}
	waitFor(t, "every session back", 30*time.Second, func() bool { return c.State().ActionSessionsUp == 2 })
	st := c.State()
	if st.Reconnects != 3 {
		t.Errorf("reconnects = %d, want 3 (every session once)", st.Reconnects)
	}
	// Dialing works again, and events flow on the new event session.
	w2, err := c.Originate(ctx, request("72"))
	if err != nil {
		t.Fatalf("Originate after reconnect: %v", err)
	}
	defer w2.Close()
	if _, err := collect(w2, 10*time.Second, func(evs []bridge.Event) bool {
		return count(evs, bridge.EventOriginateResponse) == 1 && count(evs, bridge.EventHangup) == 2
	}); err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	for _, line := range []string{"AMI connection lost", "AMI reconnected"} {
		if n := strings.Count(log, line); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", line, n, log)
		}
	}
}

// Repeated drops: every reconnect is clean, and backoff grows while the
// connection flaps.
func TestRepeatedDrops(t *testing.T) {
	srv := newSim(t, amisim.Config{})
	c, _ := startClient(t, srv, func(o *Options) {
		o.Connections = 1
		o.MinBackoff = 20 * time.Millisecond
		o.MaxBackoff = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 4 {
		srv.DropConnections()
		waitFor(t, "both sessions back", 30*time.Second, func() bool { return c.State().Reconnects == uint64(2*(i+1)) })
		if err := c.WaitReady(ctx); err != nil {
			t.Fatalf("drop %d: %v", i, err)
		}
		w, err := c.Originate(ctx, request("100"))
		if err != nil {
			t.Fatalf("drop %d: Originate: %v", i, err)
		}
		w.Close()
	}
	if got := c.State().Reconnects; got != 8 {
		t.Errorf("reconnects = %d, want 8", got)
	}
	if st := srv.Stats(); st.Sessions != 2 {
		t.Errorf("simulator has %d sessions, want 2 (old clients closed)", st.Sessions)
	}
}

func TestConcurrentOriginates(t *testing.T) {
	const n = 2000
	srv := newSim(t, amisim.Config{
		Rules: []amisim.Rule{
			{Suffix: "1", Outcome: amisim.OutcomeBusy},
			{Suffix: "2", Outcome: amisim.OutcomeCongestion},
			{Suffix: "3", Outcome: amisim.OutcomeFailed},
			{Outcome: amisim.OutcomeAnswer},
		},
		ShuffleSeed: 3,
		MaxRecords:  -1,
	})
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 4; o.CommandResponse = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request("9" + strconv.Itoa(i))
			w, err := c.Originate(ctx, req)
			if err != nil {
				errs <- fmt.Errorf("originate %d: %w", i, err)
				return
			}
			defer w.Close()
			evs, err := collect(w, 10*time.Second, func(evs []bridge.Event) bool {
				return count(evs, bridge.EventOriginateResponse) >= 1
			})
			if err != nil {
				errs <- fmt.Errorf("call %d: %w", i, err)
				return
			}
			// Late duplicates would show in a second drain.
			time.Sleep(20 * time.Millisecond)
			evs = append(evs, w.Drain()...)
			if k := count(evs, bridge.EventOriginateResponse); k != 1 {
				errs <- fmt.Errorf("call %d: %d OriginateResponses", i, k)
				return
			}
			for _, e := range evs {
				if e.Uniqueid != "" && e.Uniqueid != req.ChannelID && e.Uniqueid != req.ChannelID+";2" && e.Uniqueid != "<unknown>" {
					errs <- fmt.Errorf("call %d (%s) got an event of %s", i, req.ChannelID, e.Uniqueid)
					return
				}
			}
			or, _ := find(evs, bridge.EventOriginateResponse, 0)
			want := 4
			switch i % 10 {
			case 1:
				want = 5
			case 2:
				want = 8
			case 3:
				want = 0
			}
			if or.Reason != want {
				errs <- fmt.Errorf("call %d: reason %d, want %d", i, or.Reason, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d originates and outcomes in %s", n, time.Since(start).Round(time.Millisecond))
	if got := srv.OriginateCount(); got != n {
		t.Errorf("simulator received %d originates, want %d", got, n)
	}
	st := c.State()
	if st.Accepted != n || st.Watches != 0 {
		t.Errorf("state %+v", st)
	}
}

// A slow Response on one action session must not hold up originates that
// another session can send.
func TestSlowSessionDoesNotStall(t *testing.T) {
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{
		// The slow Response must still be awaited once the 20 fast
		// originates are done, even when a loaded machine makes each of
		// them take a while: at 1.5 s it sometimes was not.
		{Prefix: "8", Outcome: amisim.OutcomeFailed, ResponseDelay: 5 * time.Second},
		{Outcome: amisim.OutcomeFailed},
	}})
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 2; o.CommandResponse = 10 * time.Second })
	ctx := context.Background()

	slow := make(chan error, 1)
	go func() {
		w, err := c.Originate(ctx, request("800"))
		if err == nil {
			w.Close()
		}
		slow <- err
	}()
	if err := srv.WaitOriginates(ctx, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 20 {
		t0 := time.Now()
		w, err := c.Originate(ctx, request("100"))
		if err != nil {
			t.Fatalf("fast originate %d: %v", i, err)
		}
		w.Close()
		// Queued behind the slow one it would take about 5 s.
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("fast originate %d took %s behind a slow one", i, d)
		}
	}
	t.Logf("20 fast originates in %s while one waited for its Response", time.Since(start).Round(time.Millisecond))
	select {
	case err := <-slow:
		t.Fatalf("slow originate finished first: %v", err)
	default:
	}
	if err := <-slow; err != nil {
		t.Errorf("slow originate: %v", err)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, amigoGoroutines...)
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeAnswer, TalkFor: -1}}})
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 3 })
	var ws []bridge.Watch
	for range 10 {
		w, err := c.Originate(context.Background(), request("100"))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	srv.DropConnections()
	waitFor(t, "all sessions back", 30*time.Second, func() bool { return c.State().Reconnects == 4 })
	start := time.Now()
	c.Close()
	c.Close() // idempotent
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Close took %s", d)
	}
	for _, w := range ws {
		evs := w.Drain()
		if len(evs) == 0 || evs[len(evs)-1].Kind != bridge.EventLost {
			t.Errorf("open watch after Close: %s, want Lost last", describe(evs))
		}
		w.Close()
	}
	if c.Ready() {
		t.Error("Ready after Close")
	}
	if _, err := c.Originate(context.Background(), request("100")); !errors.Is(err, bridge.ErrNotWritten) {
		t.Errorf("Originate after Close: %v", err)
	}
	srv.Close()
	goleak.VerifyNone(t, opts...)
}

// Connections dropped in the middle of a burst: every Originate ends by its
// timers with a classified error or a watch, every watch that was accepted
// gets its outcome or Lost, and nothing is left running.
func TestDropDuringBurst(t *testing.T) {
	const n = 600
	srv := newSim(t, amisim.Config{Rules: []amisim.Rule{{Outcome: amisim.OutcomeBusy, RingFor: 20 * time.Millisecond}}, MaxRecords: -1})
	const cr = 500 * time.Millisecond
	c, _ := startClient(t, srv, func(o *Options) { o.Connections = 3; o.CommandResponse = cr; o.MinBackoff = 20 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var (
		wg                                 sync.WaitGroup
		mu                                 sync.Mutex
		ok, notWritten, noResp, lost, slow int
	)
	go func() {
		_ = srv.WaitOriginates(ctx, n/4)
		srv.DropConnections()
	}()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%3 == 0 {
				_ = c.WaitReady(ctx)
			}
			t0 := time.Now()
			w, err := c.Originate(ctx, request("5"+strconv.Itoa(i)))
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if d > cr+responseGrace+time.Second {
				slow++
				t.Errorf("originate %d took %s (%v)", i, d, err)
			}
			switch {
			case err == nil:
				ok++
			case errors.Is(err, bridge.ErrNotWritten):
				notWritten++
				return
			case errors.Is(err, bridge.ErrNoResponse):
				noResp++
				return
			default:
				t.Errorf("originate %d: unexpected error %v", i, err)
				return
			}
			mu.Unlock()
			evs, err := collect(w, 5*time.Second, func(evs []bridge.Event) bool {
				return count(evs, bridge.EventOriginateResponse) == 1 || count(evs, bridge.EventLost) == 1
			})
			w.Close()
			mu.Lock()
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
			if count(evs, bridge.EventOriginateResponse) == 0 {
				lost++
			}
		}()
	}
	wg.Wait()
	t.Logf("accepted %d (of which %d saw Lost without outcome), not written %d, no response %d", ok, lost, notWritten, noResp)
	if ok == 0 || notWritten+noResp+lost == 0 {
		t.Errorf("the drop did not hit the burst")
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := c.Originate(ctx, request("100"))
	if err != nil {
		t.Fatalf("Originate after the burst: %v", err)
	}
	w.Close()
	if st := c.State(); st.Watches != 0 {
		t.Errorf("%d watches left", st.Watches)
	}
}
