package ami

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/ivahaev/amigo"
)

// errConnDown means the action was not handed to amigo because its session
// was already given up: nothing was written.
var errConnDown = errors.New("AMI session down")

// conn wraps one amigo client (one TCP connection and login) and decides when
// it may be closed.
//
// amigo.Close writes a field its connection goroutine reads without a lock,
// and leaves Connected() true: an Action still waiting to be written, or
// started after it, blocks for good on a writer that is gone. So a client is
// closed only (a) after one of its callbacks was heard — its connection
// goroutine is then parked, and the callback orders its reads before our
// write — and (b) when no action of ours is inside Action. Whichever of
// release, a callback or the end of an action comes last does the Close.
// And the Close must come within amigo's ReconnectInterval of that callback,
// after which amigo starts reconnecting by itself: see amigoSettings.
type conn struct {
	cli *amigo.Amigo
	rl  *relay // amigo's connection to Asterisk; closed with cli

	// Callbacks only flip these; the supervisor selects on them. None can
	// be lost or crowd out another, however many callbacks amigo makes.
	up   chan struct{} // cap 1: the "connect" callback fired
	lost chan struct{} // closed at the first "error" callback that ends the connection
	full chan struct{} // cap 1: amigo reported its event queue full
	down chan struct{} // closed by release: workers stop taking jobs

	mu       sync.Mutex
	lostMsg  string // amigo's text for lost
	heard    bool   // a callback arrived since Connect
	dead     bool   // released: no new actions, close when safe
	draining bool   // logging off: no new actions but the Logoff
	inAction int    // our goroutines inside cli.Action
	closed   bool
}

func newConn(s *amigo.Settings, rl *relay) *conn {
	return &conn{
		cli:  amigo.New(s),
		rl:   rl,
		up:   make(chan struct{}, 1),
		lost: make(chan struct{}),
		full: make(chan struct{}, 1),
		down: make(chan struct{}),
	}
}

// onConnect and onError are registered with On("connect") and On("error").
// They run on amigo's goroutines, sometimes while amigo holds its handler
// lock or from its socket reader: they must neither block nor call back
// into amigo's registration methods.
func (cn *conn) onConnect(string) {
	if cn.heardCallback() {
		return
	}
	select {
	case cn.up <- struct{}{}:
	default:
	}
}

func (cn *conn) onError(msg string) {
	if msg == amigoQueueFull {
		// Sent by amigo's reader for every message while its queue is
		// full: not an end of the connection.
		select {
		case cn.full <- struct{}{}:
		default:
		}
		return
	}
	if cn.heardCallback() {
		return
	}
	cn.mu.Lock()
	if cn.lostMsg == "" {
		cn.lostMsg = msg
		close(cn.lost)
	}
	cn.mu.Unlock()
}

// heardCallback records that amigo's connection goroutine is parked after a
// callback, closes the client if it was waiting for that, and reports
// whether the connection was already released (nobody listens any more).
func (cn *conn) heardCallback() (released bool) {
	cn.mu.Lock()
	cn.heard = true
	closeNow := cn.closeableLocked()
	released = cn.dead
	cn.mu.Unlock()
	if closeNow {
		cn.shut()
	}
	return released
}

// lostReason is amigo's text for why the connection ended; call it after
// lost is closed.
func (cn *conn) lostReason() string {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.lostMsg
}

// isLost reports whether the connection ended.
func (cn *conn) isLost() bool {
	select {
	case <-cn.lost:
		return true
	default:
		return false
	}
}

// closeableLocked reports whether the client must be closed now and marks it
// closed; cn.mu is held.
func (cn *conn) closeableLocked() bool {
	if cn.dead && cn.heard && cn.inAction == 0 && !cn.closed {
		cn.closed = true
		return true
	}
	return false
}

// release gives the connection up: no new action starts on it, and amigo's
// client is closed now or as soon as that is safe, so amigo's own fixed-
// interval reconnect never runs.
func (cn *conn) release() {
	cn.mu.Lock()
	if !cn.dead {
		cn.dead = true
		close(cn.down)
	}
	closeNow := cn.closeableLocked()
	cn.mu.Unlock()
	if closeNow {
		cn.shut()
	}
}

// abort gives up a connection that never became ready. Closing its relay
// ends amigo's connection wherever amigo is (dialing, reading the banner or
// the Login answer, which it does without deadlines): amigo then calls back,
// and the client is closed as release says.
func (cn *conn) abort() {
	cn.release()
	cn.rl.close()
}

// shut closes amigo's client and, with it, its connection to Asterisk.
func (cn *conn) shut() {
	cn.cli.Close()
	cn.rl.close()
}

// lostError says why the connection ended: the guard's reason when it cut
// the connection, else amigo's.
func (cn *conn) lostError(c *Client) error {
	if err := cn.rl.tripError(); err != nil {
		return fmt.Errorf("AMI %s: connection closed: %w", c.addr, err)
	}
	return c.connError(cn.lostReason())
}

// drain stops new actions before a Logoff; it reports false when an action
// is still in flight (a Logoff would queue behind it) or the connection is
// already released.
func (cn *conn) drain() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.dead || cn.inAction > 0 {
		return false
	}
	cn.draining = true
	return true
}

// action runs one amigo Action unless the connection was released (or is
// draining, except for the Logoff itself). It may block up to amigo's
// ActionTimeout, or longer in amigo's lost-action case: callers run it on a
// goroutine and wait with their own timer.
func (cn *conn) action(m map[string]string, logoff bool) (map[string]string, error) {
	if err := checkAllowed(m); err != nil {
		return nil, err
	}
	cn.mu.Lock()
	if cn.dead || (cn.draining && !logoff) {
		cn.mu.Unlock()
		return nil, errConnDown
	}
	cn.inAction++
	cn.mu.Unlock()

	// amigo adds headers to the map it is given; the caller's map stays
	// reusable for a retry on another session.
	resp, err := cn.cli.Action(maps.Clone(m))

	cn.mu.Lock()
	cn.inAction--
	closeNow := cn.closeableLocked()
	cn.mu.Unlock()
	if closeNow {
		cn.shut()
	}
	return resp, err
}
