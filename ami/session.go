package ami

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

var (
	errStopped = errors.New("AMI client closed")
	errTimeout = errors.New("no response")
)

// amigo's "error" callback texts (amigo v0.1.11, ami.go). amigo reports
// failures only as these strings.
const (
	amigoDialFailed   = "AMI Reconnect failed"        // net.Dial failed; amigo drops the cause
	amigoBannerPrefix = "Asterisk connection error: " // reading the banner failed
	amigoLoginPrefix  = "Asterisk login error: "      // Login answered Error, or I/O failed during it
	amigoTCPPrefix    = "AMI TCP ERROR: "             // read, write or keepalive ping failed
	amigoQueueFull    = "events chan is full"         // amigo's 8192-message queue is full; not a disconnect
)

// session is one AMI login: the event session, or one of the action
// sessions. Its supervisor goroutine (run) owns every amigo client the
// session ever has.
type session struct {
	c      *Client
	name   string
	events bool // the event session: call-event handlers, no originates

	ready atomic.Bool
	busy  atomic.Bool // an originate of ours is inside amigo's Action

	first    chan struct{} // closed when the first attempt has ended
	firstErr error         // its outcome; written before first is closed
}

// run is the supervisor: connect, serve until the connection is lost, back
// off, again, until the client is closed. amigo's own reconnect loop (fixed
// interval, no backoff, unlocked field writes) is never left to run: every
// lost client is closed and replaced by a new one.
func (s *session) run() {
	defer s.c.wg.Done()
	c := s.c
	attempt := 0
	firstDone, everUp := false, false
	for {
		cn, err := s.connect()
		switch {
		case err == nil:
			if everUp {
				c.reconnects.Add(1)
			}
			everUp = true
			s.setReady(true, "")
		case !errors.Is(err, errStopped):
			c.noteFailed(s, err)
		}
		if !firstDone {
			// After setReady and the log line: when Start returns, both
			// tell the outcome of every first attempt.
			s.firstErr = err
			close(s.first)
			firstDone = true
		}
		if errors.Is(err, errStopped) {
			return
		}
		if err == nil {
			upAt := time.Now()
			reason := s.serve(cn)
			if c.stopping() {
				s.logoff(cn)
			}
			cn.release()
			s.setReady(false, reason)
			if c.stopping() {
				return
			}
			// Only a connection that stayed up a while earns a fast retry:
			// a flapping link must not turn into a reconnect storm.
			if time.Since(upAt) >= c.opts.MaxBackoff {
				attempt = 0
			}
		}
		d := c.backoff(attempt)
		attempt++
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.stop:
			t.Stop()
			return
		}
	}
}

// connect makes one attempt: a new amigo client, login, and a confirmed
// round trip. It returns the ready connection or why it is not.
func (s *session) connect() (*conn, error) {
	c := s.c
	// amigo reads the banner and the Login answer without deadlines: the
	// whole attempt, our dial included, is bounded here.
	deadline := time.Now().Add(c.loginTimeout())
	var (
		cn *conn
		rl *relay // nil when unguarded: amigo dials Asterisk itself
	)
	if c.opts.Unguarded {
		cn = newConn(c.amigoSettings(c.opts.Host, c.opts.Port), nil)
	} else {
		up, err := c.dialAsterisk()
		if err != nil {
			return nil, err
		}
		if rl, err = c.startRelay(s, up, time.Until(deadline)); err != nil {
			up.Close()
			return nil, fmt.Errorf("AMI %s: loopback listener for amigo: %w", c.addr, err)
		}
		a := rl.addr()
		cn = newConn(c.amigoSettings(a.IP.String(), a.Port), rl)
	}
	handlers := c.lists.handlers() // action sessions: the lists their actions answer
	if s.events {
		handlers = c.router.handlers()
	}
	{
		// Registered before Connect: registering later, from a handler or
		// while events flow, can deadlock amigo's dispatcher.
		for name, h := range handlers {
			if err := cn.cli.RegisterHandler(name, h); err != nil {
				rl.close()
				return nil, fmt.Errorf("register %s handler: %w", name, err)
			}
		}
	}
	cn.cli.On("connect", cn.onConnect)
	cn.cli.On("error", cn.onError)
	cn.cli.Connect()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-c.stop:
		cn.abort()
		return nil, errStopped
	case <-timer.C:
		cn.abort()
		return nil, fmt.Errorf("AMI %s: no login answer within %s", c.addr, c.loginTimeout())
	case <-cn.lost:
		cn.abort()
		return nil, cn.lostError(c)
	case <-cn.up:
	}
	if err := s.handshake(cn); err != nil {
		cn.abort()
		return nil, err
	}
	return cn, nil
}

// handshake proves the session usable with real round trips. amigo's
// "connect" callback fires before its Connected() turns true, and the
// FullyBooted event after login is usually lost, so neither can be trusted.
func (s *session) handshake(cn *conn) error {
	if !s.events {
		// Action sessions must not receive events: an OriginateResponse
		// carries the ActionID of the Originate, and amigo would take it for
		// the action's Response if it came first.
		resp, err := s.call(cn, map[string]string{"Action": "Events", "EventMask": "off"})
		if err != nil {
			return fmt.Errorf("Events off: %w", err)
		}
		// "Events Off" is the answer when Asterisk runs with
		// broken_events_action.
		if r := resp["Response"]; r != "Success" && !strings.EqualFold(r, "Events Off") {
			return fmt.Errorf("Events off answered %q: %s", r, resp["Message"])
		}
	}
	resp, err := s.call(cn, map[string]string{"Action": "Ping"})
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if resp["Response"] != "Success" {
		return fmt.Errorf("ping answered %q: %s", resp["Response"], resp["Message"])
	}
	return nil
}

// call sends one housekeeping action, retrying briefly while amigo has not
// yet marked itself connected.
func (s *session) call(cn *conn, m map[string]string) (map[string]string, error) {
	c := s.c
	m["ActionID"] = c.nextID(strings.ToLower(m["Action"]))
	wait := time.Millisecond
	giveUp := time.Now().Add(time.Second)
	for {
		resp, notConnected, err := s.callOnce(cn, m)
		if !notConnected || time.Now().After(giveUp) {
			return resp, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.stop:
			t.Stop()
			return nil, errStopped
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func (s *session) callOnce(cn *conn, m map[string]string) (resp map[string]string, notConnected bool, err error) {
	c := s.c
	ch := make(chan actionResult, 1)
	c.inAmigo.Add(1)
	go func() {
		defer c.inAmigo.Done()
		r, err := cn.action(m, false)
		ch <- actionResult{resp: r, err: err}
	}()
	guard := time.NewTimer(c.opts.CommandResponse + responseGrace)
	defer guard.Stop()
	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return nil, true, fmt.Errorf("amigo: %w", r.err)
		case r.resp["Error"] == "Timeout":
			return nil, false, fmt.Errorf("%w within %s", errTimeout, c.opts.CommandResponse)
		}
		return r.resp, false, nil
	case <-guard.C:
		return nil, false, fmt.Errorf("%w within %s", errTimeout, c.opts.CommandResponse+responseGrace)
	case <-c.stop:
		return nil, false, errStopped
	case <-cn.lost:
		return nil, false, cn.lostError(c)
	}
}

// serve keeps a ready connection until it is lost or the client closes,
// and returns why it ended.
func (s *session) serve(cn *conn) string {
	c := s.c
	if !s.events {
		c.inAmigo.Add(1)
		go s.worker(cn)
	}
	warned := false
	for {
		select {
		case <-c.stop:
			return "client closed"
		case <-cn.lost:
			return cn.lostError(c).Error()
		case <-cn.full:
			if !warned {
				// amigo's reader now waits for room: responses and
				// pings are late, and Asterisk may drop us. The
				// keepalive tells if it does.
				warned = true
				c.log.Warn().Str("session", s.name).Msg("AMI event queue full: events are handled too slowly")
			}
		}
	}
}

// worker sends the originates handed to this session, one at a time (amigo
// allows one action in flight per client). A session stuck on a slow
// Response simply stops asking for work and the others carry on.
func (s *session) worker(cn *conn) {
	c := s.c
	defer c.inAmigo.Done()
	sl := newSlot()
	for {
		j := c.dispatch.next(sl)
		if j != nil {
			j.picked <- struct{}{}
		} else {
			select {
			case j = <-sl.jobs:
			case <-cn.down:
				s.quit(sl)
				return
			case <-c.stop:
				s.quit(sl)
				return
			}
		}
		s.busy.Store(true)
		resp, err := cn.action(j.action, false)
		s.busy.Store(false)
		j.done <- actionResult{resp: resp, err: err, session: s.name}
	}
}

// quit takes the worker off the idle stack; a job handed to it meanwhile
// goes back to its caller unsent, to be handed to another session.
func (s *session) quit(sl *slot) {
	if !s.c.dispatch.leave(sl) {
		j := <-sl.jobs
		j.done <- actionResult{err: errConnDown, session: s.name}
	}
}

// setReady publishes a session's state change; reason says why it went down.
func (s *session) setReady(up bool, reason string) {
	c := s.c
	if s.ready.Swap(up) == up {
		return
	}
	if !s.events {
		if up {
			c.actionsUp.Add(1)
		} else {
			c.actionsUp.Add(-1)
		}
	}
	// Logged before anyone can see the change: the line comes before
	// whatever a caller does about it.
	if up {
		c.noteUp(s)
	} else if !c.stopping() {
		c.noteLost(s, reason)
	}
	if s.events {
		now := time.Now()
		if up {
			c.router.restored(now)
		} else {
			// ready is already false: an Originate that registers its
			// watch after this broadcast sees the client not ready and
			// sends nothing.
			c.router.lost(now)
		}
	}
	c.changed.notify()
}

// logoff ends an idle session politely before the client closes: Asterisk
// answers Goodbye and closes the connection, so amigo sees the end of its
// connection itself. Closing a still-connected amigo client instead makes
// amigo print "STOPPED" on stderr, once per session.
func (s *session) logoff(cn *conn) {
	c := s.c
	// Already lost: a Logoff would only wait out amigo's ActionTimeout, and
	// Close with it.
	if cn.isLost() || !cn.drain() {
		return
	}
	m := map[string]string{"Action": "Logoff", "ActionID": c.nextID("logoff")}
	c.inAmigo.Add(1)
	go func() {
		defer c.inAmigo.Done()
		_, _ = cn.action(m, true)
	}()
	t := time.NewTimer(logoffWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-cn.lost: // Asterisk closed the connection after its Goodbye
	}
}

type actionResult struct {
	resp    map[string]string
	err     error
	session string
}
