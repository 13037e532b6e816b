// Package config loads configs/settings.yaml into typed settings, applies the
// contract's defaults and validates every field, so that a bad setting stops
// the daemon at start with one line naming the field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Settings is configs/settings.yaml.
type Settings struct {
	Log       Log       `yaml:"log"`
	Redis     Redis     `yaml:"redis"`
	AMI       AMI       `yaml:"ami"`
	Timeouts  Timeouts  `yaml:"timeouts"`
	Retries   int       `yaml:"retries"`
	Originate Originate `yaml:"originate"`
	Trunks    []Trunk   `yaml:"trunks"`
	Queues    []Queue   `yaml:"queues"`
	ACD       ACD       `yaml:"acd"`
	HTTP      HTTP      `yaml:"http"`

	// Path is the file the settings were read from (not a YAML field).
	Path string `yaml:"-"`
}

// Log is where and how the daemon logs.
type Log struct {
	Level    string `yaml:"level"`    // trace, debug, info, warn, error
	Format   string `yaml:"format"`   // json or console
	Location string `yaml:"location"` // file path, or "-" for stderr
}

// Redis is the connection to the Redis shared with Multcall.
type Redis struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// Username is a Redis 6+ ACL user (docs/OPERATIONS.md lists the
	// commands it needs); empty = the default user.
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	DB       int    `yaml:"db"`
	TLS      bool   `yaml:"tls"`
	Prefix   string `yaml:"prefix"`
	// Sentinel and Cluster replace host/port (redis.go); at most one.
	Sentinel Sentinel `yaml:"sentinel"`
	Cluster  Cluster  `yaml:"cluster"`
	// WaitReplicas (N) makes the dialing decision durable (contract section
	// 2, Durability): the call's "originating" state, its ACK and its
	// result are acknowledged by N replicas (WAIT) before the Originate is
	// written and before the result is forgotten. 0 = off.
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds one WAIT; a WAIT that times out holds the call
	// undialed (it tries again within its ring time) and stops claiming.
	WaitTimeout Duration `yaml:"wait_timeout"`
}

// Bounds of the durability settings. A WAIT holds a dedicated connection
// and, when it times out, the call: it must stay well under the Redis
// client's 3 s read timeout and a small part of a call's ring time.
const (
	DefaultWaitTimeout = 100 * time.Millisecond
	MaxWaitTimeout     = 2 * time.Second
	MaxWaitReplicas    = 16
)

// Addr is host:port.
func (r Redis) Addr() string { return net.JoinHostPort(r.Host, strconv.Itoa(r.Port)) }

// AMI is the Asterisk Manager Interface login.
type AMI struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Username string `yaml:"username"`
	Secret   Secret `yaml:"secret"`
	// Connections is how many AMI sessions send actions (events off); one
	// more session receives the events. amigo allows one action in flight
	// per session, so this bounds Originates in flight to Asterisk. 0
	// (the default): sized from the cell's threads, see SessionsFor.
	Connections int `yaml:"connections"`
	// Guard bounds what the AMI library can buffer from the peer (lines of
	// at most 64 KiB, messages of 1 MiB) through a loopback relay: "on",
	// "off", or "auto" (the default): on unless Asterisk is on this host.
	Guard string `yaml:"guard"`
}

// Guarded reports whether AMI input goes through the line guard.
func (a AMI) Guarded() bool {
	switch a.Guard {
	case "on":
		return true
	case "off":
		return false
	}
	return !IsLoopback(a.Addr())
}

// SessionsFor is the number of action sessions for a cell of threads: the
// setting, or when it is 0 one per 64 threads, at least 2 and at most 16.
// An Originate holds its session for one round trip (a fraction of a
// millisecond), so at saturation the sessions, not Redis, pace the cell:
// with 1,000 threads the bench measured 5,300 calls/s on 2 sessions,
// 6,100 on 4, 7,800 on 8 and 8,800 on 16 (docs/PERFORMANCE.md).
func (a AMI) SessionsFor(threads int) int {
	if a.Connections > 0 {
		return a.Connections
	}
	return min(max(threads/64, 2), 16)
}

// Addr is host:port.
func (a AMI) Addr() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// Timeouts of the call path.
type Timeouts struct {
	CommandResponse Duration `yaml:"command_response"`
	CommandACK      Duration `yaml:"command_ack"`
	// ShutdownGrace is how long SIGTERM waits for calls in progress before
	// leaving them claimed for recovery.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// Originate says what Asterisk dials and where an answered call goes.
type Originate struct {
	Channel  string   `yaml:"channel"`
	Context  string   `yaml:"context"`
	Exten    string   `yaml:"exten"`
	Priority int      `yaml:"priority"`
	Timeout  Duration `yaml:"timeout"`
	CallerID string   `yaml:"caller_id"`
}

// Queue is one cell this host may run.
type Queue struct {
	Name    string `yaml:"name"`
	Threads int    `yaml:"threads"`
	// HTTPListen overrides http.listen for this cell's daemon: every cell
	// of a host shares the settings file, and each daemon needs its own
	// port for /metrics and /healthz.
	HTTPListen string `yaml:"http_listen"`
	// Trunk names a trunks[] entry whose limits and channel the cell
	// dials with; empty = originate.channel and no shared limits.
	Trunk string `yaml:"trunk"`
	// Pacing decides how many of the threads to use (contract section 6);
	// defaults to none, every command dialed as it arrives.
	Pacing Pacing `yaml:"pacing"`
	// Operators replaces acd.operators for this cell: cells of one host
	// are different teams. nil = acd.operators; see OperatorsFor.
	Operators []Operator `yaml:"operators"`
}

// HTTPListen is the HTTP address of cell q's daemon ("" = off).
func (s *Settings) HTTPListen(q Queue) string {
	if q.HTTPListen != "" {
		return q.HTTPListen
	}
	return s.HTTP.Listen
}

// Operator of the call queue manager.
type Operator struct {
	ID   string `yaml:"id"`
	Tier string `yaml:"tier"`
}

// ACD is the call queue manager.
type ACD struct {
	Operators []Operator `yaml:"operators"`
	// StartLoggedIn false starts the configured operators logged out
	// until they log in: a paced cell must not dial for operators who are
	// not at their desks. true (the default) is the seed's behaviour.
	StartLoggedIn bool     `yaml:"start_logged_in"`
	RingTimeout   Duration `yaml:"ring_timeout"`
	Listen        string   `yaml:"listen"`
	// Token, when set, is what a TCP client of "queue serve" must send
	// first (contract section 5). Required when Listen is not loopback.
	Token Secret `yaml:"token"`
}

// HTTP is the optional HTTP(S) listener.
type HTTP struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Pprof mounts Go's profiler at /debug/pprof/ (heap, goroutines, CPU):
	// off by default, because a profile shows internals and costs CPU.
	Pprof bool `yaml:"pprof"`
	// Token is the bearer token /api/ and /debug/pprof/ require (contract
	// section 4). Required when the listener is not loopback.
	Token Secret `yaml:"token"`
	// AllowUnauthenticatedLoopback lets /api/ answer without a token on a
	// loopback listener: for a single-user test box only, since any local
	// user could then make the PBX dial.
	AllowUnauthenticatedLoopback bool `yaml:"allow_unauthenticated_loopback"`
}

// Tiers in delivery order.
var Tiers = []string{"operator", "supervisor", "director"}

// Defaults returns the settings every field falls back to.
func Defaults() Settings {
	return Settings{
		Log:      Log{Level: "debug", Format: "json", Location: "-"},
		Redis:    Redis{Host: "127.0.0.1", Port: 6379, Prefix: "dialbridge", WaitTimeout: Duration(DefaultWaitTimeout)},
		AMI:      AMI{Host: "127.0.0.1", Port: 5038, Guard: "auto"},
		Timeouts: Timeouts{CommandResponse: Duration(5 * time.Second), CommandACK: Duration(5 * time.Second), ShutdownGrace: Duration(30 * time.Second)},
		Retries:  3,
		Originate: Originate{
			Priority: 1,
			Timeout:  Duration(30 * time.Second),
		},
		ACD: ACD{
			Operators:     []Operator{{ID: "A", Tier: "operator"}, {ID: "B", Tier: "operator"}},
			StartLoggedIn: true,
			RingTimeout:   Duration(10 * time.Second),
			Listen:        "127.0.0.1:5678",
		},
	}
}

// Load reads and validates a settings file.
func Load(path string) (*Settings, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("settings %s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

// Parse decodes YAML over the defaults and validates the result. Unknown
// fields are errors: a misspelt field silently ignored is a bug in waiting.
func Parse(data []byte) (*Settings, error) {
	s := Defaults()
	acdDefault := s.ACD.Operators
	s.ACD.Operators = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is io.EOF: it decodes to the defaults (and then fails
	// validation for the required fields, with their names).
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, nameFields(cleanYAMLError(err), data)
	}
	if s.ACD.Operators == nil {
		s.ACD.Operators = acdDefault
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// nameFields rewrites yaml.v3's "line N: …" into "field.path (line N): …":
// yaml reports type errors by line only, and the operator wants the field.
func nameFields(err error, data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	paths := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				// A scalar value names its line; so does a flow value
				// inside a collection opened on the same line (pacing:
				// {max_abandon: [3%]} is max_abandon's error, not pacing's).
				v := n.Content[i+1]
				if old, ok := paths[v.Line]; !ok || v.Kind == yaml.ScalarNode || strings.HasPrefix(p, old+".") {
					paths[v.Line] = p
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := paths[c.Line]; !ok {
					paths[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	re := regexp.MustCompile(`line (\d+):`)
	msg := re.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(re.FindStringSubmatch(m)[1])
		if p, ok := paths[n]; ok {
			return p + " (line " + strconv.Itoa(n) + "):"
		}
		return m
	})
	return errors.New(msg)
}

func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return errors.New(msg)
}

// FieldError names the field at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks every field; the first problem found is returned.
func (s *Settings) Validate() error {
	switch s.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "must be trace, debug, info, warn or error, got %q", s.Log.Level)
	}
	switch s.Log.Format {
	case "json", "console":
	default:
		return fieldErr("log.format", "must be json or console, got %q", s.Log.Format)
	}
	if s.Log.Location == "" {
		return fieldErr("log.location", "must be a file path or - for stderr")
	}
	if s.Redis.Host == "" {
		return fieldErr("redis.host", "is required")
	}
	if err := checkPort("redis.port", s.Redis.Port); err != nil {
		return err
	}
	if strings.ContainsAny(s.Redis.Username, " \t\r\n") {
		return fieldErr("redis.username", "may not contain spaces or line breaks")
	}
	if s.Redis.DB < 0 || s.Redis.DB > 15 {
		return fieldErr("redis.db", "must be 0-15, got %d", s.Redis.DB)
	}
	if err := s.Redis.validateHA(); err != nil {
		return err
	}
	if s.Redis.Prefix == "" || strings.ContainsAny(s.Redis.Prefix, "{} \t\r\n") {
		return fieldErr("redis.prefix", "must be non-empty without braces or spaces, got %q", s.Redis.Prefix)
	}
	if s.Redis.WaitReplicas < 0 || s.Redis.WaitReplicas > MaxWaitReplicas {
		return fieldErr("redis.wait_replicas", "must be 0 (off) to %d, got %d", MaxWaitReplicas, s.Redis.WaitReplicas)
	}
	if s.Redis.WaitTimeout <= 0 || s.Redis.WaitTimeout.D() > MaxWaitTimeout {
		return fieldErr("redis.wait_timeout", "must be more than 0 and at most %s, got %s", MaxWaitTimeout, s.Redis.WaitTimeout)
	}
	if s.AMI.Host == "" {
		return fieldErr("ami.host", "is required")
	}
	if err := checkPort("ami.port", s.AMI.Port); err != nil {
		return err
	}
	if s.AMI.Username == "" {
		return fieldErr("ami.username", "is required")
	}
	if s.AMI.Secret == "" {
		return fieldErr("ami.secret", "is required")
	}
	if strings.ContainsAny(s.AMI.Username, "\r\n") || strings.ContainsAny(string(s.AMI.Secret), "\r\n") {
		return fieldErr("ami.username", "username and secret may not contain line breaks")
	}
	switch s.AMI.Guard {
	case "auto", "on", "off":
	default:
		return fieldErr("ami.guard", "must be auto, on or off, got %q", s.AMI.Guard)
	}
	if s.AMI.Connections < 0 || s.AMI.Connections > 64 {
		return fieldErr("ami.connections", "must be 1-64, or 0 to size it from the cell's threads, got %d", s.AMI.Connections)
	}
	if err := checkDuration("timeouts.command_response", s.Timeouts.CommandResponse, 100*time.Millisecond, 5*time.Minute); err != nil {
		return err
	}
	if err := checkDuration("timeouts.command_ack", s.Timeouts.CommandACK, 100*time.Millisecond, 5*time.Minute); err != nil {
		return err
	}
	if err := checkDuration("timeouts.shutdown_grace", s.Timeouts.ShutdownGrace, 0, time.Hour); err != nil {
		return err
	}
	if s.Retries < 1 || s.Retries > 10 {
		return fieldErr("retries", "must be 1-10 (the number of attempts in all), got %d", s.Retries)
	}
	if err := s.Originate.validate(); err != nil {
		return err
	}
	if err := validateTrunks(s.Trunks); err != nil {
		return err
	}
	if len(s.Queues) == 0 {
		return fieldErr("queues", "is required: list the cells this host may run")
	}
	seen := map[string]bool{}
	for i, q := range s.Queues {
		f := fmt.Sprintf("queues[%d]", i)
		if q.Name == "" {
			return fieldErr(f+".name", "is required")
		}
		if !validName(q.Name) {
			return fieldErr(f+".name", "may only contain A-Z a-z 0-9 . _ -, got %q", q.Name)
		}
		if seen[q.Name] {
			return fieldErr(f+".name", "cell %q is listed twice", q.Name)
		}
		seen[q.Name] = true
		if q.Threads < 1 || q.Threads > 100000 {
			return fieldErr(f+".threads", "must be 1-100000, got %d", q.Threads)
		}
		if err := checkQueueTrunk(f+".trunk", q, s.Trunks); err != nil {
			return err
		}
		if err := s.Queues[i].Pacing.validate(f + ".pacing"); err != nil {
			return err
		}
		if q.Operators != nil {
			if err := validateOperators(f+".operators", q.Operators); err != nil {
				return err
			}
		}
		if q.HTTPListen != "" {
			if _, _, err := net.SplitHostPort(q.HTTPListen); err != nil {
				return fieldErr(f+".http_listen", "must be host:port, got %q", q.HTTPListen)
			}
			if !IsLoopback(q.HTTPListen) && s.HTTP.Token == "" {
				return fieldErr("http.token", "is required: %s.http_listen %q is not a loopback address, and whoever reaches it could make the PBX dial", f, q.HTTPListen)
			}
		}
	}
	if err := s.ACD.validate(); err != nil {
		return err
	}
	if (s.HTTP.TLSCert == "") != (s.HTTP.TLSKey == "") {
		return fieldErr("http.tls_cert", "tls_cert and tls_key must be set together")
	}
	if s.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(s.HTTP.Listen); err != nil {
			return fieldErr("http.listen", "must be host:port, got %q", s.HTTP.Listen)
		}
		if !IsLoopback(s.HTTP.Listen) && s.HTTP.Token == "" {
			return fieldErr("http.token", "is required: http.listen %q is not a loopback address, and whoever reaches it could make the PBX dial", s.HTTP.Listen)
		}
	}
	if err := checkToken("http.token", s.HTTP.Token); err != nil {
		return err
	}
	return checkToken("acd.token", s.ACD.Token)
}

// checkToken refuses tokens that cannot travel in one header or one JSON
// line, and tokens too short to resist guessing.
func checkToken(field string, t Secret) error {
	if t == "" {
		return nil
	}
	if len(t) < 16 || len(t) > 256 {
		return fieldErr(field, "must be 16-256 characters (got %d): a short token can be guessed, a long one does not fit a request line", len(t))
	}
	for _, r := range t.Reveal() {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\\' {
			return fieldErr(field, "may only contain printable characters without spaces, quotes or backslashes")
		}
	}
	return nil
}

// IsLoopback reports whether a listen address host:port only accepts
// connections from this machine: 127.0.0.0/8, ::1 or localhost. An empty
// host (":8080") listens on every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (o Originate) validate() error {
	if err := checkChannel("originate.channel", o.Channel); err != nil {
		return err
	}
	for name, v := range map[string]string{"originate.context": o.Context, "originate.exten": o.Exten, "originate.caller_id": o.CallerID} {
		if strings.ContainsAny(v, "\r\n\x00") {
			return fieldErr(name, "may not contain line breaks")
		}
	}
	if o.Context == "" {
		return fieldErr("originate.context", "is required")
	}
	if o.Exten == "" {
		return fieldErr("originate.exten", "is required")
	}
	if o.Priority < 1 {
		return fieldErr("originate.priority", "must be ≥ 1, got %d", o.Priority)
	}
	return checkDuration("originate.timeout", o.Timeout, time.Second, 5*time.Minute)
}

// checkChannel checks a channel template (originate.channel, a trunk's
// channel): it reaches AMI as one header line, so a line break would inject
// actions, and {number} must appear once or the call goes nowhere or twice.
func checkChannel(field, c string) error {
	if c == "" {
		return fieldErr(field, "is required, e.g. PJSIP/{number}@trunk")
	}
	if strings.ContainsAny(c, "\r\n\x00") {
		return fieldErr(field, "may not contain line breaks")
	}
	if strings.Count(c, "{number}") != 1 {
		return fieldErr(field, "must contain {number} exactly once, got %q", c)
	}
	if !strings.Contains(c, "/") {
		return fieldErr(field, "must be TECH/data, e.g. PJSIP/{number}@trunk, got %q", c)
	}
	return nil
}

func (a ACD) validate() error {
	if err := validateOperators("acd.operators", a.Operators); err != nil {
		return err
	}
	if err := checkDuration("acd.ring_timeout", a.RingTimeout, 100*time.Millisecond, time.Hour); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fieldErr("acd.listen", "must be host:port, got %q", a.Listen)
	}
	if !IsLoopback(a.Listen) && a.Token == "" {
		return fieldErr("acd.token", "is required: acd.listen %q is not a loopback address, and whoever reaches it could answer and reject calls", a.Listen)
	}
	return nil
}

// Queue returns the settings of cell name, or an error naming the cells
// this host may run.
func (s *Settings) Queue(name string) (Queue, error) {
	names := make([]string, 0, len(s.Queues))
	for _, q := range s.Queues {
		if q.Name == name {
			return q, nil
		}
		names = append(names, q.Name)
	}
	return Queue{}, fmt.Errorf("cell %q is not in queues of %s (cells here: %s)", name, orDefault(s.Path, "settings"), strings.Join(names, ", "))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return len(s) <= 64
}

func checkPort(field string, p int) error {
	if p < 1 || p > 65535 {
		return fieldErr(field, "must be 1-65535, got %d", p)
	}
	return nil
}

func checkDuration(field string, d Duration, min, max time.Duration) error {
	if time.Duration(d) < min || time.Duration(d) > max {
		return fieldErr(field, "must be between %s and %s, got %s", min, max, time.Duration(d))
	}
	return nil
}

// ParseOperators parses the --operators flag: "A,B" or "A:operator,S:supervisor".
func ParseOperators(s string) ([]Operator, error) {
	var ops []Operator
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, tier, _ := strings.Cut(part, ":")
		if tier == "" {
			tier = "operator"
		}
		ops = append(ops, Operator{ID: id, Tier: tier})
	}
	a := ACD{Operators: ops, RingTimeout: Duration(10 * time.Second), Listen: "127.0.0.1:5678"}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("--operators: %w", err)
	}
	return ops, nil
}
