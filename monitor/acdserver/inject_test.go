package acdserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
)

// fakeServer sends lines to the first client, after the answer to its
// auth, and closes when the client is done: a hostile queue manager.
func fakeServer(t *testing.T, lines []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		nc.Write([]byte(`{"response": "authenticated"}` + "\n"))
		for _, l := range lines {
			nc.Write([]byte(l + "\n"))
		}
		// The client half-closes at the end of its input: then close.
		_, _ = io.Copy(io.Discard, nc)
	}()
	return ln.Addr().String()
}

// What a server sends is escaped before "queue client" prints it.
func TestClientEscapesTheServer(t *testing.T) {
	var lines []string
	for _, a := range termsafetest.Attacks {
		r, _ := json.Marshal(map[string]string{"response": "Call " + a + " received"})
		e, _ := json.Marshal(map[string]string{"error": "unknown call " + a})
		// (A newline would end the raw line: not this test's business.)
		lines = append(lines, string(r), string(e), "raw "+strings.ReplaceAll(a, "\n", " "))
	}
	// JSON leaves C1 and format characters raw; so does a server that
	// does not escape at all.
	lines = append(lines, "{\"response\": \"a\u009b2J\u202e\"}", "{\"error\": \"a\u009d0;x\u009c\"}")
	addr := fakeServer(t, lines)
	var out, errOut bytes.Buffer
	err := RunClient(context.Background(), addr, ClientOptions{}, strings.NewReader(""), &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if bad := termsafetest.Unsafe(out.String()); bad != "" {
		t.Errorf("stdout: %s", bad)
	}
	if bad := termsafetest.Unsafe(errOut.String()); bad != "" {
		t.Errorf("stderr: %s", bad)
	}
	if n := strings.Count(out.String(), "\n"); n != len(termsafetest.Attacks)+1 {
		t.Errorf("%d lines on stdout:\n%s", n, out.String())
	}
}

// A message carrying unsafe text (ids are checked today, but the floor
// and the inbox come from Redis) reaches neither basic mode's stdout nor
// a TCP client raw.
func TestMessagesEscaped(t *testing.T) {
	e := startEngine(t, time.Hour, Options{})
	addr, srv := startServer(t, e, nil)
	c := dialRaw(t, addr)
	roundTrip(t, c, "x")
	waitFor(t, func() bool { return srv.Clients() == 1 })
	var basic syncBuffer
	stop := make(chan struct{})
	pr := &blockingReader{stop: stop}
	done := make(chan error, 1)
	go func() { done <- RunBasic(context.Background(), e, pr, &basic, &basic, false) }()
	waitFor(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.subs) == 2 })
	var msgs []string
	for _, a := range termsafetest.Attacks {
		msgs = append(msgs, "Call "+a+" received")
	}
	e.mu.Lock()
	e.broadcast(msgs)
	e.mu.Unlock()
	for range msgs {
		l, err := c.line()
		if err != nil {
			t.Fatal(err)
		}
		var r reply
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Response == nil {
			t.Fatalf("%q: %v", l, err)
		}
		if bad := termsafetest.Unsafe(*r.Response); bad != "" {
			t.Errorf("TCP: %s", bad)
		}
	}
	waitFor(t, func() bool { return strings.Count(basic.String(), "\n") >= len(msgs) })
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if bad := termsafetest.Unsafe(basic.String()); bad != "" {
		t.Errorf("basic mode: %s", bad)
	}
}

// blockingReader is a stdin that has nothing until stop, then ends.
type blockingReader struct{ stop chan struct{} }

func (r *blockingReader) Read([]byte) (int, error) {
	<-r.stop
	return 0, io.EOF
}
