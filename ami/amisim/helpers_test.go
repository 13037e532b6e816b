package amisim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// amiMsg is one message read by the test client, headers in wire order.
type amiMsg struct {
	keys []string
	vals []string
	raw  string
}

func (m amiMsg) get(k string) string {
	for i, key := range m.keys {
		if key == k {
			return m.vals[i]
		}
	}
	return ""
}

func (m amiMsg) has(k string) bool {
	for _, key := range m.keys {
		if key == k {
			return true
		}
	}
	return false
}

func (m amiMsg) event() string { return m.get("Event") }

func (m amiMsg) String() string { return strings.ReplaceAll(m.raw, "\r\n", " | ") }

// client is a minimal AMI client over a plain net.Conn.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dial(t testing.TB, srv *Server) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil {
		t.Fatalf("banner: %v", err)
	}
	if line != banner {
		t.Fatalf("banner = %q, want %q", line, banner)
	}
	return c
}

func (c *client) send(headers ...string) {
	c.t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read reads one message, failing on timeout or malformed framing.
func (c *client) read(timeout time.Duration) (amiMsg, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	var m amiMsg
	var raw strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return m, err
		}
		raw.WriteString(line)
		if !strings.HasSuffix(line, "\r\n") {
			return m, fmt.Errorf("line without CRLF: %q", line)
		}
		line = line[:len(line)-2]
		if line == "" {
			if len(m.keys) == 0 {
				return m, errors.New("empty message (stray blank line)")
			}
			m.raw = raw.String()
			return m, nil
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			if strings.HasSuffix(line, ":") {
				k, v = line[:len(line)-1], ""
			} else {
				return m, fmt.Errorf("bad header line %q", line)
			}
		}
		m.keys = append(m.keys, k)
		m.vals = append(m.vals, v)
	}
}

func (c *client) mustRead() amiMsg {
	c.t.Helper()
	m, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// until reads messages until one satisfies pred; it returns that one and
// the ones before it.
func (c *client) until(pred func(amiMsg) bool) (amiMsg, []amiMsg) {
	c.t.Helper()
	var skipped []amiMsg
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting: %v (after %d messages)", err, len(skipped))
		}
		if pred(m) {
			return m, skipped
		}
		skipped = append(skipped, m)
	}
	c.t.Fatalf("timeout waiting for a message")
	return amiMsg{}, nil
}

// response reads until the Response carrying actionID.
func (c *client) response(actionID string) amiMsg {
	c.t.Helper()
	m, _ := c.until(func(m amiMsg) bool { return !m.has("Event") && m.has("Response") && m.get("ActionID") == actionID })
	return m
}

// expectNothing checks that nothing arrives for d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	m, err := c.read(d)
	if err == nil {
		c.t.Fatalf("unexpected message: %s", m)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("unexpected error: %v", err)
	}
}

// expectClosed checks that the server closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	for {
		m, err := c.read(5 * time.Second)
		if err == nil {
			c.t.Logf("message before close: %s", m)
			continue
		}
		if errors.Is(err, io.EOF) || isReset(err) {
			return
		}
		c.t.Fatalf("expected close, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// login logs in; events is the Login "Events" header ("" to omit). It
// consumes the response and the events that follow a login.
func (c *client) login(events string) {
	c.t.Helper()
	h := []string{"Action", "Login", "Username", "dialbridge", "Secret", "secret", "ActionID", "login"}
	if events != "" {
		h = append(h, "Events", events)
	}
	c.send(h...)
	r := c.mustRead()
	if r.get("Response") != "Success" || r.get("Message") != "Authentication accepted" {
		c.t.Fatalf("login: %s", r)
	}
}

// loginDrain logs in with events on and consumes FullyBooted and this
// session's own SuccessfulAuth.
func (c *client) loginDrain() {
	c.t.Helper()
	c.login("")
	c.until(func(m amiMsg) bool { return m.event() == "SuccessfulAuth" })
}

func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.AuthDelay == 0 {
		cfg.AuthDelay = 20 * time.Millisecond
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 2 * time.Second // -race on 2 cores: be lenient unless a test says otherwise
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// callTrace is everything a listener saw of one call.
type callTrace struct {
	all      []amiMsg // every event of the call in order, OriginateResponse included
	or       amiMsg
	newchans []amiMsg
	states   []amiMsg
	hangups  []amiMsg
}

// traceCall reads events until the OriginateResponse for actionID and
// wantHangups Hangup events for the call's channels (those whose name starts
// with dial) have been seen.
func (c *client) traceCall(actionID, dial string, wantHangups int) callTrace {
	c.t.Helper()
	var tr callTrace
	gotOR := false
	deadline := time.Now().Add(10 * time.Second)
	for !gotOR || len(tr.hangups) < wantHangups {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("trace %s: %v (so far: OR=%v hangups=%d)", actionID, err, gotOR, len(tr.hangups))
		}
		switch m.event() {
		case "OriginateResponse":
			if m.get("ActionID") == actionID {
				tr.or, gotOR = m, true
				tr.all = append(tr.all, m)
			}
		case "Newchannel", "Newstate", "Hangup":
			if !strings.HasPrefix(m.get("Channel"), dial+"-") {
				continue
			}
			tr.all = append(tr.all, m)
			switch m.event() {
			case "Newchannel":
				tr.newchans = append(tr.newchans, m)
			case "Newstate":
				tr.states = append(tr.states, m)
			case "Hangup":
				tr.hangups = append(tr.hangups, m)
			}
		}
	}
	return tr
}

func (tr callTrace) hangupOf(suffix string) amiMsg {
	for _, h := range tr.hangups {
		if strings.HasSuffix(h.get("Channel"), suffix) {
			return h
		}
	}
	return amiMsg{}
}

func (tr callTrace) order() string {
	var parts []string
	for _, m := range tr.all {
		s := m.event()
		if ch := m.get("Channel"); m.event() != "OriginateResponse" {
			s += ch[strings.LastIndexByte(ch, ';'):]
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendRaw writes s as it is.
func (c *client) sendRaw(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}
