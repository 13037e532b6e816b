package ami

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAsterisk is the least of an Asterisk the client logs in to, on a raw
// net.Listener, that can turn hostile on the event session.
type fakeAsterisk struct {
	t  *testing.T
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns []*fakeConn
}

type fakeConn struct {
	conn      net.Conn
	wmu       sync.Mutex // one writer at a time: answers or the attack
	mu        sync.Mutex
	loggedIn  bool
	eventsOff bool
}

func newFakeAsterisk(t *testing.T) *fakeAsterisk {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAsterisk{t: t, ln: ln}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeAsterisk) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *fakeAsterisk) accept() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{conn: conn}
		f.mu.Lock()
		f.conns = append(f.conns, fc)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(fc)
	}
}

func (f *fakeAsterisk) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, fc := range f.conns {
		fc.conn.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeAsterisk) serve(fc *fakeConn) {
	defer f.wg.Done()
	defer fc.conn.Close()
	fc.write("Asterisk Call Manager/11.0.0\r\n")
	br := bufio.NewReader(fc.conn)
	for {
		h := map[string]string{}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, ":")
			h[strings.ToLower(k)] = strings.TrimSpace(v)
		}
		id := ""
		if h["actionid"] != "" {
			id = "ActionID: " + h["actionid"] + "\r\n"
		}
		switch strings.ToLower(h["action"]) {
		case "login":
			fc.mu.Lock()
			fc.loggedIn = true
			fc.mu.Unlock()
			fc.write("Response: Success\r\n" + id + "Message: Authentication accepted\r\n\r\n")
		case "events":
			fc.mu.Lock()
			fc.eventsOff = true
			fc.mu.Unlock()
			fc.write("Response: Success\r\n" + id + "Events: Off\r\n\r\n")
		case "ping":
			fc.write("Response: Success\r\n" + id + "Ping: Pong\r\n\r\n")
		case "logoff":
			fc.write("Response: Goodbye\r\n" + id + "Message: Thanks for all the fish.\r\n\r\n")
			return
		default:
			fc.write("Response: Error\r\n" + id + "Message: Invalid/unknown command\r\n\r\n")
		}
	}
}

func (fc *fakeConn) write(s string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fc.conn.Write([]byte(s))
}

// attackEvents writes head and then chunk, again and again, up to total
// bytes, on the logged-in event session (events not turned off), and
// returns how much went out before the connection failed.
func (f *fakeAsterisk) attackEvents(head, chunk []byte, total int) int {
	f.mu.Lock()
	var target *fakeConn
	for _, fc := range f.conns {
		fc.mu.Lock()
		if fc.loggedIn && !fc.eventsOff {
			target = fc
		}
		fc.mu.Unlock()
	}
	f.mu.Unlock()
	if target == nil {
		f.t.Fatal("no event session")
	}
	target.wmu.Lock()
	defer target.wmu.Unlock()
	sent := 0
	target.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	n, err := target.conn.Write(head)
	sent += n
	for err == nil && sent < total {
		n, err = target.conn.Write(chunk)
		sent += n
	}
	return sent
}

// Issue 13 item 8, AMI side: a peer that sends a line (or a message)
// without end no longer makes the client buffer it. The connection is cut
// past the bound, one line says why, the session reconnects, and the
// memory allocated meanwhile stays far below what was sent.
func TestOverlongInputFromAsteriskIsBounded(t *testing.T) {
	const total = 256 << 20
	const bound = 32 << 20
	line := bytes.Repeat([]byte("x"), 1<<20)
	var msg bytes.Buffer
	for i := 0; msg.Len() < 1<<20; i++ {
		fmt.Fprintf(&msg, "Header-%05d: value\r\n", i)
	}
	tests := []struct {
		name        string
		head, chunk []byte
		why         string
	}{
		{"a line without end", []byte("Event: Foo\r\nData: "), line, fmt.Sprintf("a line over %d bytes", maxEventLine)},
		{"a message without end", []byte("Event: Foo\r\n"), msg.Bytes(), fmt.Sprintf("a message over %d bytes", maxEventMessage)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newFakeAsterisk(t)
			opts := testOptions("127.0.0.1", fa.port())
			opts.Connections = 1
			c, logs := newClient(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Start(ctx); err != nil || !c.Ready() {
				t.Fatalf("Start: %v, ready %v", err, c.Ready())
			}

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			sent := fa.attackEvents(tt.head, tt.chunk, total)
			runtime.ReadMemStats(&after)
			grew := after.TotalAlloc - before.TotalAlloc
			t.Logf("peer sent %d MiB before the connection failed; %d KiB allocated meanwhile, heap in use %d → %d MiB",
				sent>>20, grew>>10, before.HeapInuse>>20, after.HeapInuse>>20)
			if grew > bound {
				t.Fatalf("%d MiB allocated while the peer sent %d MiB: the client buffers what it is sent", grew>>20, sent>>20)
			}

			waitFor(t, "the event session to reconnect", 30*time.Second, func() bool {
				return c.State().Reconnects >= 1 && c.Ready()
			})
			if n := strings.Count(logs.String(), "AMI connection dropped: Asterisk sent more than we buffer"); n != 1 {
				t.Errorf("%d lines about the drop, want 1", n)
			}
			if !strings.Contains(logs.String(), tt.why) {
				t.Errorf("log does not say %q", tt.why)
			}
		})
	}
}
