package acdserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/multcall/dialbridge/internal/testport"
	"github.com/multcall/dialbridge/monitor/acd"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func operators(ids ...string) []acd.Operator {
	var out []acd.Operator
	for _, id := range ids {
		out = append(out, acd.Operator{ID: id})
	}
	return out
}

// startEngine runs an engine (with its ring timer) until the test ends.
func startEngine(t *testing.T, rt time.Duration, opt Options, ids ...string) *Engine {
	t.Helper()
	if len(ids) == 0 {
		ids = []string{"A", "B"}
	}
	m, err := acd.New(operators(ids...), rt)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(m, opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// startServer runs a server on a free port until the test ends.
func startServer(t *testing.T, e *Engine, tweak func(*Server)) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Engine: e, Logf: t.Logf}
	if tweak != nil {
		tweak(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), s
}

func TestBasicTranscript(t *testing.T) {
	e := startEngine(t, 10*time.Second, Options{})
	var out, errOut bytes.Buffer
	if err := RunBasic(context.Background(), e, strings.NewReader(readFile(t, "commands.txt")), &out, &errOut, false); err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, "expected.txt"); out.String() != want {
		t.Fatalf("stdout differs:\n%s\nwant:\n%s", out.String(), want)
	}
	if errOut.Len() != 0 {
		t.Fatalf("stderr: %q", errOut.String())
	}
}

// errorInput mixes the transcript with lines that make no sense.
var errorInput = "# a comment\n\ncall 1\ncall 1\nfrob 2\ncall\ncall a b\nanswer C\n" +
	"answer B\r\nhangup 9\nANSWER   A\nstatus\nstatus 1\nlogout B\nlogout B\nlogin B\nlogin B\n" +
	strings.Repeat("x", MaxLine+10) + "\nhelp\nhangup 1\n"

const errorOutput = `Call 1 received
Call 1 ringing for operator A
Call 1 answered by operator A
Operator A (operator) busy on call 1
Operator B (operator) available
Queue empty
Call 1 answered by operator A
Operator B logged out
Operator B logged in
` + Help + `Call 1 finished and operator A available
`

const errorErrors = `error: call 1 is already in progress (ringing for operator A)
error: unknown command "frob" (commands: call, answer, reject, hangup, login, logout, status)
error: call needs an id: call <id>
error: invalid call id "a b": use 1-64 characters of A-Z a-z 0-9 . _ : -
error: unknown operator C
error: operator B is not ringing (available)
error: unknown call 9
error: operator B is already logged out
error: operator B is already logged in
error: line longer than 65536 bytes: ignored
`

func TestBasicErrors(t *testing.T) {
	e := startEngine(t, 10*time.Second, Options{})
	var out, errOut bytes.Buffer
	if err := RunBasic(context.Background(), e, strings.NewReader(errorInput+"quit\ncall 2\n"), &out, &errOut, false); err != nil {
		t.Fatal(err)
	}
	if out.String() != errorOutput {
		t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), errorOutput)
	}
	if errOut.String() != errorErrors {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut.String(), errorErrors)
	}
	if s := e.Snapshot(); len(s.Calls) != 0 {
		t.Errorf("call 2 after quit: %+v", s.Calls)
	}
}

func TestBasicPrompt(t *testing.T) {
	e := startEngine(t, 10*time.Second, Options{})
	var out, errOut bytes.Buffer
	if err := RunBasic(context.Background(), e, strings.NewReader("call 1\n"), &out, &errOut, true); err != nil {
		t.Fatal(err)
	}
	if want := "> Call 1 received\nCall 1 ringing for operator A\n> \n"; out.String() != want {
		t.Fatalf("%q, want %q", out.String(), want)
	}
}

func TestTCPTranscript(t *testing.T) {
	e := startEngine(t, 10*time.Second, Options{})
	addr, _ := startServer(t, e, nil)
	var out, errOut bytes.Buffer
	if err := RunClient(context.Background(), addr, ClientOptions{}, strings.NewReader(readFile(t, "commands.txt")), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, "expected.txt"); out.String() != want {
		t.Fatalf("stdout differs:\n%s\nwant:\n%s", out.String(), want)
	}
	if errOut.Len() != 0 {
		t.Fatalf("stderr: %q", errOut.String())
	}
	// Errors too: the client prints what basic mode prints.
	out.Reset()
	if err := RunClient(context.Background(), addr, ClientOptions{}, strings.NewReader(errorInput), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.String() != errorOutput {
		t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), errorOutput)
	}
	if errOut.String() != errorErrors {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut.String(), errorErrors)
	}
}

func TestClientNoServer(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testport.Refusing(t)))
	err := RunClient(context.Background(), addr, ClientOptions{}, strings.NewReader("call 1\n"), new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "cannot reach the queue manager") {
		t.Fatalf("%v", err)
	}
}

// rawClient speaks JSON lines to the server.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawClient) send(s string) error {
	_, err := c.nc.Write([]byte(s + "\n"))
	return err
}

func (c *rawClient) line() (string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.br.ReadString('\n')
	return strings.TrimSuffix(l, "\n"), err
}

func TestRingTimeoutBroadcast(t *testing.T) {
	e := startEngine(t, 150*time.Millisecond, Options{}, "A")
	addr, _ := startServer(t, e, nil)
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	// b must be registered before the timeout: a status round trip.
	if err := b.send(`{"command": "status"}`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := b.line(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := a.send(`{"command": "call", "id": "1"}`); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"response": "Call 1 received"}`, `{"response": "Call 1 ringing for operator A"}`,
		`{"response": "Call 1 ignored by operator A"}`, `{"response": "Call 1 ringing for operator A"}`}
	for i, w := range want {
		got, err := a.line()
		if err != nil || got != w {
			t.Fatalf("a line %d: %q %v, want %q", i, got, err, w)
		}
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("ignored after %v", d)
	}
	// b caused nothing: it gets only the broadcast.
	for i, w := range want[2:] {
		got, err := b.line()
		if err != nil || got != w {
			t.Fatalf("b line %d: %q %v, want %q", i, got, err, w)
		}
	}
	// The timer restarted: answered in time, no more timeouts.
	if err := a.send(`{"command": "answer", "id": "A"}`); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := a.line()
		if err != nil {
			t.Fatal(err)
		}
		if got == `{"response": "Call 1 answered by operator A"}` {
			break
		}
		if got != want[2] && got != want[3] {
			t.Fatalf("unexpected %q", got)
		}
	}
}

func TestBasicRingTimeout(t *testing.T) {
	e := startEngine(t, 100*time.Millisecond, Options{}, "A", "B")
	pr, pw := io.Pipe()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- RunBasic(context.Background(), e, pr, &out, &out, false) }()
	pw.Write([]byte("call 1\n"))
	deadline := time.Now().Add(30 * time.Second)
	want := "Call 1 received\nCall 1 ringing for operator A\nCall 1 ignored by operator A\nCall 1 ringing for operator B\n"
	for !strings.HasPrefix(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("got %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pw.Write([]byte("answer B\n"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "Call 1 answered by operator B\n") {
		t.Fatalf("got %q", out.String())
	}
}

func TestManyClients(t *testing.T) {
	e := startEngine(t, time.Hour, Options{}, "A", "B")
	addr, srv := startServer(t, e, nil)
	garbage := []string{
		"hello",
		`{"command": 5}`,
		`[1, 2]`,
		`{"command": "call", "id": "x y"}`,
		`{"command": "call", "id": "1", "extra": true}`,
		"\x00\xff\xfe{",
		strings.Repeat("z", MaxRequest), // the longest line taken
	}
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer nc.Close()
				c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
				id := fmt.Sprintf("c%d", i)
				for _, g := range garbage {
					if err := c.send(g); err != nil {
						return err
					}
				}
				c.send(`{"command": "call", "id": "` + id + `"}`)
				c.send(`{"command": "hangup", "id": "` + id + `"}`)
				nc.(*net.TCPConn).CloseWrite()
				var lines []string
				for {
					l, err := c.line()
					if err != nil {
						break
					}
					lines = append(lines, l)
				}
				if len(lines) < len(garbage)+3 {
					return fmt.Errorf("client %d: %d lines: %q", i, len(lines), lines)
				}
				for j := range garbage {
					if !strings.HasPrefix(lines[j], `{"error": `) {
						return fmt.Errorf("client %d line %d: %q", i, j, lines[j])
					}
				}
				rest := lines[len(garbage):]
				if rest[0] != `{"response": "Call `+id+` received"}` {
					return fmt.Errorf("client %d: %q", i, rest)
				}
				ringing := strings.HasPrefix(rest[1], `{"response": "Call `+id+` ringing for operator `)
				if !ringing && rest[1] != `{"response": "Call `+id+` waiting in queue"}` {
					return fmt.Errorf("client %d: %q", i, rest)
				}
				if rest[2] != `{"response": "Call `+id+` missed"}` {
					return fmt.Errorf("client %d: %q", i, rest)
				}
				// A ringing call's operator takes the next waiting call (the
				// call may have started ringing after "waiting in queue").
				_ = ringing
				if len(rest) > 4 || (len(rest) == 4 && (!strings.Contains(rest[3], " ringing for operator ") || strings.Contains(rest[3], id+" "))) {
					return fmt.Errorf("client %d: %q", i, rest)
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	snap := e.Snapshot()
	if len(snap.Calls) != 0 {
		t.Errorf("calls left: %+v", snap.Calls)
	}
	for _, op := range snap.Operators {
		if op.State != acd.Available {
			t.Errorf("operator %+v", op)
		}
	}
	waitFor(t, func() bool { return srv.Clients() == 0 })
}

func TestSlowClientDropped(t *testing.T) {
	e := startEngine(t, time.Hour, Options{}, "A")
	addr, srv := startServer(t, e, nil)
	slow := dialRaw(t, addr)
	slow.nc.(*net.TCPConn).SetReadBuffer(4096)
	healthy := dialRaw(t, addr)
	// Both registered: one round trip each.
	for _, c := range []*rawClient{slow, healthy} {
		c.send(`{"command": "status", "id": "nobody"}`)
		if _, err := c.line(); err != nil {
			t.Fatal(err)
		}
	}
	var got int
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			l, err := healthy.line()
			if err != nil || l == `{"error": "unknown call nobody"}` {
				return
			}
			got++
		}
	}()
	// Broadcasts (inbox events, paced like a busy bridge) until the slow
	// client, which reads nothing, is dropped.
	start := time.Now()
	sent := 0
	for i := 0; srv.Clients() == 2; i++ {
		if time.Since(start) > 30*time.Second {
			t.Fatal("slow client never dropped")
		}
		e.Inject(fmt.Sprintf(`{"command": "call", "id": "f%d"}`, i), "")
		e.Inject(fmt.Sprintf(`{"command": "hangup", "id": "f%d"}`, i), "")
		sent += 3
		if i%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	// The healthy one got every line and still works.
	if err := healthy.send(`{"command": "status", "id": "nobody"}`); err != nil {
		t.Fatal(err)
	}
	<-readerDone
	if got != sent {
		t.Fatalf("healthy client got %d of %d lines", got, sent)
	}
	if _, err := slow.nc.Write([]byte("{}\n")); err == nil {
		// The server closed it: reading ends with an error after the
		// buffered lines.
		slow.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, slow.nc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("slow client: %v", err)
		}
	}
	t.Logf("slow client dropped after %d broadcast lines in %v", sent, time.Since(start))
}

func TestDecodeRequest(t *testing.T) {
	good := map[string]acd.Command{
		`{"command": "call", "id": "7"}`:  {Verb: acd.Call, ID: "7"},
		`{"id":"A","command":"ANSWER"}`:   {Verb: acd.Answer, ID: "A"},
		`  {"command": "status"}  `:       {Verb: acd.Status},
		`{"command": "status", "id": ""}`: {Verb: acd.Status},
	}
	for in, want := range good {
		got, err := DecodeRequest([]byte(in))
		if err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	bad := map[string]string{
		`call 7`:                           `not a JSON command: send one object per line, like {"command": "call", "id": "7"}`,
		`null`:                             `not a JSON command: send one object per line, like {"command": "call", "id": "7"}`,
		`{"id": "7"}`:                      `missing "command": send {"command": "call", "id": "7"}`,
		`{"command": 1}`:                   `"command" must be a string`,
		`{"command": "call", "id": 7}`:     `"id" must be a string`,
		`{"command": "call", "ID": "7"}`:   `unknown field "ID": a command has only "command" and "id"`,
		`{"command": "call"}`:              `call needs an id: call <id>`,
		`{"command": "call", "id": "a\n"}`: `invalid call id "a\n": use 1-64 characters of A-Z a-z 0-9 . _ : -`,
	}
	for in, want := range bad {
		if _, err := DecodeRequest([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", in, err, want)
		}
	}
	if got := string(EncodeRequest("call", "7")); got != "{\"command\": \"call\", \"id\": \"7\"}\n" {
		t.Errorf("%q", got)
	}
	if got := string(errorLine(`call <id> "x"`)); got != "{\"error\": \"call <id> \\\"x\\\"\"}\n" {
		t.Errorf("%q", got)
	}
}

func TestReadLine(t *testing.T) {
	in := "a\r\nbb\n" + strings.Repeat("x", 10) + "\nccc\n" + strings.Repeat("y", 11) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	type res struct {
		line    string
		tooLong bool
	}
	var got []res
	for {
		l, tl, err := readLine(br, 10)
		got = append(got, res{string(l), tl})
		if err != nil {
			break
		}
	}
	want := []res{{"a", false}, {"bb", false}, {strings.Repeat("x", 10), false}, {"ccc", false}, {"", true}, {"last", false}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v", got)
	}
}

// --- store and inbox ----------------------------------------------------

type fakeStore struct {
	mu    sync.Mutex
	fail  bool
	saves []string // "save" or "all", with messages and acks
	snap  acd.Snapshot
}

func (s *fakeStore) Save(_ context.Context, ch acd.Changes, msgs []acd.Message, _ time.Time, acks []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("store down")
	}
	s.saves = append(s.saves, fmt.Sprintf("save %d ops %d calls %v %v %v", len(ch.Operators), len(ch.Calls), ch.Queue, msgs, acks))
	return nil
}

func (s *fakeStore) SaveAll(_ context.Context, snap acd.Snapshot, msgs []acd.Message, _ time.Time, acks []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("store down")
	}
	s.snap = snap
	s.saves = append(s.saves, fmt.Sprintf("all %v %v %v", snap.Queue, msgs, acks))
	return nil
}

func (s *fakeStore) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.saves...)
}

type fakeInbox struct {
	pending []string
	ch      chan string
}

func (in *fakeInbox) Pending(context.Context) ([]string, error) { return in.pending, nil }

func (in *fakeInbox) Take(ctx context.Context, wait time.Duration) (string, bool, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ev := <-in.ch:
		return ev, true, nil
	case <-t.C:
		return "", false, nil
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
}

func TestPersistence(t *testing.T) {
	st := &fakeStore{}
	var logMu sync.Mutex
	var notes []string
	logf := func(f string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		notes = append(notes, fmt.Sprintf(f, a...))
	}
	e := startEngine(t, time.Hour, Options{Store: st, Logf: logf}, "A")
	do := func(line string) {
		verb, arg, _ := strings.Cut(line, " ")
		cmd, err := acd.ParseCommand(verb, arg)
		if err != nil {
			t.Fatal(err)
		}
		e.Do(cmd, func([]string, error) {})
	}
	do("call 1")
	do("call 2")
	do("hangup 9") // error: nothing saved
	do("status")   // query: nothing saved
	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	do("call 3")
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	do("hangup 2") // in memory: the store is retried by the engine's loop
	waitFor(t, func() bool { return len(st.log()) == 3 })
	do("call 4")
	want := []string{
		"save 1 ops 1 calls [] [Call 1 received Call 1 ringing for operator A] []",
		"save 0 ops 1 calls [{push_back 2}] [Call 2 received Call 2 waiting in queue] []",
		"all [3] [] []",
		"save 0 ops 1 calls [{push_back 4}] [Call 4 received Call 4 waiting in queue] []",
	}
	if got := st.log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("saves:\n%q\nwant:\n%q", got, want)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(notes) != 2 || !strings.Contains(notes[0], "store down") {
		t.Fatalf("notes %q", notes)
	}
}

func TestInbox(t *testing.T) {
	st := &fakeStore{}
	var logMu sync.Mutex
	var notes []string
	logf := func(f string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		notes = append(notes, fmt.Sprintf(f, a...))
	}
	e := startEngine(t, time.Hour, Options{Store: st, Logf: logf}, "A")
	addr, _ := startServer(t, e, nil)
	watcher := dialRaw(t, addr)
	watcher.send(`{"command": "status", "id": "x"}`)
	watcher.line()

	in := &fakeInbox{pending: []string{`{"command": "call", "id": "p1"}`}, ch: make(chan string)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.RunInbox(ctx, in) }()
	in.ch <- `{"command": "call", "id": "b1"}`
	in.ch <- `{"command": "answer", "id": "A"}` // refused: only call and hangup
	in.ch <- `not json`
	in.ch <- `{"command": "hangup", "id": "p1"}`
	want := []string{
		"Call p1 received", "Call p1 ringing for operator A",
		"Call b1 received", "Call b1 waiting in queue",
		"Call p1 missed", "Call b1 ringing for operator A",
	}
	for i, w := range want {
		l, err := watcher.line()
		if err != nil || l != `{"response": "`+w+`"}` {
			t.Fatalf("line %d: %q %v, want %q", i, l, err, w)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every event was acknowledged with its own save, refused ones too.
	log := st.log()
	if len(log) != 5 || !strings.HasSuffix(log[0], `[{"command": "call", "id": "p1"}]`) ||
		log[2] != `save 0 ops 0 calls [] [] [{"command": "answer", "id": "A"}]` ||
		log[3] != `save 0 ops 0 calls [] [] [not json]` {
		t.Fatalf("saves %q", log)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(notes) != 2 || !strings.Contains(notes[0], "only call and hangup") || !strings.Contains(notes[1], "not a JSON command") {
		t.Fatalf("notes %q", notes)
	}
}

// --- helpers -------------------------------------------------------------

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
