package amisim

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const banner = "Asterisk Call Manager/11.0.0\r\n"

// writeChunk bounds one conn.Write so that the write deadline measures
// "no progress for WriteTimeout" rather than "the whole backlog took longer".
const writeChunk = 64 << 10

// session is one AMI connection: a reader goroutine that reads and handles
// actions in order (like Asterisk's session thread) and a writer goroutine
// that drains the session's outbound queue.
type session struct {
	srv   *Server
	id    uint64
	conn  net.Conn
	start time.Time
	done  chan struct{} // closed when the session dies

	mask   atomic.Int64 // event mask (send_events)
	authed atomic.Bool

	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte // queued output not yet taken by the writer
	spare   []byte
	pending int  // messages in buf
	holding bool // a sync Originate is in progress: events wait in held
	held    []byte
	heldN   int
	closing bool // flush what is queued, then close
	reason  string
	dead    bool

	// Used by the reader goroutine only.
	challenge string
}

func newSession(s *Server, conn net.Conn) *session {
	ss := &session{
		srv:   s,
		id:    s.sessSeq.Add(1),
		conn:  conn,
		start: time.Now(),
		done:  make(chan struct{}),
	}
	ss.cond.L = &ss.mu
	ss.mask.Store(maskAll)
	return ss
}

// wants reports whether an event of class flag goes to this session.
func (ss *session) wants(flag int64) bool {
	return ss.authed.Load() && ss.mask.Load()&flag == flag
}

// enqueue queues n rendered messages for the writer. Events wait while a
// sync Originate holds the session. It reports false when the session is
// gone or was dropped for exceeding MaxQueue.
func (ss *session) enqueue(b []byte, n int, event bool) bool {
	ss.mu.Lock()
	if ss.dead || ss.closing {
		ss.mu.Unlock()
		return false
	}
	if event && ss.holding {
		ss.held = append(ss.held, b...)
		ss.heldN += n
	} else {
		ss.buf = append(ss.buf, b...)
		ss.pending += n
		ss.cond.Signal()
	}
	max := ss.srv.cfg.MaxQueue
	over := max > 0 && ss.pending+ss.heldN > max
	ss.mu.Unlock()
	if over {
		ss.drop(fmt.Sprintf("outbound queue over %d messages", max))
		return false
	}
	return true
}

func (ss *session) send(b []byte) { ss.enqueue(b, 1, false) }

func (ss *session) enqueueEvent(b []byte, n int) bool { return ss.enqueue(b, n, true) }

// hold makes events wait (sync Originate); release queues resp and then
// every held event.
func (ss *session) hold() {
	ss.mu.Lock()
	ss.holding = true
	ss.mu.Unlock()
}

func (ss *session) release(resp []byte) {
	ss.mu.Lock()
	ss.holding = false
	if !ss.dead && !ss.closing {
		ss.buf = append(ss.buf, resp...)
		ss.buf = append(ss.buf, ss.held...)
		ss.pending += 1 + ss.heldN
		ss.cond.Signal()
	}
	ss.held, ss.heldN = nil, 0
	ss.mu.Unlock()
}

// closeAfterFlush ends the session once the queued output is written.
func (ss *session) closeAfterFlush(reason string) {
	ss.mu.Lock()
	if !ss.closing {
		ss.reason = reason
	}
	ss.closing = true
	ss.cond.Signal()
	ss.mu.Unlock()
}

// kill closes the session now; it reports whether this call did it.
func (ss *session) kill(reason string) bool {
	ss.mu.Lock()
	if ss.dead {
		ss.mu.Unlock()
		return false
	}
	ss.dead = true
	ss.buf, ss.held, ss.spare = nil, nil, nil
	ss.cond.Broadcast()
	ss.mu.Unlock()
	close(ss.done)
	ss.conn.Close()
	ss.srv.removeSession(ss)
	if reason != "" {
		ss.srv.logf("amisim: session %d (%s) closed: %s", ss.id, ss.conn.RemoteAddr(), reason)
	}
	return true
}

// drop kills a session whose reader is too slow, and counts it.
func (ss *session) drop(reason string) {
	if ss.kill("dropped: " + reason) {
		ss.srv.nDropped.Add(1)
	}
}

// sleep waits d unless the session dies first; it reports whether the
// session is still alive.
func (ss *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.done:
		return false
	}
}

func (ss *session) writer() {
	defer ss.srv.wg.Done()
	var prev []byte
	for {
		ss.mu.Lock()
		if prev != nil && cap(prev) <= 1<<20 && !ss.dead {
			ss.spare = prev[:0]
		}
		prev = nil
		for len(ss.buf) == 0 && !ss.dead && !ss.closing {
			ss.cond.Wait()
		}
		if ss.dead {
			ss.mu.Unlock()
			return
		}
		if len(ss.buf) == 0 { // closing, everything written
			reason := ss.reason
			ss.mu.Unlock()
			ss.kill(reason)
			return
		}
		out := ss.buf
		ss.buf, ss.spare = ss.spare, nil
		ss.pending = 0
		ss.mu.Unlock()

		if err := ss.write(out); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				ss.drop(fmt.Sprintf("write blocked longer than %v", ss.srv.cfg.WriteTimeout))
			} else {
				ss.kill("write: " + err.Error())
			}
			return
		}
		prev = out
	}
}

func (ss *session) write(out []byte) error {
	wt := ss.srv.cfg.WriteTimeout
	for len(out) > 0 {
		n := min(len(out), writeChunk)
		if wt > 0 {
			ss.conn.SetWriteDeadline(time.Now().Add(wt))
		}
		m, err := ss.conn.Write(out[:n])
		out = out[m:]
		if err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) reader() {
	defer ss.srv.wg.Done()
	ss.srv.logf("amisim: session %d connected from %s", ss.id, ss.conn.RemoteAddr())
	// The banner goes alone, first: amigo reads it with a single Read.
	ss.enqueue([]byte(banner), 0, false)
	if at := ss.srv.cfg.AuthTimeout; at > 0 {
		ss.conn.SetReadDeadline(ss.start.Add(at))
	}
	lr := &lineReader{r: bufio.NewReaderSize(ss.conn, 4096), onDiscard: ss.discarded}
	var (
		m    message
		raw  []byte
		offs []int
	)
	for {
		if err := lr.readMessage(&m, &raw, &offs); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !ss.authed.Load() {
				ss.kill(fmt.Sprintf("failed to authenticate in %v", ss.srv.cfg.AuthTimeout))
				return
			}
			// The client went away (or the session was killed): write what
			// is still queued, if the peer still reads, then close.
			ss.closeAfterFlush("read: " + err.Error())
			return
		}
		// do_message answers a broken message before looking at its
		// Action, logged in or not, and keeps the session. Too many lines
		// wins over a long line and leaves the long-line mark for the
		// next message, as in Asterisk.
		switch {
		case m.tooMany:
			ss.send(appendResponse(nil, "Error", m.get("ActionID"), "", "Too many lines in message or allocation failure", false))
		case lr.tooLong:
			lr.tooLong = false
			ss.srv.nParseErrors.Add(1)
			ss.send(appendResponse(nil, "Error", m.get("ActionID"), "", "Failed to parse message: line too long", false))
		default:
			if !ss.handle(&m) {
				return
			}
		}
	}
}

// discarded logs get_input's warning for each full buffer without a line
// end it throws away.
func (ss *session) discarded(head []byte) {
	ss.srv.logf("amisim: session %d: Discarding message from %s. Line too long: %.25s...",
		ss.id, hostOf(ss.conn.RemoteAddr()), head)
}

// hostOf is ast_sockaddr_stringify_addr: the address without the port.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.String()
}

// handle processes one action (manager.c process_message). It returns false
// when the session ends.
func (ss *session) handle(m *message) bool {
	id := m.get("ActionID")
	action := ""
	for _, h := range m.headers {
		if strings.EqualFold(h.name, "Action") && h.value != "" {
			action = h.value
			break
		}
	}
	if action == "" {
		ss.send(appendResponse(nil, "Error", id, "", "Missing action in request", false))
		return true
	}
	act := strings.ToLower(action)
	if !ss.authed.Load() && act != "login" && act != "logoff" && act != "challenge" {
		ss.send(appendResponse(nil, "Error", id, "", "Permission denied", false))
		return true
	}
	// A manager user without the action's write class gets what Asterisk's
	// process_message answers: Permission denied, session kept.
	if ss.srv.denied(act) {
		ss.send(appendResponse(nil, "Error", id, "", "Permission denied", false))
		return true
	}
	switch act {
	case "login":
		return ss.actionLogin(m, id)
	case "logoff":
		ss.send(appendResponse(nil, "Goodbye", id, "", "Thanks for all the fish.", false))
		ss.closeAfterFlush("Logoff")
		return false
	case "challenge":
		ss.actionChallenge(m, id)
	case "ping":
		b := appendHeader(nil, "Response", "Success")
		if id != "" {
			b = appendHeader(b, "ActionID", id)
		}
		b = appendHeader(b, "Ping", "Pong")
		now := time.Now()
		b = append(b, "Timestamp: "...)
		b = strconv.AppendInt(b, now.Unix(), 10)
		b = append(b, '.')
		b = append(b, fmt.Sprintf("%06d", now.Nanosecond()/1000)...)
		b = append(b, "\r\n\r\n"...)
		ss.send(b)
	case "events":
		mask := stringsToMask(m.get("EventMask"))
		switch {
		case mask > 0:
			ss.mask.Store(mask)
			ss.send(appendHeader(appendResponse(nil, "Success", id, "", "", true), "Events", "On\r\n"))
		case mask == 0:
			ss.mask.Store(0)
			ss.send(appendHeader(appendResponse(nil, "Success", id, "", "", true), "Events", "Off\r\n"))
		default:
			ss.send(appendResponse(nil, "Error", id, "", "Invalid event mask", false))
		}
	case "originate":
		return ss.actionOriginate(m, id)
	case "coresettings":
		ss.actionCoreSettings(id)
	case "corestatus":
		ss.actionCoreStatus(id)
	case "coreshowchannels":
		ss.actionCoreShowChannels(id)
	case "status":
		ss.actionStatus(m, id)
	case "hangup":
		ss.actionHangup(m, id)
	case "command":
		ss.actionCommand(m, id) // the simulator's own "amisim ..." CLI (carrier.go)
	default:
		ss.send(appendResponse(nil, "Error", id, "",
			"Invalid/unknown command: "+action+". Use Action: ListCommands to show available commands.", false))
	}
	return true
}

func (ss *session) actionChallenge(m *message, id string) {
	if !strings.EqualFold(m.get("AuthType"), "MD5") {
		ss.send(appendResponse(nil, "Error", id, "", "Must specify AuthType", false))
		return
	}
	if ss.challenge == "" {
		ss.challenge = strconv.FormatInt(rand.Int64N(1<<31), 10)
	}
	b := appendResponse(nil, "Success", id, "", "", true)
	b = appendHeader(b, "Challenge", ss.challenge)
	ss.send(append(b, '\r', '\n'))
}

func (ss *session) actionLogin(m *message, id string) bool {
	srv := ss.srv
	if ss.authed.Load() {
		ss.send(appendResponse(nil, "Success", id, "", "Already authenticated", false))
		return true
	}
	user := m.get("Username")
	userOK := strings.EqualFold(user, srv.cfg.Username)
	passOK := false
	md5Auth := strings.EqualFold(m.get("AuthType"), "MD5")
	if userOK {
		if md5Auth {
			key := m.get("Key")
			if key != "" && ss.challenge != "" {
				sum := md5.Sum([]byte(ss.challenge + srv.cfg.Secret))
				passOK = strings.EqualFold(key, hex.EncodeToString(sum[:]))
			}
		} else {
			passOK = m.get("Secret") == srv.cfg.Secret
		}
	}
	if !userOK || !passOK {
		srv.nFailedLogins.Add(1)
		ev := "InvalidPassword"
		if !userOK {
			ev = "InvalidAccountID"
		} else if md5Auth {
			ev = "ChallengeResponseFailed"
		}
		srv.broadcast(ss.securityEvent(ev, user), 1, flagSecurity)
		srv.logf("amisim: session %d: login as %q failed", ss.id, user)
		if !ss.sleep(srv.cfg.AuthDelay) {
			return false
		}
		ss.send(appendResponse(nil, "Error", id, "", "Authentication failed", false))
		ss.closeAfterFlush("authentication failed")
		return false
	}
	if mask := stringsToMask(m.get("Events")); mask >= 0 {
		ss.mask.Store(mask)
	}
	ss.conn.SetReadDeadline(time.Time{})
	ss.authed.Store(true)
	srv.nLogins.Add(1)
	b := appendResponse(nil, "Success", id, "", "Authentication accepted", false)
	if ss.mask.Load()&flagSystem == flagSystem {
		up := strconv.FormatInt(int64(time.Since(srv.started)/time.Second), 10)
		b = appendHeader(b, "Event", "FullyBooted")
		b = appendHeader(b, "Privilege", "system,all")
		b = appendHeader(b, "Uptime", up)
		b = appendHeader(b, "LastReload", up)
		b = appendHeader(b, "Status", "Fully Booted")
		b = append(b, '\r', '\n')
	}
	ss.send(b)
	srv.addListener(ss)
	srv.broadcast(ss.securityEvent("SuccessfulAuth", user), 1, flagSecurity)
	srv.logf("amisim: session %d logged in as %q", ss.id, user)
	return true
}

// securityEvent renders the security events of a login attempt.
func (ss *session) securityEvent(event, account string) []byte {
	now := time.Now().Format("2006-01-02T15:04:05.000-0700")
	severity, version := "Error", "1"
	switch event {
	case "SuccessfulAuth":
		severity = "Informational"
	case "InvalidPassword":
		version = "2"
	}
	b := appendHeader(nil, "Event", event)
	b = appendHeader(b, "Privilege", "security,all")
	b = appendHeader(b, "EventTV", now)
	b = appendHeader(b, "Severity", severity)
	b = appendHeader(b, "Service", "AMI")
	b = appendHeader(b, "EventVersion", version)
	b = appendHeader(b, "AccountID", account)
	b = appendHeader(b, "SessionID", fmt.Sprintf("0x%012x", 0x7f0000000000+ss.id*0x1000))
	b = appendHeader(b, "LocalAddress", amiAddr(ss.conn.LocalAddr()))
	b = appendHeader(b, "RemoteAddress", amiAddr(ss.conn.RemoteAddr()))
	if event == "SuccessfulAuth" {
		b = appendHeader(b, "UsingPassword", "0")
	}
	b = appendHeader(b, "SessionTV", ss.start.Format("2006-01-02T15:04:05.000-0700"))
	return append(b, '\r', '\n')
}

// amiAddr formats an address the way Asterisk's security events do:
// IPV4/TCP/127.0.0.1/5038.
func amiAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "IPV4/TCP/" + a.String()
	}
	v := "IPV4"
	if ta.IP.To4() == nil {
		v = "IPV6"
	}
	return fmt.Sprintf("%s/TCP/%s/%d", v, ta.IP, ta.Port)
}
