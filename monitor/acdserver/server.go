package acdserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// DefaultListen is the contract's address of "queue serve".
const DefaultListen = "127.0.0.1:5678"

// Server is "queue serve": the queue manager over TCP, one JSON object per
// line each way. A client sends {"command": "call", "id": "7"}; the
// messages the command causes come back to it alone as {"response":
// "Call 7 received"} lines, an error as {"error": "…"} (the connection
// stays). Messages no command caused (ring timeouts, inbox events) go to
// every client. A line over MaxLine bytes gets an error and is dropped; a
// client that does not read its messages is disconnected once QueueLen of
// them wait, so that it never slows down the others.
type Server struct {
	Engine *Engine
	// MaxLine is the longest request line (default MaxLine, 64 KiB).
	MaxLine int
	// QueueLen is how many messages may wait for one client before it
	// is dropped (default 1024).
	QueueLen int
	// MaxClients bounds the connections at once (default 1000); more are
	// told so and closed.
	MaxClients int
	// WriteTimeout drops a client whose socket takes no data for this
	// long (default 10s).
	WriteTimeout time.Duration
	// SocketBuffer is the kernel send buffer of each connection (default
	// 64 KiB): it bounds the memory a client that does not read can hold.
	SocketBuffer int
	// Logf receives notes (clients dropped, accept errors); nil discards.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
	wg      sync.WaitGroup
}

type client struct {
	s       *Server
	nc      net.Conn
	out     chan []byte
	done    chan struct{} // closed when the reader stops: the writer flushes and closes
	dropped atomic.Bool
}

// Clients is the number of clients connected.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Serve accepts clients on ln until ctx ends, then closes them all and
// returns once every connection's goroutines are done. It returns nil when
// ctx ended, else the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.MaxLine <= 0 {
		s.MaxLine = MaxLine
	}
	if s.QueueLen <= 0 {
		s.QueueLen = 1024
	}
	if s.MaxClients <= 0 {
		s.MaxClients = 1000
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 10 * time.Second
	}
	if s.SocketBuffer <= 0 {
		s.SocketBuffer = 64 * 1024
	}
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	s.mu.Lock()
	s.clients = map[*client]struct{}{}
	s.closed = false
	s.mu.Unlock()
	unsubscribe := s.Engine.Subscribe(s.broadcast)
	defer unsubscribe()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var err error
	for {
		nc, aerr := ln.Accept()
		if aerr == nil {
			s.start(nc)
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(aerr, net.ErrClosed) {
			err = aerr
			break
		}
		// Out of file descriptors and the like: wait and go on.
		s.Logf("acd: accept: %v", aerr)
		if !sleep(ctx, 100*time.Millisecond) {
			break
		}
	}
	ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) start(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return
	}
	if len(s.clients) >= s.MaxClients {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = nc.Write(errorLine(fmt.Sprintf("too many clients (%d): try again later", s.MaxClients)))
			nc.Close()
		}()
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(s.SocketBuffer)
	}
	c := &client{s: s, nc: nc, out: make(chan []byte, s.QueueLen), done: make(chan struct{})}
	s.clients[c] = struct{}{}
	s.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
}

// broadcast sends lines to every client (called by the engine, locked).
func (s *Server) broadcast(lines []string) {
	encoded := make([][]byte, len(lines))
	for i, l := range lines {
		encoded[i] = responseLine(l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		for _, b := range encoded {
			if !c.send(b) {
				break
			}
		}
	}
}

// send queues b for the client without ever blocking; a client whose queue
// is full is dropped.
func (c *client) send(b []byte) bool {
	if c.dropped.Load() {
		return false
	}
	select {
	case c.out <- b:
		return true
	default:
		c.drop(fmt.Sprintf("%d messages wait for it", len(c.out)))
		return false
	}
}

func (c *client) drop(why string) {
	if c.dropped.CompareAndSwap(false, true) {
		c.s.Logf("acd: dropping client %s: %s", c.nc.RemoteAddr(), why)
		c.nc.Close()
	}
}

func (c *client) readLoop() {
	defer c.s.wg.Done()
	br := bufio.NewReaderSize(c.nc, 4096)
	for {
		line, tooLong, err := readLine(br, c.s.MaxLine)
		switch {
		case tooLong:
			c.send(errorLine(fmt.Sprintf("line longer than %d bytes: ignored", c.s.MaxLine)))
		case len(bytes.TrimSpace(line)) > 0:
			verb, arg, perr := decodeRequest(line)
			if perr == nil && isHelp(verb) {
				for _, l := range strings.SplitAfter(strings.TrimSuffix(Help, "\n"), "\n") {
					c.send(responseLine(strings.TrimSuffix(l, "\n")))
				}
				break
			}
			var cmd acd.Command
			if perr == nil {
				cmd, perr = acd.ParseCommand(verb, arg)
			}
			if perr != nil {
				c.send(errorLine(perr.Error()))
				break
			}
			c.s.Engine.Do(cmd, func(lines []string, err error) {
				if err != nil {
					c.send(errorLine(err.Error()))
					return
				}
				for _, l := range lines {
					if !c.send(responseLine(l)) {
						return
					}
				}
			})
		}
		if err != nil {
			break
		}
	}
	c.s.mu.Lock()
	delete(c.s.clients, c)
	c.s.mu.Unlock()
	close(c.done)
}

func (c *client) writeLoop() {
	defer c.s.wg.Done()
	defer c.nc.Close()
	bw := bufio.NewWriterSize(c.nc, 16*1024)
	write := func(b []byte) bool {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
		if _, err := bw.Write(b); err != nil {
			c.drop("writing: " + err.Error())
			return false
		}
		return true
	}
	flush := func() bool {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
		if err := bw.Flush(); err != nil {
			c.drop("writing: " + err.Error())
			return false
		}
		return true
	}
	for {
		select {
		case b := <-c.out:
			if !write(b) {
				return
			}
			if len(c.out) == 0 && !flush() {
				return
			}
		case <-c.done:
			// The client finished sending: deliver what waits, then close.
			for {
				select {
				case b := <-c.out:
					if !write(b) {
						return
					}
				default:
					flush()
					return
				}
			}
		}
	}
}
