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
		{"tls half", minimal + "http: {tls_cert: a.pem}", "http.tls_cert"},
		{"wrong type", minimal + "retries: many", "retries"},
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
