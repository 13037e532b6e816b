// Package ami is dialbridge's Asterisk side: it originates calls through the
// Asterisk Manager Interface and routes their events back to the calls.
//
// It is built on github.com/ivahaev/amigo and wraps its limits:
//   - amigo allows one action in flight per connection, so Originates go out
//     over several action sessions (events off), and call events are read
//     on one separate event session. Asterisk broadcasts OriginateResponse
//     and channel events to every session with events on, so the event
//     session sees the outcome of originates sent on the others.
//   - amigo reconnects at a fixed interval and touches fields without locks
//     while doing so: every lost amigo client is closed and replaced under
//     our own supervisor, with exponential backoff and jitter.
//   - amigo's timeouts come back as a map, its login failures only as a
//     callback string, and it has no context support: all of that is turned
//     into errors here, with our own timers around every action.
//   - amigo buffers a line or a message of any length. It cannot be given a
//     connection, so each amigo client dials a loopback relay of ours that
//     forwards Asterisk's bytes through a bound (relay.go, lineguard.go):
//     past it the connection is closed and the session reconnects.
package ami

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ivahaev/amigo"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
)

const (
	defaultHost            = "127.0.0.1"
	defaultPort            = 5038
	defaultConnections     = 2
	defaultCommandResponse = 5 * time.Second
	defaultMinBackoff      = 100 * time.Millisecond
	defaultMaxBackoff      = 10 * time.Second

	// dialTimeout bounds the TCP connect.
	dialTimeout = 5 * time.Second
	// responseGrace is added to CommandResponse for our own guard timer:
	// amigo's timer should fire first and say so.
	responseGrace = 500 * time.Millisecond
	// closeWait bounds how long Close waits for actions still inside amigo
	// (they end by amigo's ActionTimeout).
	closeWaitExtra = time.Second
	// logoffWait bounds the wait for Asterisk to close a session after
	// Logoff at Close.
	logoffWait = time.Second
)

// ErrLoginRefused is wrapped by the error Start returns when Asterisk refuses
// the login (wrong user or secret, or an ACL): retrying cannot help.
var ErrLoginRefused = errors.New("AMI login refused")

// LoginRefusedError is Asterisk's answer to a refused Login. It never holds
// the secret.
type LoginRefusedError struct {
	Addr    string // host:port
	User    string
	Message string // Asterisk's Message, e.g. "Authentication failed"
}

func (e *LoginRefusedError) Error() string {
	return fmt.Sprintf("AMI %s: login refused for user %q: %s", e.Addr, e.User, e.Message)
}

// Is makes errors.Is(err, ErrLoginRefused) true.
func (e *LoginRefusedError) Is(target error) bool { return target == ErrLoginRefused }

// Options configures a Client. Zero values take the defaults noted.
type Options struct {
	Host     string // default 127.0.0.1
	Port     int    // default 5038
	Username string
	Secret   string
	// Connections is the number of action sessions (events off) that send
	// Originates; at least 1, default 2. One more session reads events.
	Connections int
	// CommandResponse is how long to wait for Asterisk's Response to one
	// action (contract: timeouts.command_response), default 5 s.
	CommandResponse time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts,
	// default 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// Instance makes the ActionIDs of our own housekeeping actions unique
	// per daemon.
	Instance string
	// Unguarded lets amigo dial Asterisk itself, without the relay that
	// bounds what it buffers (relay.go). The relay costs a loopback hop per
	// message (about 15 % of the throughput ceiling, docs/PERFORMANCE.md);
	// dialbridge skips it when Asterisk is on this host (ami.guard: auto),
	// where the only peer is the PBX itself and the unit's MemoryMax bounds
	// the damage of a runaway line.
	Unguarded bool
}

// State is a snapshot for health checks and metrics.
type State struct {
	Ready            bool // events and at least one action session up
	EventSession     bool
	ActionSessions   int // configured
	ActionSessionsUp int
	// ActionSessionsBusy are waiting for the Response to an Originate now.
	ActionSessionsBusy int
	Reconnects         uint64 // sessions logged in again after a lost connection
	Watches            int    // calls whose events are routed now

	// Originates: Sent were handed to amigo (written or maybe written);
	// of those, Accepted got Response: Success, Refused got Response: Error,
	// NoResponse got none in time. NotWritten certainly reached nobody.
	Sent, Accepted, Refused, NoResponse, NotWritten uint64
}

// Client is the AMI side of dialbridge. It implements bridge.Dialer.
type Client struct {
	opts Options
	addr string // host:port as shown in logs and errors

	dialTimeout time.Duration // a field so tests can shorten it
	log         zerolog.Logger

	router   *router
	lists    listings // CoreShowChannels answers being collected
	events   *session
	actions  []*session
	sessions []*session
	dispatch dispatcher // hands Originates to the action sessions' workers

	changed   notifier
	actionsUp atomic.Int32

	lifeMu    sync.Mutex // orders Start's launch against Close
	started   bool
	closeOnce sync.Once
	stop      chan struct{}
	stopCtx   context.Context // done when stop is closed; for our dials
	stopDials context.CancelFunc
	wg        sync.WaitGroup // supervisors
	inAmigo   sync.WaitGroup // our goroutines that may be inside amigo's Action

	relayMu sync.Mutex
	relays  map[*relay]struct{} // live: closed at the end of Close
	relayWG sync.WaitGroup

	seq atomic.Uint64

	// noteMu orders the client-level log lines.
	noteMu     sync.Mutex
	wasReady   bool
	everReady  bool
	downSince  time.Time
	downLogged bool
	refusedLog bool

	reconnects, sent, accepted, refused, noResponse, notWritten atomic.Uint64
}

var _ bridge.Dialer = (*Client)(nil)

// New makes a Client. Nothing connects before Start.
func New(opts Options, log zerolog.Logger) *Client {
	if opts.Host == "" {
		opts.Host = defaultHost
	}
	if opts.Port == 0 {
		opts.Port = defaultPort
	}
	if opts.Connections < 1 {
		opts.Connections = defaultConnections
	}
	if opts.CommandResponse <= 0 {
		opts.CommandResponse = defaultCommandResponse
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = defaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = defaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	c := &Client{
		opts:        opts,
		addr:        addr,
		dialTimeout: dialTimeout,
		log:         log.With().Str("ami", addr).Logger(),
		router:      newRouter(),
		stop:        make(chan struct{}),
		relays:      make(map[*relay]struct{}),
	}
	c.stopCtx, c.stopDials = context.WithCancel(context.Background())
	c.changed.init()
	c.events = &session{c: c, name: "events", events: true, first: make(chan struct{})}
	c.sessions = append(c.sessions, c.events)
	for i := range opts.Connections {
		s := &session{c: c, name: "action-" + strconv.Itoa(i+1), first: make(chan struct{})}
		c.actions = append(c.actions, s)
		c.sessions = append(c.sessions, s)
	}
	return c
}

// Start logs in the event session and the action sessions and returns once
// the first attempt of every session has ended:
//   - all logged in: nil, and Ready is true;
//   - Asterisk refused the login: a *LoginRefusedError (errors.Is
//     ErrLoginRefused) naming the address and user; the client is closed;
//   - Asterisk unreachable (connection refused, timeout): nil. The sessions
//     keep retrying with backoff in the background; the daemon runs and
//     dials nothing until WaitReady returns;
//   - ctx ended first: its error; the client is closed.
func (c *Client) Start(ctx context.Context) error {
	if err := c.checkOptions(); err != nil {
		return err
	}
	c.lifeMu.Lock()
	if c.started {
		c.lifeMu.Unlock()
		return errors.New("ami: Start called twice")
	}
	c.started = true
	if c.stopping() {
		c.lifeMu.Unlock()
		return fmt.Errorf("AMI %s: %w", c.addr, errStopped)
	}
	for _, s := range c.sessions {
		c.wg.Add(1)
		go s.run()
	}
	c.lifeMu.Unlock()
	for _, s := range c.sessions {
		select {
		case <-s.first:
		case <-ctx.Done():
			c.Close()
			return fmt.Errorf("AMI %s: start: %w", c.addr, ctx.Err())
		}
	}
	for _, s := range c.sessions {
		var refused *LoginRefusedError
		if errors.As(s.firstErr, &refused) {
			c.Close()
			return refused
		}
	}
	return nil
}

func (c *Client) checkOptions() error {
	if c.opts.Username == "" {
		return fmt.Errorf("AMI %s: no username", c.addr)
	}
	// The secret is never quoted: only that it is unusable.
	if strings.ContainsAny(c.opts.Username, "\r\n\x00") || strings.ContainsAny(c.opts.Secret, "\r\n\x00") {
		return fmt.Errorf("AMI %s: username or secret contains CR, LF or NUL", c.addr)
	}
	if c.opts.Port < 1 || c.opts.Port > 65535 {
		return fmt.Errorf("AMI %s: bad port %d", c.addr, c.opts.Port)
	}
	return nil
}

// Close logs off and closes every session and waits for the supervisors.
// Watches still open get EventLost: no more events will come. Originates in
// flight end with their own timers. Close is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.lifeMu.Lock()
		close(c.stop)
		c.lifeMu.Unlock()
		c.stopDials()
		c.changed.notify()
		c.wg.Wait()
		c.router.lost(time.Now())
		done := make(chan struct{})
		go func() {
			c.inAmigo.Wait()
			close(done)
		}()
		t := time.NewTimer(c.opts.CommandResponse + responseGrace + closeWaitExtra)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			// Only amigo's lost-action case gets here: an action blocked
			// inside amigo for good. Its goroutine is abandoned.
			c.log.Warn().Msg("AMI close: an action is still blocked inside amigo")
		}
		// Connections whose amigo client could not be closed safely (an
		// action still inside it) end here; amigo sees them closed.
		c.relayMu.Lock()
		for r := range c.relays {
			r.close()
		}
		c.relayMu.Unlock()
		c.relayWG.Wait()
	})
	return nil
}

// dialAsterisk opens one TCP connection to Asterisk, for a relay.
func (c *Client) dialAsterisk() (net.Conn, error) {
	d := net.Dialer{Timeout: c.dialTimeout}
	up, err := d.DialContext(c.stopCtx, "tcp", c.addr)
	if err != nil {
		if c.stopping() {
			return nil, errStopped
		}
		return nil, fmt.Errorf("AMI %s: cannot connect: %w", c.addr, err)
	}
	return up, nil
}

// startRelay puts a relay between amigo and up for session s.
func (c *Client) startRelay(s *session, up net.Conn, acceptWithin time.Duration) (*relay, error) {
	// Held until r is set and registered: onDone, which may run at once,
	// waits for it.
	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	var r *relay
	onTrip := func(err error) {
		// The one line that says why the reconnect that follows happens.
		c.log.Warn().Str("session", s.name).Err(err).Msg("AMI connection dropped: Asterisk sent more than we buffer; reconnecting")
	}
	onDone := func() {
		c.relayMu.Lock()
		delete(c.relays, r)
		c.relayMu.Unlock()
		c.relayWG.Done()
	}
	c.relayWG.Add(1)
	r, err := startRelay(up, acceptWithin, onTrip, onDone)
	if err != nil {
		c.relayWG.Done()
		return nil, err
	}
	c.relays[r] = struct{}{}
	return r, nil
}

func (c *Client) stopping() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// Ready reports whether an Originate can be sent now: the event session and
// at least one action session are logged in. Without the event session an
// originated call's outcome would be lost, so it counts as not ready.
func (c *Client) Ready() bool {
	return !c.stopping() && c.events.ready.Load() && c.actionsUp.Load() > 0
}

// WaitReady blocks until Ready, ctx ends, or the client is closed.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		ch := c.changed.wait()
		if c.Ready() {
			return nil
		}
		if c.stopping() {
			return fmt.Errorf("AMI %s: %w", c.addr, errStopped)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("AMI %s not ready: %w", c.addr, ctx.Err())
		}
	}
}

// State returns counters and session states.
func (c *Client) State() State {
	busy := 0
	for _, s := range c.actions {
		if s.busy.Load() {
			busy++
		}
	}
	return State{
		ActionSessionsBusy: busy,
		Ready:              c.Ready(),
		EventSession:       c.events.ready.Load(),
		ActionSessions:     len(c.actions),
		ActionSessionsUp:   int(c.actionsUp.Load()),
		Reconnects:         c.reconnects.Load(),
		Watches:            int(c.router.watches.Load()),
		Sent:               c.sent.Load(),
		Accepted:           c.accepted.Load(),
		Refused:            c.refused.Load(),
		NoResponse:         c.noResponse.Load(),
		NotWritten:         c.notWritten.Load(),
	}
}

// job is one Originate handed to an action session's worker.
type job struct {
	action map[string]string
	done   chan actionResult // cap 1: the worker never waits for the caller
	picked chan struct{}     // cap 1: a worker took the job from the queue
}

// newJob is the only way to make a job: a worker blocks forever on a nil
// channel.
func newJob(action map[string]string) *job {
	return &job{action: action, done: make(chan actionResult, 1), picked: make(chan struct{}, 1)}
}

// Originate implements bridge.Dialer. It sends one Async Originate on a free
// action session and waits for Asterisk's Response, at most CommandResponse
// (plus a short grace) or until ctx ends. Errors:
//   - bridge.ErrNotWritten (wrapped): nothing was sent — AMI not ready, the
//     client closed, or ctx ended while every session was busy;
//   - *bridge.RefusedError: Response: Error, with Asterisk's Message;
//   - bridge.ErrNoResponse (wrapped): the action was handed to amigo and no
//     Response came in time, or ctx ended meanwhile: a call may exist;
//   - ErrInvalidRequest (wrapped): refused before sending (CR/LF/NUL, missing
//     ActionID or Channel, ids already in flight).
//
// On success the returned watch already routes the call's events, and the
// caller must Close it.
func (c *Client) Originate(ctx context.Context, req bridge.OriginateRequest) (bridge.Watch, error) {
	m, err := originateAction(req)
	if err != nil {
		return nil, err
	}
	if !c.Ready() {
		c.notWritten.Add(1)
		return nil, c.notReadyError()
	}
	// Routing is in place before anything is written: the call's events
	// and the action's Response are not ordered.
	w := newWatch(c.router, req.ActionID, req.ChannelID)
	if err := c.router.register(w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	j := newJob(m)
	// A hand-off can land on a session that died in between; amigo then
	// writes nothing, so the job may go to another session.
	for try := 0; ; try++ {
		if err := c.handoff(ctx, j); err != nil {
			w.Close()
			c.notWritten.Add(1)
			return nil, err
		}
		r, err := c.await(ctx, j)
		if err != nil {
			w.Close()
			c.sent.Add(1)
			c.noResponse.Add(1)
			return nil, err
		}
		if r.err != nil {
			// errConnDown, or amigo's "not connected": checked before
			// anything is written.
			if try < len(c.actions) && ctx.Err() == nil {
				continue
			}
			w.Close()
			c.notWritten.Add(1)
			return nil, fmt.Errorf("%w: %w", bridge.ErrNotWritten, r.err)
		}
		c.sent.Add(1)
		switch {
		case r.resp["Error"] == "Timeout":
			w.Close()
			c.noResponse.Add(1)
			return nil, fmt.Errorf("%w (%s on %s)", bridge.ErrNoResponse, c.opts.CommandResponse, r.session)
		case strings.EqualFold(r.resp["Response"], "Success"):
			c.accepted.Add(1)
			return w, nil
		case strings.EqualFold(r.resp["Response"], "Error"):
			w.Close()
			c.refused.Add(1)
			return nil, &bridge.RefusedError{Message: r.resp["Message"]}
		default:
			// Something answered, so the action was written; what it
			// started is unknown.
			w.Close()
			c.noResponse.Add(1)
			return nil, fmt.Errorf("unexpected answer to Originate: Response %q, Message %q", r.resp["Response"], r.resp["Message"])
		}
	}
}

// handoff gives j to a free worker, or waits in line for one. While it
// waits, a change of state (a session lost) re-checks readiness so it never
// queues behind dead sessions.
func (c *Client) handoff(ctx context.Context, j *job) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", bridge.ErrNotWritten, err)
		}
		changed := c.changed.wait()
		if !c.Ready() {
			return c.notReadyError()
		}
		if c.dispatch.offer(j) {
			return nil
		}
		select {
		case <-j.picked:
			return nil
		case <-changed:
		case <-ctx.Done():
		}
		if !c.dispatch.withdraw(j) {
			<-j.picked // a worker has it: it is being sent
			return nil
		}
	}
}

// await waits for the worker's answer with our own timer: amigo's timeout
// does not cover every case (an action can be lost across a reconnect).
func (c *Client) await(ctx context.Context, j *job) (actionResult, error) {
	guard := time.NewTimer(c.opts.CommandResponse + responseGrace)
	defer guard.Stop()
	var err error
	select {
	case r := <-j.done:
		return r, nil
	case <-guard.C:
		err = fmt.Errorf("%w (%s)", bridge.ErrNoResponse, c.opts.CommandResponse+responseGrace)
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", bridge.ErrNoResponse, ctx.Err())
	}
	// An answer that came at the same moment still counts.
	select {
	case r := <-j.done:
		return r, nil
	default:
		return actionResult{}, err
	}
}

// notReadyError says why nothing was written.
func (c *Client) notReadyError() error {
	switch {
	case c.stopping():
		return fmt.Errorf("%w (AMI %s: client closed)", bridge.ErrNotWritten, c.addr)
	case !c.events.ready.Load():
		return fmt.Errorf("%w (AMI %s: event session not logged in)", bridge.ErrNotWritten, c.addr)
	}
	return fmt.Errorf("%w (AMI %s: no action session logged in)", bridge.ErrNotWritten, c.addr)
}

// amigoSettings is a fresh Settings per amigo client (amigo fills defaults
// into the struct it is given), dialing the relay at addr.
func (c *Client) amigoSettings(host string, port int) *amigo.Settings {
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // amigo joins host and port with a bare ":"
	}
	return &amigo.Settings{
		Username:      c.opts.Username,
		Password:      c.opts.Secret,
		Host:          host,
		Port:          strconv.Itoa(port),
		ActionTimeout: c.opts.CommandResponse,
		DialTimeout:   c.dialTimeout,
		// amigo's own reconnect must never run (see conn): after a lost
		// connection amigo sleeps this long before trying again, and we
		// close the client well within it — even when an action still has
		// to time out first (ActionTimeout = CommandResponse).
		ReconnectInterval: c.opts.CommandResponse + 2*time.Second,
		// Without it amigo sets no read deadline and never notices a
		// half-open TCP connection.
		Keepalive: true,
	}
}

// loginTimeout bounds one attempt from Connect to the login answer.
func (c *Client) loginTimeout() time.Duration {
	return c.dialTimeout + c.opts.CommandResponse
}

// backoff is the wait before attempt n+1: exponential, with half of it
// random so that many daemons do not reconnect in step.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MaxBackoff
	if n < 32 {
		if e := c.opts.MinBackoff << n; e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func (c *Client) nextID(kind string) string {
	inst := c.opts.Instance
	if inst == "" {
		inst = "dialbridge"
	}
	return inst + "-" + kind + "-" + strconv.FormatUint(c.seq.Add(1), 10)
}

// connError turns an amigo "error" callback text into an error.
func (c *Client) connError(msg string) error {
	switch {
	case msg == amigoDialFailed:
		return fmt.Errorf("AMI %s: cannot connect", c.addr)
	case strings.HasPrefix(msg, amigoLoginPrefix):
		detail := strings.TrimPrefix(msg, amigoLoginPrefix)
		if isTransportText(detail) {
			return fmt.Errorf("AMI %s: connection failed during login: %s", c.addr, detail)
		}
		return &LoginRefusedError{Addr: c.addr, User: c.opts.Username, Message: detail}
	case strings.HasPrefix(msg, amigoBannerPrefix):
		return fmt.Errorf("AMI %s: no banner: %s", c.addr, strings.TrimPrefix(msg, amigoBannerPrefix))
	case strings.HasPrefix(msg, amigoTCPPrefix):
		return fmt.Errorf("AMI %s: connection lost: %s", c.addr, strings.TrimPrefix(msg, amigoTCPPrefix))
	}
	return fmt.Errorf("AMI %s: %s", c.addr, msg)
}

// isTransportText tells an I/O failure during Login (amigo gives us only its
// text) from Asterisk's own refusal message.
func isTransportText(s string) bool {
	if s == "EOF" {
		return true
	}
	for _, t := range []string{"unexpected EOF", "connection reset", "broken pipe", "i/o timeout", "use of closed network connection", "connection refused"} {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// The note* methods log client-level changes once: AMI usable, lost,
// unreachable, login refused. Per-session detail goes to debug, and retries
// log nothing.

func (c *Client) noteUp(s *session) {
	c.noteMu.Lock()
	defer c.noteMu.Unlock()
	c.log.Debug().Str("session", s.name).Msg("AMI session logged in")
	if !c.Ready() || c.wasReady {
		return
	}
	c.wasReady = true
	if !c.everReady {
		c.everReady = true
		c.log.Info().Str("user", c.opts.Username).Int("action_sessions", len(c.actions)).Msg("AMI connected")
		return
	}
	c.log.Info().Str("down_for", time.Since(c.downSince).Round(time.Millisecond).String()).Msg("AMI reconnected")
	c.downLogged, c.refusedLog = false, false
}

func (c *Client) noteLost(s *session, reason string) {
	c.noteMu.Lock()
	defer c.noteMu.Unlock()
	c.log.Debug().Str("session", s.name).Str("reason", reason).Msg("AMI session lost")
	if c.wasReady && !c.Ready() {
		c.wasReady = false
		c.downSince = time.Now()
		c.downLogged = true
		c.log.Warn().Str("session", s.name).Str("reason", reason).Msg("AMI connection lost; reconnecting, nothing is dialed meanwhile")
	}
}

func (c *Client) noteFailed(s *session, err error) {
	c.noteMu.Lock()
	defer c.noteMu.Unlock()
	c.log.Debug().Str("session", s.name).Err(err).Msg("AMI login attempt failed")
	if c.wasReady {
		// Another session is retrying while AMI as a whole is usable:
		// Ready() already tells.
		return
	}
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	var refused *LoginRefusedError
	if errors.As(err, &refused) {
		if !c.refusedLog {
			c.refusedLog = true
			c.log.Error().Str("user", c.opts.Username).Str("message", refused.Message).Msg("AMI login refused; retrying with backoff")
		}
		return
	}
	if !c.downLogged {
		c.downLogged = true
		c.log.Warn().Err(err).Msg("AMI unreachable; retrying with backoff, nothing is dialed meanwhile")
	}
}

// notifier wakes every waiter on a state change without polling: waiters
// take the current channel, check the state, and wait for the channel to be
// closed by the next change.
type notifier struct {
	mu sync.Mutex
	ch atomic.Pointer[chan struct{}]
}

func (n *notifier) init() {
	ch := make(chan struct{})
	n.ch.Store(&ch)
}

func (n *notifier) wait() <-chan struct{} { return *n.ch.Load() }

func (n *notifier) notify() {
	n.mu.Lock()
	next := make(chan struct{})
	old := n.ch.Swap(&next)
	close(*old)
	n.mu.Unlock()
}

// ChannelAlive asks Asterisk (read-only Status action) whether a channel
// still exists. The bridge uses it after a reconnect for answered calls
// whose Hangup event may have been lost while AMI was down.
func (c *Client) ChannelAlive(ctx context.Context, channel string) (bool, error) {
	if channel == "" || strings.ContainsAny(channel, "\r\n\x00") {
		return false, fmt.Errorf("%w: bad channel name %q", ErrInvalidRequest, channel)
	}
	if !c.Ready() {
		return false, c.notReadyError()
	}
	j := newJob(map[string]string{"Action": "Status", "ActionID": c.nextID("status"), "Channel": channel})
	if err := c.handoff(ctx, j); err != nil {
		return false, err
	}
	r, err := c.await(ctx, j)
	if err != nil {
		return false, fmt.Errorf("status of %s: %w", channel, err)
	}
	if r.err != nil {
		return false, fmt.Errorf("status of %s: %w", channel, r.err)
	}
	switch {
	case strings.EqualFold(r.resp["Response"], "Success"):
		return true, nil
	case strings.EqualFold(r.resp["Response"], "Error") && strings.Contains(strings.ToLower(r.resp["Message"]), "no such channel"):
		return false, nil
	case r.resp["Error"] == "Timeout":
		return false, fmt.Errorf("status of %s: %w", channel, bridge.ErrNoResponse)
	}
	return false, fmt.Errorf("status of %s: unexpected answer: Response %q, Message %q", channel, r.resp["Response"], r.resp["Message"])
}
