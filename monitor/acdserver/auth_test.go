package acdserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

const testToken = "s3cret-token-0123456789"

const authLine = `{"command": "auth", "token": "` + testToken + `"}`

// closedAfter reads c to its end and returns the lines it got: the server
// must close the connection (within a generous deadline).
func closedAfter(t *testing.T, c *rawClient) []string {
	t.Helper()
	var lines []string
	_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		l, err := c.br.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server did not close the connection (got %q)", lines)
			}
			return lines
		}
	}
}

// roundTrip checks that c is still served: one command, its one error.
func roundTrip(t *testing.T, c *rawClient, id string) {
	t.Helper()
	if err := c.send(`{"command": "status", "id": "` + id + `"}`); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if l, err := c.line(); err != nil || l != `{"error": "unknown call `+id+`"}` {
		t.Fatalf("%s: %q %v", id, l, err)
	}
}

func authed(t *testing.T, addr string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	if err := c.send(authLine); err != nil {
		t.Fatal(err)
	}
	if l, err := c.line(); err != nil || l != `{"response": "authenticated"}` {
		t.Fatalf("auth: %q %v", l, err)
	}
	return c
}

func TestAuthToken(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, _ := startServer(t, e, func(s *Server) { s.Token = testToken })
	c := authed(t, addr)
	roundTrip(t, c, "1")
	// Authenticating again is harmless (the client uses it as a marker).
	c.send(authLine)
	if l, err := c.line(); err != nil || l != `{"response": "authenticated"}` {
		t.Fatalf("second auth: %q %v", l, err)
	}
	roundTrip(t, c, "2")

	for name, first := range map[string]string{
		"command first": `{"command": "call", "id": "1"}`,
		"wrong token":   `{"command": "auth", "token": "s3cret-token-0123456788"}`,
		"prefix":        `{"command": "auth", "token": "s3cret"}`,
		"empty token":   `{"command": "auth", "token": ""}`,
		"no token":      `{"command": "auth"}`,
		"not JSON":      `auth ` + testToken,
		"token as id":   `{"command": "auth", "id": "` + testToken + `"}`,
	} {
		c := dialRaw(t, addr)
		c.send(first)
		c.send(`{"command": "call", "id": "2"}`)
		lines := closedAfter(t, c)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], `{"error": `) {
			t.Errorf("%s: got %q, want one error and the end", name, lines)
		}
		if strings.Contains(lines[0], testToken) {
			t.Errorf("%s: the error shows the token: %q", name, lines[0])
		}
	}
	if s := e.Snapshot(); len(s.Calls) != 0 {
		t.Errorf("a command ran without authentication: %+v", s.Calls)
	}
	// After a wrong token the connection is gone even if it was
	// authenticated before.
	c.send(`{"command": "auth", "token": "nope-nope-nope-nope"}`)
	if lines := closedAfter(t, c); len(lines) != 1 {
		t.Errorf("wrong token after auth: %q", lines)
	}
}

func TestAuthWithoutToken(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, _ := startServer(t, e, nil)
	c := dialRaw(t, addr)
	roundTrip(t, c, "1") // no auth needed
	c.send(`{"command": "auth", "token": "anything"}`)
	if l, err := c.line(); err != nil || l != `{"response": "authenticated"}` {
		t.Fatalf("%q %v", l, err)
	}
	roundTrip(t, c, "2")
}

func TestAuthDeadline(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, func(s *Server) { s.Token = testToken; s.AuthTimeout = 300 * time.Millisecond })
	start := time.Now() // before the server sets its deadlines
	silent := dialRaw(t, addr)
	slow := dialRaw(t, addr)
	slow.nc.Write([]byte(`{"command": "auth", "tok`)) // half a line, then nothing
	for _, c := range []*rawClient{silent, slow} {
		lines := closedAfter(t, c)
		if len(lines) != 1 || !strings.Contains(lines[0], "not authenticated within 300ms") {
			t.Errorf("got %q", lines)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v, before the deadline", d)
	}
	// An authenticated client stays however long it is idle.
	c := authed(t, addr)
	waitFor(t, func() bool { return srv.Clients() == 1 })
	time.Sleep(600 * time.Millisecond) // twice the deadline: nothing must happen
	roundTrip(t, c, "1")
}

// Unauthenticated sockets hear nothing: broadcasts carry call ids.
func TestNoBroadcastBeforeAuth(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, func(s *Server) { s.Token = testToken })
	spy := dialRaw(t, addr)
	op := authed(t, addr)
	waitFor(t, func() bool { return srv.Clients() == 2 })
	e.Inject(`{"command": "call", "id": "secret-call"}`, "")
	if l, err := op.line(); err != nil || l != `{"response": "Call secret-call received"}` {
		t.Fatalf("%q %v", l, err)
	}
	spy.send("{}")
	for _, l := range closedAfter(t, spy) {
		if strings.Contains(l, "secret-call") {
			t.Fatalf("unauthenticated socket got %q", l)
		}
	}
}

// Issue 13 item 7: idle sockets beyond the cap locked every new client
// out, forever. Open the cap and then some, idle, and a real client is
// still served, with a token and without.
func TestIdleSocketsDoNotLockOut(t *testing.T) {
	const extra = 50
	for _, token := range []string{"", testToken} {
		name := "without token"
		if token != "" {
			name = "with token"
		}
		t.Run(name, func(t *testing.T) {
			e := startEngine(t, time.Hour, Options{})
			addr, srv := startServer(t, e, func(s *Server) { s.Token = token })
			cap := DefaultMaxClients
			idle := make([]net.Conn, 0, cap+extra)
			t.Cleanup(func() {
				for _, nc := range idle {
					nc.Close()
				}
			})
			for range cap + extra {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				idle = append(idle, nc)
			}
			waitFor(t, func() bool { return srv.Clients() >= cap })
			var out, errOut bytes.Buffer
			err := RunClient(context.Background(), addr, ClientOptions{Token: token}, strings.NewReader("call 1\nhangup 1\n"), &out, &errOut)
			if err != nil || out.String() != "Call 1 received\nCall 1 ringing for operator A\nCall 1 missed\n" || errOut.Len() != 0 {
				t.Fatalf("client: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
			}
			if n := srv.Clients(); n > cap+1 {
				t.Errorf("%d clients, cap %d", n, cap)
			}
		})
	}
}

// Unauthenticated connections go first; an authenticated console is
// never closed while one is open, however long it has been idle.
func TestUnauthenticatedEvictedFirst(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, func(s *Server) { s.Token = testToken; s.MaxClients = 4 })
	consoles := []*rawClient{authed(t, addr), authed(t, addr)}
	var flood []*rawClient
	for range 20 {
		flood = append(flood, dialRaw(t, addr))
	}
	waitFor(t, func() bool { return srv.Clients() <= 4 })
	for i, c := range consoles {
		roundTrip(t, c, "c"+string(rune('0'+i)))
	}
	// The oldest flood sockets were closed to make room, with a word.
	lines := closedAfter(t, flood[0])
	if len(lines) != 1 || !strings.Contains(lines[0], "too many clients (4)") {
		t.Errorf("evicted socket got %q", lines)
	}
	// A new console still gets in (an unauthenticated socket makes room).
	roundTrip(t, authed(t, addr), "new")
	for i, c := range consoles {
		roundTrip(t, c, "d"+string(rune('0'+i)))
	}
}

// Without a token, a console that has spoken outranks silent sockets: they
// push each other out, the newest is served, the console stays.
func TestSilentEvictedFirstWithoutToken(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, func(s *Server) { s.MaxClients = 4 })
	console := dialRaw(t, addr)
	roundTrip(t, console, "c0")
	var flood []*rawClient
	for range 20 {
		flood = append(flood, dialRaw(t, addr))
	}
	waitFor(t, func() bool { return srv.Clients() <= 4 })
	roundTrip(t, flood[len(flood)-1], "newest")
	roundTrip(t, console, "c1")
	if lines := closedAfter(t, flood[0]); len(lines) != 1 || !strings.Contains(lines[0], "silent since it connected") {
		t.Errorf("oldest silent socket got %q", lines)
	}
}

// With every slot taken by authenticated consoles, a newcomer waits over
// the cap; once it authenticates, the console idle the longest goes.
func TestOldestIdleEvicted(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, func(s *Server) { s.Token = testToken; s.MaxClients = 3 })
	a, b, c := authed(t, addr), authed(t, addr), authed(t, addr)
	d := dialRaw(t, addr)
	waitFor(t, func() bool { return srv.Clients() == 4 })
	// Nobody is closed while d has not authenticated; after these, b is
	// the one idle the longest.
	roundTrip(t, b, "b2")
	roundTrip(t, c, "c2")
	roundTrip(t, a, "a2")
	d.send(authLine)
	if l, err := d.line(); err != nil || l != `{"response": "authenticated"}` {
		t.Fatalf("%q %v", l, err)
	}
	lines := closedAfter(t, b)
	if len(lines) != 1 || !strings.Contains(lines[0], "idle the longest") {
		t.Errorf("b got %q", lines)
	}
	for _, x := range []*rawClient{a, c, d} {
		roundTrip(t, x, "x")
	}
	if n := srv.Clients(); n != 3 {
		t.Errorf("%d clients", n)
	}
}

func TestOverlongLineCloses(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, _ := startServer(t, e, nil)
	// Exactly the limit is fine.
	c := dialRaw(t, addr)
	long := `{"command": "status", "id": "1"}` + strings.Repeat(" ", MaxRequest-32)
	if len(long) != MaxRequest {
		t.Fatal(len(long))
	}
	c.send(long)
	if l, err := c.line(); err != nil || l != `{"error": "unknown call 1"}` {
		t.Fatalf("%q %v", l, err)
	}
	// More, and no newline in sight: one error, and the end.
	c.nc.Write([]byte(long + "xx"))
	lines := closedAfter(t, c)
	if len(lines) != 1 || lines[0] != `{"error": "line longer than 4096 bytes: closing the connection"}` {
		t.Fatalf("%q", lines)
	}
	// A line that never ends is cut at the limit too.
	c = dialRaw(t, addr)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 1024)
		for {
			if _, err := c.nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	if lines := closedAfter(t, c); len(lines) != 1 {
		t.Fatalf("%q", lines)
	}
}

// The client never sends what the server would refuse: a typed line too
// long to send gets basic mode's error, printed in its place.
func TestClientLongLines(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, _ := startServer(t, e, func(s *Server) { s.Token = testToken })
	in := "hangup 9\ncall " + strings.Repeat("y", 5000) + "\nhangup 8\n" + strings.Repeat("x", MaxLine+10) + "\nfrob" + strings.Repeat("z", 9000) +
		"\nhelp " + strings.Repeat("h", 5000) + "\nauth " + testToken + "\nAUTH\nhangup 7\ncall 1\n"
	var wantOut, wantErr bytes.Buffer
	if err := RunBasic(context.Background(), e, strings.NewReader(in), &wantOut, &wantErr, false); err != nil {
		t.Fatal(err)
	}
	e.Do(mustParse(t, "hangup 1"), func([]string, error) {})
	var out, errOut bytes.Buffer
	if err := RunClient(context.Background(), addr, ClientOptions{Token: testToken}, strings.NewReader(in), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.String() != wantOut.String() || errOut.String() != wantErr.String() {
		t.Errorf("client:\n%s%s\nbasic mode:\n%s%s", out.String(), errOut.String(), wantOut.String(), wantErr.String())
	}
}

func TestClientWithoutTheToken(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, _ := startServer(t, e, func(s *Server) { s.Token = testToken })
	for _, token := range []string{"", "wrong-token-wrong-token"} {
		var out, errOut bytes.Buffer
		err := RunClient(context.Background(), addr, ClientOptions{Token: token}, strings.NewReader("call 1\n"), &out, &errOut)
		if !errors.Is(err, ErrAuth) || out.Len() != 0 {
			t.Errorf("token %q: %v, stdout %q, stderr %q", token, err, out.String(), errOut.String())
		}
	}
	if s := e.Snapshot(); len(s.Calls) != 0 {
		t.Errorf("%+v", s.Calls)
	}
}

func TestTCPTranscriptWithToken(t *testing.T) {
	e := startEngine(t, 10*time.Second, Options{})
	addr, _ := startServer(t, e, func(s *Server) { s.Token = testToken })
	var out, errOut bytes.Buffer
	if err := RunClient(context.Background(), addr, ClientOptions{Token: testToken}, strings.NewReader(readFile(t, "commands.txt")), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, "expected.txt"); out.String() != want || errOut.Len() != 0 {
		t.Fatalf("stdout differs:\n%s\nwant:\n%s\nstderr %q", out.String(), want, errOut.String())
	}
}

// A client that reads nothing is dropped when broadcasts pile up; the
// broadcaster (the engine, holding its lock) never waits for it.
func TestBroadcastDoesNotWaitForASlowClient(t *testing.T) {
	e := startEngine(t, time.Hour, Options{}, "A")
	var logMu sync.Mutex
	var logs []string
	addr, srv := startServer(t, e, func(s *Server) {
		s.QueueLen = 8
		s.Logf = func(f string, a ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			logs = append(logs, f)
		}
	})
	stuck := dialRaw(t, addr)
	stuck.nc.(*net.TCPConn).SetReadBuffer(1024)
	roundTrip(t, stuck, "s")
	for i := 0; srv.Clients() > 0; i++ {
		start := time.Now()
		e.Inject(`{"command": "call", "id": "b`+strings.Repeat("x", 60)+`"}`, "")
		e.Inject(`{"command": "hangup", "id": "b`+strings.Repeat("x", 60)+`"}`, "")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a broadcast took %v", d)
		}
		if i > 1_000_000 {
			t.Fatal("never dropped")
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logs) == 0 || !strings.Contains(strings.Join(logs, "\n"), "dropping client") {
		t.Errorf("no log line: %q", logs)
	}
	_, _ = io.Copy(io.Discard, stuck.nc)
}

func mustParse(t *testing.T, line string) acd.Command {
	t.Helper()
	verb, arg, _, _ := splitLine(line)
	cmd, err := acd.ParseCommand(verb, arg)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
