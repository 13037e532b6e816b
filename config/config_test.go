package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
ami: {username: u, secret: topsecret}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s}
queues: [{name: "101", threads: 10}]
`

func TestShippedSettingsAreValid(t *testing.T) {
	s, err := Load(filepath.Join("..", "configs", "settings.yaml"))
	if err != nil {
		t.Fatalf("configs/settings.yaml: %v", err)
	}
	if _, err := s.Queue("101"); err != nil {
		t.Fatal(err)
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", s.Log.Level, "debug"},
		{"log.format", s.Log.Format, "json"},
		{"log.location", s.Log.Location, "-"},
		{"redis", s.Redis.Addr(), "127.0.0.1:6379"},
		{"redis.prefix", s.Redis.Prefix, "dialbridge"},
		{"redis.wait_replicas", s.Redis.WaitReplicas, 0},
		{"redis.wait_timeout", s.Redis.WaitTimeout.D(), 100 * time.Millisecond},
		{"ami", s.AMI.Addr(), "127.0.0.1:5038"},
		{"command_response", s.Timeouts.CommandResponse.D(), 5 * time.Second},
		{"command_ack", s.Timeouts.CommandACK.D(), 5 * time.Second},
		{"retries", s.Retries, 3},
		{"originate.timeout", s.Originate.Timeout.D(), 30 * time.Second},
		{"originate.priority", s.Originate.Priority, 1},
		{"acd.operators", fmt.Sprint(s.ACD.Operators), "[{A operator} {B operator}]"},
		{"acd.ring_timeout", s.ACD.RingTimeout.D(), 10 * time.Second},
		{"acd.listen", s.ACD.Listen, "127.0.0.1:5678"},
		{"ami.connections", s.AMI.Connections, 0},
		{"action sessions, 10 threads", s.AMI.SessionsFor(10), 2},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSessionsFor(t *testing.T) {
	for _, c := range []struct{ connections, threads, want int }{
		{0, 1, 2}, {0, 100, 2}, {0, 191, 2}, {0, 192, 3}, {0, 500, 7}, {0, 1000, 15}, {0, 1024, 16}, {0, 50000, 16},
		{1, 1000, 1}, {5, 10, 5}, {64, 10, 64}, // set: as set
	} {
		if got := (AMI{Connections: c.connections}).SessionsFor(c.threads); got != c.want {
			t.Errorf("connections %d, threads %d: %d sessions, want %d", c.connections, c.threads, got, c.want)
		}
	}
}

func TestInvalidSettingsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, field string
	}{
		{"empty file", ``, "ami.username"},
		{"no secret", `ami: {username: u}`, "ami.secret"},
		{"no channel", strings.Replace(minimal, `channel: "PJSIP/{number}@trunk", `, "", 1), "originate.channel"},
		{"channel without number", strings.Replace(minimal, "{number}", "123", 1), "originate.channel"},
		{"channel twice number", strings.Replace(minimal, "{number}@trunk", "{number}{number}", 1), "originate.channel"},
		{"no queues", strings.Replace(minimal, `queues: [{name: "101", threads: 10}]`, "", 1), "queues"},
		{"zero threads", strings.Replace(minimal, "threads: 10", "threads: 0", 1), "queues[0].threads"},
		{"duplicate queue", strings.Replace(minimal, `[{name: "101", threads: 10}]`, `[{name: "101", threads: 1}, {name: "101", threads: 2}]`, 1), "queues[1].name"},
		{"bad level", minimal + "log: {level: loud}", "log.level"},
		{"bad format", minimal + "log: {format: xml}", "log.format"},
		{"bad port", minimal + "redis: {port: 70000}", "redis.port"},
		{"bare number duration", minimal + "timeouts: {command_ack: 5}", "not a duration"},
		{"garbage duration", minimal + "timeouts: {command_response: soon}", "not a duration"},
		{"zero retries", minimal + "retries: 0", "retries"},
		{"negative connections", strings.Replace(minimal, "secret: topsecret}", "secret: topsecret, connections: -1}", 1), "must be 1-64, or 0"},
		{"too many connections", strings.Replace(minimal, "secret: topsecret}", "secret: topsecret, connections: 65}", 1), "must be 1-64, or 0"},
		{"unknown field", minimal + "retrys: 3", "retrys"},
		{"bad tier", minimal + "acd: {operators: [{id: A, tier: boss}]}", "acd.operators[0].tier"},
		{"duplicate operator", minimal + "acd: {operators: [{id: A}, {id: A}]}", "acd.operators[1].id"},
		// The queue manager's id rule (monitor/acd.ValidID): caught here, with
		// the field's name, not when a queue manager starts.
		{"operator id not ASCII", minimal + "acd: {operators: [{id: José}]}", "acd.operators[0].id"},
		{"operator id with a slash", minimal + "acd: {operators: [{id: a/b}]}", "acd.operators[0].id"},
		{"operator id too long", minimal + "acd: {operators: [{id: " + strings.Repeat("A", 65) + "}]}", "acd.operators[0].id"},
		{"tls half", minimal + "http: {tls_cert: a.pem}", "http.tls_cert"},
		{"wrong type", minimal + "retries: many", "retries"},
		{"negative wait_replicas", minimal + "redis: {wait_replicas: -1}", "redis.wait_replicas"},
		{"huge wait_replicas", minimal + "redis: {wait_replicas: 17}", "redis.wait_replicas"},
		{"zero wait_timeout", minimal + "redis: {wait_timeout: 0s}", "redis.wait_timeout"},
		{"negative wait_timeout", minimal + "redis: {wait_timeout: -5ms}", "redis.wait_timeout"},
		{"huge wait_timeout", minimal + "redis: {wait_timeout: 3s}", "redis.wait_timeout"},
		{"prefix with braces", minimal + "redis: {prefix: 'a{b}'}", "redis.prefix"},
		{"public http without token", minimal + "http: {listen: '0.0.0.0:8080'}", "http.token"},
		{"all-interfaces http without token", minimal + "http: {listen: ':8080'}", "http.token"},
		{"public per-cell http without token", strings.Replace(minimal, "threads: 10}", "threads: 10, http_listen: '10.0.0.5:8080'}", 1), "http.token"},
		{"public acd without token", minimal + "acd: {listen: '0.0.0.0:5678'}", "acd.token"},
		{"short http token", minimal + "http: {token: abc}", "http.token"},
		{"bad ami guard", strings.Replace(minimal, "secret: topsecret}", "secret: topsecret, guard: maybe}", 1), "ami.guard"},
		{"huge acd token", minimal + "acd: {token: " + strings.Repeat("t", 257) + "}", "acd.token"},
		{"acd token with a space", minimal + "acd: {token: 'aaaaaaaa bbbbbbbbbbbb'}", "acd.token"},
		{"redis username with newline", minimal + `redis: {username: "a\nb"}`, "redis.username"},
		{"secret with newline", strings.Replace(minimal, "secret: topsecret", `secret: "a\nAction: Logoff"`, 1), "ami.username"},
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
			if strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("error leaks the secret: %q", err)
			}
		})
	}
}

func TestLoopbackListenersNeedNoToken(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "127.9.9.9:1", "[::1]:8080", "localhost:8080", "LOCALHOST:1"} {
		if !IsLoopback(addr) {
			t.Errorf("IsLoopback(%q) = false", addr)
		}
		if _, err := Parse([]byte(minimal + "http: {listen: '" + addr + "'}\nacd: {listen: '" + addr + "'}")); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{":8080", "0.0.0.0:1", "[::]:1", "10.1.2.3:80", "example.com:80", "nonsense"} {
		if IsLoopback(addr) {
			t.Errorf("IsLoopback(%q) = true", addr)
		}
	}
	tok := "0123456789abcdef0123"
	s, err := Parse([]byte(minimal + "http: {listen: '0.0.0.0:8080', token: " + tok + "}\nacd: {listen: ':5678', token: " + tok + "}"))
	if err != nil {
		t.Fatal(err)
	}
	if s.HTTP.Token.Reveal() != tok || s.ACD.Token.Reveal() != tok || fmt.Sprint(s.HTTP) == "" || strings.Contains(fmt.Sprintf("%+v", s), tok) {
		t.Fatalf("tokens: %+v", s)
	}
}

func TestAMIGuard(t *testing.T) {
	for _, tt := range []struct {
		host, guard string
		want        bool
	}{
		{"127.0.0.1", "auto", false}, {"localhost", "auto", false}, {"10.0.0.7", "auto", true},
		{"127.0.0.1", "on", true}, {"10.0.0.7", "off", false},
	} {
		a := AMI{Host: tt.host, Port: 5038, Guard: tt.guard}
		if got := a.Guarded(); got != tt.want {
			t.Errorf("%s guard %s: Guarded() = %v", tt.host, tt.guard, got)
		}
	}
}

func TestUnknownCell(t *testing.T) {
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Queue("999")
	if err == nil || !strings.Contains(err.Error(), `"999"`) || !strings.Contains(err.Error(), "101") {
		t.Fatalf("want an error naming the cell and the cells here, got %v", err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	s, err := Parse([]byte(minimal + "redis: {password: hunter2}"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	for _, out := range []string{fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), string(b)} {
		if strings.Contains(out, "topsecret") || strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.AMI.Secret.Reveal() != "topsecret" || s.Redis.Password.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the secret")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
	p := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(p, []byte("queues: [oops"), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "s.yaml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func TestParseOperators(t *testing.T) {
	ops, err := ParseOperators("A, B:supervisor,C:director")
	if err != nil || fmt.Sprint(ops) != "[{A operator} {B supervisor} {C director}]" {
		t.Fatalf("%v %v", ops, err)
	}
	for _, bad := range []string{"", "A,A", "A:king"} {
		if _, err := ParseOperators(bad); err == nil {
			t.Errorf("ParseOperators(%q) accepted", bad)
		}
	}
}

// pacedYAML is minimal with cell 101 in block style and the given lines
// under its pacing: a syntax error's line then holds one field only, so
// the error can name it.
func pacedYAML(pacing ...string) string {
	y := `
ami: {username: u, secret: topsecret}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s}
queues:
  - name: "101"
    threads: 10
    pacing:
`
	for _, l := range pacing {
		y += "      " + l + "\n"
	}
	return y
}

func TestPacingDefaults(t *testing.T) {
	s, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue("101")
	p := q.Pacing
	checks := []struct {
		name      string
		got, want any
	}{
		{"mode", p.Mode, PacingNone},
		{"paced", p.Paced(), false},
		{"ratio", p.Ratio, 0.0},
		{"max_abandon", p.MaxAbandon, Fraction(0.03)},
		{"abandon_after", p.AbandonAfter.D(), 2 * time.Second},
		{"max_level", p.MaxLevel, 3.0},
		{"window", p.Window.D(), 30 * time.Minute},
		{"timezone", p.Timezone, "UTC"},
		{"location", p.Location(), time.UTC},
		{"acd.start_logged_in", s.ACD.StartLoggedIn, true},
		{"operators", fmt.Sprint(s.OperatorsFor(q)), "[{A operator} {B operator}]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A pacing section that sets some fields keeps the defaults of the others;
// an empty one is all defaults.
func TestPacingPartial(t *testing.T) {
	s, err := Parse([]byte(pacedYAML("mode: ratio", "ratio: 2.5", "timezone: America/Sao_Paulo")))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Queues[0].Pacing
	want := DefaultPacing()
	want.Mode, want.Ratio, want.Timezone = PacingRatio, 2.5, "America/Sao_Paulo"
	want.loc = p.loc
	if p != want || !p.Paced() {
		t.Fatalf("pacing = %+v, want %+v", p, want)
	}
	if got := p.Location().String(); got != "America/Sao_Paulo" {
		t.Fatalf("location %s", got)
	}
	for _, y := range []string{pacedYAML(), pacedYAML("{}"), pacedYAML(`timezone: ""`)} {
		s, err := Parse([]byte(y))
		if err != nil {
			t.Fatalf("%s: %v", y, err)
		}
		if p := s.Queues[0].Pacing; p.Mode != PacingNone || p.MaxLevel != 3 || p.MaxAbandon != 0.03 || p.Location() != time.UTC {
			t.Fatalf("%s: pacing = %+v", y, p)
		}
	}
}

// A Queue built in Go (the demo, tests of cmd) has a zero Pacing: it means
// the defaults, not max_level 0.
func TestPacingOfAQueueBuiltInGo(t *testing.T) {
	s := Defaults()
	s.AMI.Username, s.AMI.Secret = "u", "topsecret"
	s.Originate = Originate{Channel: "PJSIP/{number}@t", Context: "c", Exten: "s", Priority: 1, Timeout: Duration(time.Second)}
	s.Queues = []Queue{{Name: "9", Threads: 1}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := s.Queues[0].Pacing; p.Mode != PacingNone || p.MaxLevel != DefaultMaxLevel || p.Location() != time.UTC {
		t.Fatalf("pacing = %+v", p)
	}
	s.Queues[0].Pacing = Pacing{Mode: PacingRatio, Ratio: 2}
	if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), "queues[0].pacing.max_abandon") {
		t.Fatalf("a half-filled Pacing: %v", err)
	}
}

func TestMaxAbandonSpellings(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want float64
	}{
		{`3%`, 0.03},
		{`"3%"`, 0.03},
		{`3 %`, 0.03},
		{`" 3 % "`, 0.03},
		{`0.03`, 0.03},
		{`"0.03"`, 0.03},
		{`.03`, 0.03},
		{`3e-2`, 0.03},
		{`2.5%`, 0.025},
		{`3.3%`, 0.033}, // parsed as 3.3e-2, not 3.3/100 (which is 0.033000000000000004)
		{`.5%`, 0.005},
		{`99.9%`, 0.999},
		{`0.999`, 0.999},
	} {
		s, err := Parse([]byte(pacedYAML("max_abandon: " + tt.yaml)))
		if err != nil {
			t.Errorf("max_abandon: %s: %v", tt.yaml, err)
			continue
		}
		if got := float64(s.Queues[0].Pacing.MaxAbandon); got != tt.want {
			t.Errorf("max_abandon: %s = %v, want %v", tt.yaml, got, tt.want)
		}
	}
}

func TestFractionString(t *testing.T) {
	for f, want := range map[Fraction]string{0.03: "3%", 0.025: "2.5%", 0.033: "3.3%", 0.001: "0.1%", 3: "300%"} {
		if got := f.String(); got != want {
			t.Errorf("Fraction(%v).String() = %q, want %q", float64(f), got, want)
		}
		if back, ok := parseFraction(want); !ok || Fraction(back) != f {
			t.Errorf("%q parses back to %v, %v", want, back, ok)
		}
	}
}

func TestBadPacingNamesTheField(t *testing.T) {
	const f = "queues[0].pacing."
	tests := []struct {
		name, yaml, field string
	}{
		{"unknown mode", pacedYAML("mode: turbo"), f + "mode"},
		{"mode in capitals", pacedYAML("mode: Ratio"), f + "mode"},
		{"empty mode", pacedYAML(`mode: ""`), f + "mode"},
		{"ratio mode without ratio", pacedYAML("mode: ratio"), f + "ratio"},
		{"zero ratio", pacedYAML("mode: ratio", "ratio: 0"), f + "ratio"},
		{"negative ratio", pacedYAML("mode: ratio", "ratio: -1.5"), f + "ratio"},
		{"negative ratio, other mode", pacedYAML("mode: progressive", "ratio: -1"), f + "ratio"},
		{"NaN ratio", pacedYAML("mode: ratio", "ratio: .nan"), f + "ratio"},
		{"huge ratio", pacedYAML("mode: ratio", "ratio: 250"), f + "ratio"},
		{"ratio not a number", pacedYAML("mode: ratio", "ratio: many"), f + "ratio"},
		{"zero max_abandon", pacedYAML("max_abandon: 0"), f + "max_abandon"},
		{"zero percent", pacedYAML("max_abandon: 0%"), f + "max_abandon"},
		{"hundred percent", pacedYAML("max_abandon: 100%"), f + "max_abandon"},
		{"fraction one", pacedYAML("max_abandon: 1"), f + "max_abandon"},
		{"bare 3", pacedYAML("max_abandon: 3"), f + "max_abandon"},
		{"negative percent", pacedYAML("max_abandon: -3%"), f + "max_abandon"},
		{"over 100 percent", pacedYAML("max_abandon: 150%"), f + "max_abandon"},
		{"NaN max_abandon", pacedYAML("max_abandon: .nan"), f + "max_abandon"},
		{"max_abandon words", pacedYAML("max_abandon: three percent"), f + "max_abandon"},
		{"decimal comma", pacedYAML(`max_abandon: "3,5%"`), f + "max_abandon"},
		{"percent first", pacedYAML(`max_abandon: "%3"`), f + "max_abandon"},
		{"percent twice", pacedYAML(`max_abandon: "3%%"`), f + "max_abandon"},
		{"exponent percent", pacedYAML(`max_abandon: "3e0%"`), f + "max_abandon"},
		{"just percent", pacedYAML(`max_abandon: "%"`), f + "max_abandon"},
		{"max_abandon list", pacedYAML("max_abandon: [3%]"), f + "max_abandon"},
		{"zero abandon_after", pacedYAML("abandon_after: 0s"), f + "abandon_after"},
		{"negative abandon_after", pacedYAML("abandon_after: -2s"), f + "abandon_after"},
		{"bare abandon_after", pacedYAML("abandon_after: 2"), f + "abandon_after"},
		{"long abandon_after", pacedYAML("abandon_after: 2m"), f + "abandon_after"},
		{"zero max_level", pacedYAML("max_level: 0"), f + "max_level"},
		{"max_level under 1", pacedYAML("max_level: 0.5"), f + "max_level"},
		{"infinite max_level", pacedYAML("max_level: .inf"), f + "max_level"},
		{"huge max_level", pacedYAML("max_level: 300"), f + "max_level"},
		{"zero window", pacedYAML("window: 0s"), f + "window"},
		{"short window", pacedYAML("window: 10s"), f + "window"},
		{"long window", pacedYAML("window: 48h"), f + "window"},
		{"unknown zone", pacedYAML("timezone: Mars/Olympus_Mons"), f + "timezone"},
		{"host's zone", pacedYAML("timezone: Local"), f + "timezone"},
		{"zone with spaces", pacedYAML(`timezone: " UTC"`), f + "timezone"},
		{"zone path", pacedYAML("timezone: ../../etc/passwd"), f + "timezone"},
		{"misspelt pacing field", pacedYAML("max_abandonment: 3%"), f + "max_abandonment"},
		{"pacing not a map", strings.Replace(minimal, "threads: 10}", "threads: 10, pacing: ratio}", 1), "queues[0].pacing"},
		{"second cell", minimal[:len(minimal)-2] + `, {name: "102", threads: 1, pacing: {mode: fast}}]`, "queues[1].pacing.mode"},
		{"empty cell operators", strings.Replace(minimal, "threads: 10}", "threads: 10, operators: []}", 1), "queues[0].operators"},
		{"duplicate cell operator", strings.Replace(minimal, "threads: 10}", "threads: 10, operators: [{id: C}, {id: C}]}", 1), "queues[0].operators[1].id"},
		{"empty cell operator id", strings.Replace(minimal, "threads: 10}", "threads: 10, operators: [{id: C}, {tier: director}]}", 1), "queues[0].operators[1].id"},
		{"cell operator id with a space", strings.Replace(minimal, "threads: 10}", "threads: 10, operators: [{id: 'C D'}]}", 1), "queues[0].operators[0].id"},
		{"bad cell operator tier", strings.Replace(minimal, "threads: 10}", "threads: 10, operators: [{id: C, tier: boss}]}", 1), "queues[0].operators[0].tier"},
		{"start_logged_in not a bool", minimal + "acd: {start_logged_in: maybe}", "acd.start_logged_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			// The field first: it is what the operator looks for.
			if !strings.HasPrefix(err.Error(), tt.field+":") && !strings.HasPrefix(err.Error(), tt.field+" (line") {
				t.Fatalf("error %q does not start with %q", err, tt.field)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("error leaks the secret: %q", err)
			}
		})
	}
}

func TestOperatorsFor(t *testing.T) {
	y := minimal[:len(minimal)-2] + `, {name: "102", threads: 1, operators: [{id: A}, {id: S, tier: supervisor}]}]
acd: {operators: [{id: A}, {id: B}], start_logged_in: false}`
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	q101, _ := s.Queue("101")
	q102, _ := s.Queue("102")
	if got := fmt.Sprint(s.OperatorsFor(q101)); got != "[{A operator} {B operator}]" {
		t.Errorf("cell 101 (no operators of its own): %s", got)
	}
	// An id may be on acd.operators and on a cell's list: the cell's list
	// replaces acd.operators, it does not add to it.
	if got := fmt.Sprint(s.OperatorsFor(q102)); got != "[{A operator} {S supervisor}]" {
		t.Errorf("cell 102: %s", got)
	}
	if s.ACD.StartLoggedIn {
		t.Error("start_logged_in: false read as true")
	}
}

func TestPacingPrintsNoSecret(t *testing.T) {
	s, err := Parse([]byte(pacedYAML("mode: predictive", "max_abandon: 2%", "timezone: Europe/London")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	for _, out := range []string{fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), string(b)} {
		if strings.Contains(out, "topsecret") {
			t.Fatalf("secret printed: %s", out)
		}
	}
}

// The shipped file writes cell 101's pacing out with its defaults: the
// comments there must not drift from DefaultPacing.
func TestShippedPacingIsTheDefault(t *testing.T) {
	s, err := Load(filepath.Join("..", "configs", "settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue("101")
	want := DefaultPacing()
	want.loc = q.Pacing.loc
	if q.Pacing != want {
		t.Fatalf("configs/settings.yaml cell 101 pacing = %+v, want the defaults %+v", q.Pacing, want)
	}
	if !s.ACD.StartLoggedIn {
		t.Fatal("configs/settings.yaml: acd.start_logged_in is not the default true")
	}
}

// The shipped file's commented examples of a cell's ratio and operators
// parse when uncommented.
func TestShippedPacingExamplesAreValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "configs", "settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := string(data)
	for _, c := range []struct{ old, new string }{
		{"mode: none ", "mode: ratio"},
		{"# ratio: 2.5", "ratio: 2.5"},
		{"# operators:", "operators:"},
		{"#   - {id: C", "  - {id: C"},
		{"#   - {id: S", "  - {id: S"},
	} {
		if !strings.Contains(y, c.old) {
			t.Fatalf("configs/settings.yaml no longer has %q", c.old)
		}
		y = strings.Replace(y, c.old, c.new, 1)
	}
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("configs/settings.yaml with its examples uncommented: %v", err)
	}
	q, _ := s.Queue("101")
	if q.Pacing.Mode != PacingRatio || q.Pacing.Ratio != 2.5 || fmt.Sprint(s.OperatorsFor(q)) != "[{C operator} {S supervisor}]" {
		t.Fatalf("cell 101: %+v, operators %v", q.Pacing, s.OperatorsFor(q))
	}
}
