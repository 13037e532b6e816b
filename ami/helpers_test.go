package ami

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
)

// amigoGoroutines are amigo's own goroutines. amigo cannot stop them all on
// Close (its inner socket reader, its pinger blocked on an unbuffered
// channel, its connection goroutine sleeping ReconnectInterval), so leak
// checks ignore them — and only them: a goroutine of ours stuck inside
// amigo's Action still shows (*amiAdapter).exec and is reported.
var amigoGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.newAMIAdapter.func1"),
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).reader"),
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).reader.func1"),
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).writer"),
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*amiAdapter).pinger"),
	goleak.IgnoreAnyFunction("github.com/ivahaev/amigo.(*Amigo).Connect.func1"),
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, amigoGoroutines...)
}

const (
	testUser   = "dialbridge"
	testSecret = "s3cr3t-do-not-print"
)

// syncBuffer collects log output from several goroutines.
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

func newSim(t testing.TB, cfg amisim.Config) *amisim.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username = testUser
	}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	if cfg.AuthDelay == 0 {
		cfg.AuthDelay = 20 * time.Millisecond
	}
	if cfg.WriteTimeout == 0 {
		// Asterisk's 100 ms drops a client the race detector on a busy
		// 2-core machine merely slowed; tests that mean it say so.
		cfg.WriteTimeout = 2 * time.Second
	}
	srv, err := amisim.New(cfg)
	if err != nil {
		t.Fatalf("amisim.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func testOptions(host string, port int) Options {
	return Options{
		Host:            host,
		Port:            port,
		Username:        testUser,
		Secret:          testSecret,
		Connections:     2,
		CommandResponse: time.Second,
		MinBackoff:      50 * time.Millisecond,
		MaxBackoff:      400 * time.Millisecond,
		Instance:        "test",
	}
}

func testLogger() zerolog.Logger { return zerolog.Nop() }

// newClient makes a client for srv (not started); logs go to the returned
// buffer and are printed when the test fails.
func newClient(t testing.TB, opts Options) (*Client, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	c := New(opts, zerolog.New(buf).Level(zerolog.DebugLevel).With().Timestamp().Logger())
	t.Cleanup(func() {
		c.Close()
		if t.Failed() || os.Getenv("AMI_TEST_LOGS") != "" {
			t.Logf("client log:\n%s", buf.String())
		}
	})
	return c, buf
}

// startClient makes a client for srv and starts it.
func startClient(t testing.TB, srv *amisim.Server, mod func(*Options)) (*Client, *syncBuffer) {
	t.Helper()
	opts := testOptions(srv.Host(), srv.Port())
	if mod != nil {
		mod(&opts)
	}
	c, buf := newClient(t, opts)
	// Start returns once every session is up; the deadline only bounds a
	// failure, so it is generous for a loaded machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !c.Ready() {
		t.Fatalf("not ready after Start: %+v", c.State())
	}
	return c, buf
}

var reqSeq atomic.Int64

// request is an originate to number, with unique ids.
func request(number string) bridge.OriginateRequest {
	n := reqSeq.Add(1)
	id := "call" + strconv.FormatInt(n, 10) + "-1"
	return bridge.OriginateRequest{
		ActionID:  "o-" + id,
		ChannelID: id,
		Channel:   "PJSIP/" + number + "@trunk",
		Context:   "agents",
		Exten:     "s",
		Priority:  1,
		Timeout:   2 * time.Second,
		CallerID:  `"Multcall" <5550000>`,
		Variables: []bridge.Variable{{Name: "DIALBRIDGE_ID", Value: id}},
	}
}

// collect drains w until done says so or timeout.
func collect(w bridge.Watch, timeout time.Duration, done func([]bridge.Event) bool) ([]bridge.Event, error) {
	var evs []bridge.Event
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if done(evs) {
			return evs, nil
		}
		select {
		case <-w.C():
			evs = append(evs, w.Drain()...)
		case <-t.C:
			evs = append(evs, w.Drain()...)
			if done(evs) {
				return evs, nil
			}
			return evs, fmt.Errorf("timed out after %s with events %s", timeout, describe(evs))
		}
	}
}

func count(evs []bridge.Event, kind bridge.EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func find(evs []bridge.Event, kind bridge.EventKind, leg int) (bridge.Event, bool) {
	for _, e := range evs {
		if e.Kind == kind && (leg == 0 || e.Leg == leg) {
			return e, true
		}
	}
	return bridge.Event{}, false
}

func describe(evs []bridge.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "[%s leg=%d resp=%s reason=%d cause=%d %q uid=%s] ", e.Kind, e.Leg, e.Response, e.Reason, e.Cause, e.CauseText, e.Uniqueid)
	}
	return b.String()
}

// waitFor polls cond; for tests only (the package itself never polls).
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
