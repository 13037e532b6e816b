package acdserver

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultListen is the contract's address of "queue serve".
const DefaultListen = "127.0.0.1:5678"

// DefaultMaxClients is the default cap on connections: far more operator
// consoles than a floor has, few enough that their buffers stay small.
const DefaultMaxClients = 256

// DefaultAuthTimeout is how long a connection may take to authenticate
// (contract section 5).
const DefaultAuthTimeout = 5 * time.Second

// Server is "queue serve": the queue manager over TCP, one JSON object per
// line each way. A client sends {"command": "call", "id": "7"}; the
// messages the command causes come back to it alone as {"response":
// "Call 7 received"} lines, an error as {"error": "…"} (the connection
// stays). Messages no command caused (ring timeouts, inbox events) go to
// every authenticated client. With a Token the first line must be
// {"command": "auth", "token": "…"}. A line over MaxLine bytes gets an
// error and the connection is closed; a client that does not read its
// messages is disconnected once QueueLen of them wait, so that it never
// slows down the others. See doc.go for the cap on clients.
type Server struct {
	Engine *Engine
	// Token, when set, is what a client must send first (acd.token).
	Token string
	// AuthTimeout closes a connection not authenticated in that time
	// (default 5s; only with a Token).
	AuthTimeout time.Duration
	// MaxLine is the longest request line (default MaxRequest, 4 KiB).
	MaxLine int
	// QueueLen is how many messages may wait for one client before it
	// is dropped (default 1024).
	QueueLen int
	// MaxClients caps the connections (default 256); see doc.go for who
	// is closed to make room.
	MaxClients int
	// WriteTimeout drops a client whose socket takes no data for this
	// long (default 10s).
	WriteTimeout time.Duration
	// SocketBuffer is the kernel send buffer of each connection (default
	// 64 KiB): it bounds the memory a client that does not read can hold.
	SocketBuffer int
	// Logf receives notes (clients dropped or refused, accept errors);
	// nil discards. The token never appears in them.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
	wg      sync.WaitGroup
	seq     atomic.Uint64 // orders connections and their activity
	noise   rateLog       // refused connections: one line per 10 s
}

// Clients is the number of clients connected.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

func (s *Server) defaults() {
	if s.MaxLine <= 0 {
		s.MaxLine = MaxRequest
	}
	if s.QueueLen <= 0 {
		s.QueueLen = 1024
	}
	if s.MaxClients <= 0 {
		s.MaxClients = DefaultMaxClients
	}
	if s.AuthTimeout <= 0 {
		s.AuthTimeout = DefaultAuthTimeout
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
	s.noise.logf = s.Logf
}

// Serve accepts clients on ln until ctx ends, then closes them all and
// returns once every connection's goroutines are done. It returns nil when
// ctx ended, else the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.defaults()
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
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(s.SocketBuffer)
	}
	c := &client{s: s, nc: nc, out: make(chan []byte, s.QueueLen), done: make(chan struct{}), kick: make(chan struct{})}
	c.since = s.seq.Add(1)
	c.active.Store(c.since)
	// Without a token there is nothing to prove: the connection may send
	// commands and hears the broadcasts at once.
	c.authed.Store(s.Token == "")
	if len(s.clients) >= s.MaxClients {
		// Room is made now only at the expense of a connection that has
		// proven nothing; otherwise the newcomer waits over the cap (one
		// at most: the next newcomer replaces it) and room is made when
		// it proves itself.
		if v := s.victim(c, false); v != nil {
			s.evict(v)
		}
	}
	s.clients[c] = struct{}{}
	if s.Token != "" {
		_ = nc.SetReadDeadline(time.Now().Add(s.AuthTimeout))
	}
	s.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
}

// proven marks c as having authenticated (or, without a token, spoken):
// it now ranks among the consoles, and if the server is over its cap the
// connection ranked lowest makes room.
func (s *Server) proven(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.provenLocked(c)
}

func (s *Server) provenLocked(c *client) {
	if _, in := s.clients[c]; !in || c.proven.Load() {
		return // closed meanwhile, or nothing new
	}
	c.proven.Store(true)
	for len(s.clients) > s.MaxClients {
		v := s.victim(c, true)
		if v == nil {
			return
		}
		s.evict(v)
	}
}

// victim is the connection to close for room (under s.mu), never not:
// the oldest that has not proven itself; else, if consoles may go, the
// one idle the longest.
func (s *Server) victim(not *client, consoles bool) *client {
	var unproven, idlest *client
	for c := range s.clients {
		switch {
		case c == not:
		case !c.proven.Load():
			if unproven == nil || c.since < unproven.since {
				unproven = c
			}
		case idlest == nil || c.active.Load() < idlest.active.Load():
			idlest = c
		}
	}
	if unproven != nil || !consoles {
		return unproven
	}
	return idlest
}

// evict closes c to make room (under s.mu).
func (s *Server) evict(c *client) {
	delete(s.clients, c)
	if c.proven.Load() {
		s.Logf("acd: closing client %s, idle the longest: too many clients (%d)", c.nc.RemoteAddr(), s.MaxClients)
		c.finish(errorLine(fmtTooMany(s.MaxClients, "this connection, idle the longest, is closed for a new one")))
		return
	}
	what := "not authenticated"
	if s.Token == "" {
		what = "silent since it connected"
	}
	s.noise.note("acd: closed a connection %s (from %s): too many clients (%d)", what, c.nc.RemoteAddr(), s.MaxClients)
	c.finish(errorLine(fmtTooMany(s.MaxClients, "this connection, "+what+", is closed for a new one")))
}

// broadcast sends lines to every authenticated client (called by the
// engine, locked): it never waits for a client, a slow one is dropped.
func (s *Server) broadcast(lines []string) {
	encoded := make([][]byte, len(lines))
	for i, l := range lines {
		encoded[i] = responseLine(l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if !c.authed.Load() {
			continue
		}
		for _, b := range encoded {
			if !c.send(b) {
				break
			}
		}
	}
}
