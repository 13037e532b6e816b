package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withTrunks is minimal with two trunks and a second cell on the first.
const withTrunks = `
ami: {username: u, secret: topsecret}
originate: {channel: "PJSIP/{number}@default", context: agents, exten: s}
trunks:
  - {name: carrier-a, channel: "PJSIP/{number}@carrier-a", cps: 4, max_channels: 30}
  - name: cheap.b_2
    channel: "SIP/b/{number}"
    cps: 1.5
    burst: 3
    breaker: {failures: 5, cooldown: 1m}
queues:
  - {name: "101", threads: 10}
  - {name: "102", threads: 10, trunk: carrier-a}
  - {name: "103", threads: 10, trunk: cheap.b_2}
`

func TestTrunksParsedWithDefaults(t *testing.T) {
	s, err := Parse([]byte(withTrunks))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := s.Trunk("carrier-a")
	if !ok {
		t.Fatal("carrier-a missing")
	}
	want := Trunk{Name: "carrier-a", Channel: "PJSIP/{number}@carrier-a", CPS: 4, Burst: 1, MaxChannels: 30,
		Breaker: Breaker{Failures: 10, Cooldown: Duration(30 * time.Second)}}
	if a != want {
		t.Errorf("carrier-a = %+v, want %+v", a, want)
	}
	b, _ := s.Trunk("cheap.b_2")
	want = Trunk{Name: "cheap.b_2", Channel: "SIP/b/{number}", CPS: 1.5, Burst: 3,
		Breaker: Breaker{Failures: 5, Cooldown: Duration(time.Minute)}}
	if b != want {
		t.Errorf("cheap.b_2 = %+v, want %+v", b, want)
	}
	for cell, ch := range map[string]string{"101": "PJSIP/{number}@default", "102": "PJSIP/{number}@carrier-a", "103": "SIP/b/{number}"} {
		q, err := s.Queue(cell)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ChannelFor(q); got != ch {
			t.Errorf("ChannelFor(%s) = %q, want %q", cell, got, ch)
		}
		if _, ok := s.TrunkFor(q); ok != (cell != "101") {
			t.Errorf("TrunkFor(%s) found = %v", cell, ok)
		}
	}
}

// A file without trunks is what every host had before: no trunk, the
// originate channel.
func TestNoTrunksIsTheOldBehaviour(t *testing.T) {
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue("101")
	if len(s.Trunks) != 0 || q.Trunk != "" || s.ChannelFor(q) != s.Originate.Channel {
		t.Fatalf("trunks %v, queue %+v, channel %q", s.Trunks, q, s.ChannelFor(q))
	}
	if _, ok := s.TrunkFor(q); ok {
		t.Fatal("a cell without trunk has one")
	}
}

func TestZeroMeansNoLimit(t *testing.T) {
	y := strings.Replace(withTrunks, "cps: 4, max_channels: 30", "cps: 0, max_channels: 0", 1)
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Trunk("carrier-a"); a.CPS != 0 || a.MaxChannels != 0 {
		t.Fatalf("%+v", a)
	}
}

func TestInvalidTrunksNameTheField(t *testing.T) {
	trunk := func(fields string) string {
		return minimal + "trunks: [{name: t1, channel: 'PJSIP/{number}@t1'" + fields + "}]\n"
	}
	cellOn := func(name string) string {
		return strings.Replace(minimal, `queues: [{name: "101", threads: 10}]`,
			`queues: [{name: "101", threads: 10}, {name: "102", threads: 5, trunk: `+name+`}]`, 1)
	}
	tests := []struct{ name, yaml, field string }{
		{"no name", minimal + "trunks: [{channel: 'PJSIP/{number}@t'}]", "trunks[0].name"},
		{"name with space", minimal + "trunks: [{name: 'a b', channel: 'PJSIP/{number}@t'}]", "trunks[0].name"},
		{"name with braces", minimal + "trunks: [{name: 'a{b}', channel: 'PJSIP/{number}@t'}]", "trunks[0].name"},
		{"name too long", minimal + "trunks: [{name: " + strings.Repeat("n", 65) + ", channel: 'PJSIP/{number}@t'}]", "trunks[0].name"},
		{"duplicate name", minimal + "trunks: [{name: t, channel: 'PJSIP/{number}@t'}, {name: t, channel: 'PJSIP/{number}@u'}]", "trunks[1].name"},
		{"no channel", minimal + "trunks: [{name: t}]", "trunks[0].channel"},
		{"channel without number", minimal + "trunks: [{name: t, channel: 'PJSIP/123@t'}]", "trunks[0].channel"},
		{"channel number twice", minimal + "trunks: [{name: t, channel: 'PJSIP/{number}{number}'}]", "trunks[0].channel"},
		{"channel without tech", minimal + "trunks: [{name: t, channel: '{number}@t'}]", "trunks[0].channel"},
		{"channel with line break", minimal + "trunks: [{name: t, channel: \"PJSIP/{number}\\r\\nAction: Logoff\"}]", "trunks[0].channel"},
		{"negative cps", trunk(", cps: -1"), "trunks[0].cps"},
		{"tiny cps", trunk(", cps: 0.001"), "trunks[0].cps"},
		{"huge cps", trunk(", cps: 1e9"), "trunks[0].cps"},
		{"nan cps", trunk(", cps: .nan"), "trunks[0].cps"},
		{"infinite cps", trunk(", cps: .inf"), "trunks[0].cps"},
		{"cps not a number", trunk(", cps: fast"), "trunks[0].cps"},
		{"zero burst", trunk(", burst: 0"), "trunks[0].burst"},
		{"negative burst", trunk(", burst: -2"), "trunks[0].burst"},
		{"negative max_channels", trunk(", max_channels: -1"), "trunks[0].max_channels"},
		{"zero failures", trunk(", breaker: {failures: 0}"), "trunks[0].breaker.failures"},
		{"short cooldown", trunk(", breaker: {cooldown: 10ms}"), "trunks[0].breaker.cooldown"},
		{"long cooldown", trunk(", breaker: {cooldown: 2h}"), "trunks[0].breaker.cooldown"},
		{"bare cooldown", trunk(", breaker: {cooldown: 30}"), "not a duration"},
		{"misspelt trunk field", trunk(", cpss: 4"), "cpss"},
		{"misspelt breaker field", trunk(", breaker: {failure: 4}"), "failure"},
		{"unknown trunk", cellOn("nope"), "queues[1].trunk"},
		{"unknown trunk names the trunks", cellOn("nope") + "trunks: [{name: t1, channel: 'PJSIP/{number}@t1'}]", "(t1)"},
		{"second trunk bad", minimal + "trunks: [{name: a, channel: 'PJSIP/{number}@a'}, {name: b, channel: 'PJSIP/{number}@b', cps: -3}]", "trunks[1].cps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %q", err, tt.field)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestTrunkBoundsAccepted(t *testing.T) {
	for _, fields := range []string{
		"cps: 0.01", "cps: 100000", "cps: 20, burst: 10000", "max_channels: 100000",
		"breaker: {failures: 1, cooldown: 1s}", "breaker: {failures: 10000, cooldown: 1h}",
	} {
		y := minimal + "trunks: [{name: t, channel: 'PJSIP/{number}@t', " + fields + "}]"
		if _, err := Parse([]byte(y)); err != nil {
			t.Errorf("%s: %v", fields, err)
		}
	}
}

// The commented-out example of configs/settings.yaml, uncommented, is valid
// and means what its comments say.
func TestShippedTrunkExampleIsValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "configs", "settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inTrunks := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "trunks: []":
			line, inTrunks = "trunks:", true
		case inTrunks && strings.HasPrefix(line, "#  "):
			line = " " + line[1:]
		case strings.HasPrefix(line, "    # trunk: "):
			line = "    trunk: " + strings.TrimPrefix(line, "    # trunk: ")
			inTrunks = false
		default:
			inTrunks = false
		}
		out = append(out, line)
	}
	s, err := Parse([]byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("uncommented example: %v", err)
	}
	q, _ := s.Queue("101")
	tr, ok := s.TrunkFor(q)
	if !ok || tr.CPS != 4 || tr.Burst != 1 || tr.MaxChannels != 30 || tr.Breaker.Failures != 10 || tr.Breaker.Cooldown.D() != 30*time.Second || s.ChannelFor(q) != "PJSIP/{number}@carrier-a" {
		t.Fatalf("example trunk %+v, channel %q", tr, s.ChannelFor(q))
	}
}
