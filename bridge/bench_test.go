package bridge

import (
	"testing"
	"time"
)

// Benchmarks of the per-call pure work of the bridge (issue 6): what a call
// costs besides its Redis and AMI round trips.

var benchRaw = []byte(`{"id":"c-000123","number":"5511999990000","caller_id":"Multcall <1133334444>","timeout_s":30,"variables":{"CAMPAIGN":"spring","LIST":"42"}}`)

func BenchmarkParseCommand(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCommand(benchRaw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCommandMinimal(b *testing.B) {
	raw := []byte(`{"id":"b123","number":"55000000123"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCommand(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCall() *Call {
	cmd, _ := ParseCommand(benchRaw)
	now := time.Now()
	return &Call{Cmd: cmd, Raw: benchRaw, Cell: "101", Instance: "pbx1-4711", Token: "db-pbx1-4711-m3x9k2-17",
		CallCode: "987654", Attempts: 1, ChannelID: "db-pbx1-4711-m3x9k2-17-1", Channel: "PJSIP/trunk-00000012",
		ReceivedAt: now, ConfirmedAt: now, DialedAt: now, AnsweredAt: now, EndedAt: now.Add(time.Minute)}
}

func BenchmarkResultJSON(b *testing.B) {
	c := benchCall()
	b.ReportAllocs()
	for b.Loop() {
		r := c.Result(StatusAnswered)
		r.Reason, r.Cause, r.CauseText = 4, 16, "Normal Clearing"
		_ = r.JSON()
	}
}

func BenchmarkFormatTime(b *testing.B) {
	t := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = FormatTime(t)
	}
}

// BenchmarkTracker applies the seven events of a call answered and hung up
// at once, as the AMI simulator sends them.
func BenchmarkTracker(b *testing.B) {
	now := time.Now()
	evs := []Event{
		{Kind: EventNewchannel, At: now, Channel: "Local/x-00000001;1", Uniqueid: "u", Leg: 1},
		{Kind: EventNewchannel, At: now, Channel: "Local/x-00000001;2", Uniqueid: "u;2", Leg: 2},
		{Kind: EventUp, At: now, Channel: "Local/x-00000001;1", Uniqueid: "u", Leg: 1},
		{Kind: EventUp, At: now, Channel: "Local/x-00000001;2", Uniqueid: "u;2", Leg: 2},
		{Kind: EventOriginateResponse, At: now, Response: "Success", Reason: 4},
		{Kind: EventHangup, At: now, Channel: "Local/x-00000001;2", Uniqueid: "u;2", Leg: 2, Cause: 16, CauseText: "Normal Clearing"},
		{Kind: EventHangup, At: now, Channel: "Local/x-00000001;1", Uniqueid: "u", Leg: 1, Cause: 16, CauseText: "Normal Clearing"},
	}
	b.ReportAllocs()
	for b.Loop() {
		var t tracker
		for _, ev := range evs {
			t.apply(ev)
		}
		if !t.ended() {
			b.Fatal("not ended")
		}
	}
}
