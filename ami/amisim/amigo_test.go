package amisim

import (
	"strconv"
	"testing"
	"time"

	"github.com/ivahaev/amigo"
)

// TestAmigoClient proves that the real client library dialbridge uses logs
// in to the simulator and receives an OriginateResponse from it.
func TestAmigoClient(t *testing.T) {
	srv := newServer(t, Config{Username: "bridge", Secret: "bridgesecret",
		Rules: []Rule{{Suffix: "5", Outcome: OutcomeBusy}, {Outcome: OutcomeAnswer, TalkFor: 20 * time.Millisecond}}})
	a := amigo.New(&amigo.Settings{
		Username:          "bridge",
		Password:          "bridgesecret",
		Host:              srv.Host(),
		Port:              strconv.Itoa(srv.Port()),
		ReconnectInterval: 50 * time.Millisecond,
	})
	ors := make(chan map[string]string, 16)
	hangups := make(chan map[string]string, 16)
	if err := a.RegisterHandler("OriginateResponse", func(m map[string]string) {
		select {
		case ors <- m:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterHandler("Hangup", func(m map[string]string) {
		select {
		case hangups <- m:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	a.Connect()
	defer a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !a.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("amigo never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ping, err := a.Action(map[string]string{"Action": "Ping", "ActionID": "amigo-ping"})
	if err != nil || ping["Response"] != "Success" || ping["Ping"] != "Pong" {
		t.Fatalf("ping: %v %v", ping, err)
	}
	for _, tc := range []struct{ num, reason, response string }{{"5511990", "4", "Success"}, {"5511995", "5", "Failure"}} {
		aid := "amigo-" + tc.num
		res, err := a.Action(map[string]string{
			"Action":    "Originate",
			"ActionID":  aid,
			"Channel":   "PJSIP/" + tc.num + "@trunk",
			"Context":   "agents",
			"Exten":     "s",
			"Priority":  "1",
			"Timeout":   "30000",
			"CallerID":  `"Multcall" <1133334444>`,
			"Async":     "true",
			"ChannelId": "uid-" + tc.num,
			"Variable":  "DIALBRIDGE_ID=c-1,DIALBRIDGE_CALL_CODE=42",
		})
		if err != nil || res["Response"] != "Success" || res["Message"] != "Originate successfully queued" {
			t.Fatalf("originate: %v %v", res, err)
		}
		select {
		case or := <-ors:
			if or["ActionID"] != aid || or["Reason"] != tc.reason || or["Response"] != tc.response || or["Uniqueid"] != "uid-"+tc.num ||
				or["CallerIDNum"] != "1133334444" || or["CallerIDName"] != "Multcall" {
				t.Fatalf("OriginateResponse %v", or)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no OriginateResponse")
		}
	}
	select {
	case h := <-hangups:
		if h["Linkedid"] == "" || h["Cause"] == "" {
			t.Fatalf("hangup %v", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Hangup")
	}
	recs := srv.Originates()
	if len(recs) != 2 || recs[0].Variables["DIALBRIDGE_CALL_CODE"] != "42" || recs[0].Headers["AmigoConnID"] == "" {
		t.Fatalf("records %+v", recs)
	}
}
