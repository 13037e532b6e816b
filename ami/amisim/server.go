package amisim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by WaitOriginates when the server closes.
var ErrServerClosed = errors.New("amisim: server closed")

// Config configures a Server. The zero value is usable.
type Config struct {
	Addr             string // listen address, default "127.0.0.1:0"
	Username, Secret string // default "dialbridge" / "secret"
	Rules            []Rule
	// Denied are actions (any case) the manager user may not run: they are
	// answered "Permission denied", as Asterisk answers a user who lacks
	// the action's write class (e.g. CoreShowChannels without reporting).
	Denied []string
	// AuthDelay is the pause before "Authentication failed"; default 1s
	// (Asterisk sleeps 1 s). Negative: no delay.
	AuthDelay time.Duration
	// ShuffleSeed 0 plays the events of a call in the order seen in the
	// transcripts; otherwise OriginateResponse is moved, with a random
	// generator seeded by it, to a random place among the channel events of
	// the same instant (before or after the Hangups of a failed call, before
	// or after the Up Newstates of an answered one).
	ShuffleSeed int64
	// MaxQueue is the per-session outbound message bound: a session with
	// more messages waiting to be written is dropped. Default 100,000;
	// negative: no bound.
	MaxQueue int
	// WriteTimeout: a session whose socket accepts no data for this long is
	// dropped, like Asterisk's per-user writetimeout. Default 100ms, as in
	// Asterisk; negative: never.
	WriteTimeout time.Duration
	// AuthTimeout: a connection that has not logged in after this long is
	// closed (Asterisk's authtimeout). Default 30s; negative: never.
	AuthTimeout time.Duration
	// MaxRecords bounds the OriginateRecords kept for Originates(): 0 keeps
	// every one, N > 0 keeps the last N, negative keeps none (benchmarks).
	// OriginateCount and WaitOriginates count every originate regardless.
	MaxRecords int
	// AllEvents also sends the call-class events dialbridge does not route
	// (NewCallerid, NewConnectedLine, LocalBridge, DialBegin, DialEnd,
	// DeviceStateChange, SoftHangupRequest, HangupRequest) as a real
	// Asterisk does: 21 events for an answered call instead of 7.
	AllEvents bool
	// EventFilters is manager.conf's legacy eventfilter for the user: each a
	// regular expression matched against an event's whole text, "!" first
	// to exclude. Empty: every event.
	EventFilters []string
	// Carriers puts a carrier model behind PJSIP trunks, by endpoint name
	// (or TrunkAny); see Carrier, SetCarrier, ParseCarriers.
	Carriers map[string]Carrier
	// Clock, when set, is the time carriers count their calls per second
	// and OriginateTimes by (tests inject a fake one); default time.Now.
	Clock func() time.Time
	// Logf, when set, receives a line per session event and per originate.
	Logf func(format string, args ...any)
}

// OriginateRecord is one Originate action as the simulator received it.
type OriginateRecord struct {
	ActionID, Channel, Number, ChannelID, Context, Exten, CallerID string
	Priority                                                       int
	Timeout                                                        time.Duration
	Async                                                          bool
	// Variables are the channel variables the Variable headers set, by the
	// name the dialplan reads them with (${NAME}: without the leading "_"
	// or "__"), parsed exactly as Asterisk does (see originateVars).
	Variables map[string]string
	// VariableNames: for each of Variables set with leading "_" or "__",
	// the name it was set with (the inheritance dialed channels see).
	VariableNames map[string]string
	// Functions are the Variable items whose name ends in ")": Asterisk
	// writes them through a dialplan function, in this order.
	Functions []FunctionWrite
	Headers   map[string]string // all headers as received (repeated ones joined with ",")
	At        time.Time
	// Trunk is the carrier the Originate went to ("" for none; TrunkAny's
	// calls name their endpoint).
	Trunk string
	// Outcome is what the simulator did: the matched rule's outcome,
	// "failed" for an unknown channel technology, "refuse" for an action
	// answered with an error (no channel, bad timeout...).
	Outcome Outcome
}

// Stats are the simulator's counters.
type Stats struct {
	Sessions        int   // sessions connected now
	Connections     int64 // connections accepted since New
	Logins          int64 // successful logins
	FailedLogins    int64
	Originates      int64 // Originate actions received (after login)
	CallsStarted    int64 // calls that created channels
	InFlight        int   // calls with live channels now
	EventsSent      int64 // event messages queued to sessions
	SessionsDropped int64 // sessions dropped for a slow reader (queue bound or write timeout)
	// ParseErrors are messages answered "Failed to parse message: line
	// too long" (a line over 1,024 bytes with its line end).
	ParseErrors int64
}

// Server is a running AMI simulator.
type Server struct {
	cfg     Config
	filter  *eventFilter // nil: every event
	ln      net.Listener
	started time.Time

	rules    atomic.Pointer[[]Rule]
	carriers carriers

	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup // accept loop, session readers and writers
	timerWG   sync.WaitGroup // pending and running call timers

	sessMu   sync.Mutex
	sessions map[*session]struct{}
	// listeners is the copy-on-write snapshot of logged-in sessions that
	// receive events.
	listeners atomic.Pointer[[]*session]

	callsMu sync.Mutex
	calls   map[string]*call // by base channel name

	recMu   sync.Mutex
	records []OriginateRecord
	recN    int
	waiters []waiter

	chanSeq atomic.Uint32 // channel name sequence (8 hex digits)
	uidSeq  atomic.Int64  // uniqueid sequence

	rngMu sync.Mutex
	rng   *rand.Rand

	sessSeq atomic.Uint64

	nConnections, nLogins, nFailedLogins atomic.Int64
	nOriginates, nCallsStarted           atomic.Int64
	nEvents, nDropped                    atomic.Int64
	nParseErrors                         atomic.Int64
}

type waiter struct {
	n  int
	ch chan struct{}
}

// New validates cfg, starts listening and serving at once.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username = "dialbridge"
	}
	if cfg.Secret == "" {
		cfg.Secret = "secret"
	}
	if cfg.AuthDelay == 0 {
		cfg.AuthDelay = time.Second
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 100000
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 100 * time.Millisecond
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = 30 * time.Second
	}
	if err := ValidateRules(cfg.Rules); err != nil {
		return nil, fmt.Errorf("amisim: %w", err)
	}
	for trunk, c := range cfg.Carriers {
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("amisim: carrier %s: %w", trunk, err)
		}
	}
	filter, err := newEventFilter(cfg.EventFilters)
	if err != nil {
		return nil, fmt.Errorf("amisim: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("amisim: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		filter:   filter,
		ln:       ln,
		started:  time.Now(),
		sessions: make(map[*session]struct{}),
		calls:    make(map[string]*call),
	}
	rules := append([]Rule(nil), cfg.Rules...)
	s.rules.Store(&rules)
	for trunk, c := range cfg.Carriers {
		if err := s.SetCarrier(trunk, c); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if cfg.ShuffleSeed != 0 {
		s.rng = rand.New(rand.NewPCG(uint64(cfg.ShuffleSeed), 0x9e3779b97f4a7c15))
	}
	empty := []*session{}
	s.listeners.Store(&empty)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// Addr returns the listening address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the listening host.
func (s *Server) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port returns the listening port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// SetRules replaces the rule table; originates received afterwards use it.
// Invalid rules are logged and skipped.
func (s *Server) SetRules(rules []Rule) {
	valid := make([]Rule, 0, len(rules))
	for i, r := range rules {
		if err := r.validate(); err != nil {
			s.logf("amisim: SetRules: rule %d (%s) ignored: %v", i+1, r, err)
			continue
		}
		valid = append(valid, r)
	}
	s.rules.Store(&valid)
}

// Rules returns the current rule table.
func (s *Server) Rules() []Rule {
	return append([]Rule(nil), (*s.rules.Load())...)
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (e.g. too many open files): back off a little.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.logf("amisim: accept: %v", err)
			t := time.NewTimer(backoff)
			<-t.C
			continue
		}
		backoff = 0
		s.nConnections.Add(1)
		s.startSession(conn)
	}
}

func (s *Server) startSession(conn net.Conn) {
	ss := newSession(s, conn)
	s.sessMu.Lock()
	if s.closed.Load() {
		s.sessMu.Unlock()
		conn.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(2)
	s.sessMu.Unlock()
	go ss.writer()
	go ss.reader()
}

// addListener makes a logged-in session receive events.
func (s *Server) addListener(ss *session) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return // already gone
	}
	old := *s.listeners.Load()
	for _, x := range old {
		if x == ss {
			return
		}
	}
	nl := make([]*session, len(old), len(old)+1)
	copy(nl, old)
	nl = append(nl, ss)
	s.listeners.Store(&nl)
}

func (s *Server) removeSession(ss *session) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	delete(s.sessions, ss)
	old := *s.listeners.Load()
	for i, x := range old {
		if x == ss {
			nl := make([]*session, 0, len(old)-1)
			nl = append(nl, old[:i]...)
			nl = append(nl, old[i+1:]...)
			s.listeners.Store(&nl)
			break
		}
	}
}

// broadcast queues n pre-rendered event messages of class flag to every
// logged-in session whose event mask covers it (manager_event).
func (s *Server) broadcast(b []byte, n int, flag int64) {
	if s.filter != nil {
		b, n = s.filter.apply(b)
	}
	if len(b) == 0 {
		return
	}
	for _, ss := range *s.listeners.Load() {
		if ss.wants(flag) && ss.enqueueEvent(b, n) {
			s.nEvents.Add(int64(n))
		}
	}
}

// DropConnections closes every current session at once (as if Asterisk
// restarted its manager); calls in progress continue and the listener stays
// open, so clients can reconnect.
func (s *Server) DropConnections() {
	s.sessMu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	s.sessMu.Unlock()
	for _, ss := range list {
		ss.kill("dropped by DropConnections")
	}
}

// Close stops listening, closes every session, stops every call timer and
// waits for all the simulator's goroutines to end.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err = s.ln.Close()
		s.DropConnections()
		// Stop the calls: no timer is scheduled once closed is set (checked
		// under each call's lock), so stopping the pending ones is enough.
		s.callsMu.Lock()
		calls := make([]*call, 0, len(s.calls))
		for _, c := range s.calls {
			calls = append(calls, c)
		}
		s.calls = map[string]*call{}
		s.callsMu.Unlock()
		for _, c := range calls {
			c.stop()
		}
		s.wg.Wait()
		s.timerWG.Wait()
		s.recMu.Lock()
		for _, w := range s.waiters {
			close(w.ch)
		}
		s.waiters = nil
		s.recMu.Unlock()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// after runs f after d on a timer goroutine, unless the server closes
// first. Callers must hold the owning call's lock and store the timer so
// that stop can cancel it.
func (s *Server) after(d time.Duration, f func()) *time.Timer {
	s.timerWG.Add(1)
	return time.AfterFunc(d, func() {
		defer s.timerWG.Done()
		if !s.closed.Load() {
			f()
		}
	})
}

// stopTimer cancels a timer made by after; it reports whether it did.
func (s *Server) stopTimer(t *time.Timer) bool {
	if t != nil && t.Stop() {
		s.timerWG.Done()
		return true
	}
	return false
}

func (s *Server) shuffle(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

// record stores one originate and wakes WaitOriginates callers.
func (s *Server) record(r OriginateRecord) {
	s.nOriginates.Add(1)
	s.recMu.Lock()
	s.recN++
	switch max := s.cfg.MaxRecords; {
	case max == 0:
		s.records = append(s.records, r)
	case max > 0:
		// Amortised trimming: keep up to 2×max, cut back to max.
		if len(s.records) >= 2*max {
			n := copy(s.records, s.records[len(s.records)-max+1:])
			clear(s.records[n:])
			s.records = s.records[:n]
		}
		s.records = append(s.records, r)
	}
	if len(s.waiters) > 0 {
		kept := s.waiters[:0]
		for _, w := range s.waiters {
			if s.recN >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		s.waiters = kept
	}
	s.recMu.Unlock()
}

// Originates returns the Originate actions received so far, in order.
func (s *Server) Originates() []OriginateRecord {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	recs := s.records
	if max := s.cfg.MaxRecords; max > 0 && len(recs) > max {
		recs = recs[len(recs)-max:]
	}
	return append([]OriginateRecord(nil), recs...)
}

// OriginateCount returns how many Originate actions were received.
func (s *Server) OriginateCount() int {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return s.recN
}

// WaitOriginates blocks until at least n Originate actions were received,
// ctx ends (its error) or the server closes (ErrServerClosed).
func (s *Server) WaitOriginates(ctx context.Context, n int) error {
	s.recMu.Lock()
	if s.recN >= n {
		s.recMu.Unlock()
		return nil
	}
	if s.closed.Load() {
		s.recMu.Unlock()
		return ErrServerClosed
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, waiter{n: n, ch: ch})
	s.recMu.Unlock()
	select {
	case <-ch:
		s.recMu.Lock()
		reached := s.recN >= n
		s.recMu.Unlock()
		if reached {
			return nil
		}
		return ErrServerClosed
	case <-ctx.Done():
		s.recMu.Lock()
		for i, w := range s.waiters {
			if w.ch == ch {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				break
			}
		}
		s.recMu.Unlock()
		return ctx.Err()
	}
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	s.sessMu.Lock()
	nsess := len(s.sessions)
	s.sessMu.Unlock()
	s.callsMu.Lock()
	inflight := len(s.calls)
	s.callsMu.Unlock()
	return Stats{
		Sessions:        nsess,
		Connections:     s.nConnections.Load(),
		Logins:          s.nLogins.Load(),
		FailedLogins:    s.nFailedLogins.Load(),
		Originates:      s.nOriginates.Load(),
		CallsStarted:    s.nCallsStarted.Load(),
		InFlight:        inflight,
		EventsSent:      s.nEvents.Load(),
		SessionsDropped: s.nDropped.Load(),
		ParseErrors:     s.nParseErrors.Load(),
	}
}

// registerCall adds a call with channels; false once the server is closed.
func (s *Server) registerCall(c *call) bool {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.calls[c.base] = c
	return true
}

func (s *Server) unregisterCall(c *call) {
	s.callsMu.Lock()
	if s.calls[c.base] == c {
		delete(s.calls, c.base)
	}
	s.callsMu.Unlock()
}

// liveCalls returns the calls with channels, oldest first.
func (s *Server) liveCalls() []*call {
	s.callsMu.Lock()
	list := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		list = append(list, c)
	}
	s.callsMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	return list
}

// findChannel finds a live leg by channel name or uniqueid
// (ast_channel_get_by_name).
func (s *Server) findChannel(name string) (*call, int) {
	base, legNo := name, -1
	switch {
	case len(name) > 2 && name[len(name)-2:] == ";1":
		base, legNo = name[:len(name)-2], 0
	case len(name) > 2 && name[len(name)-2:] == ";2":
		base, legNo = name[:len(name)-2], 1
	}
	if legNo >= 0 {
		s.callsMu.Lock()
		c := s.calls[base]
		s.callsMu.Unlock()
		if c != nil {
			return c, legNo
		}
	}
	for _, c := range s.liveCalls() {
		for i := range c.legs {
			if c.legs[i].uniqueid == name || c.legs[i].name == name {
				return c, i
			}
		}
	}
	return nil, -1
}

// denied reports whether Config.Denied names the action (lower case).
func (s *Server) denied(action string) bool {
	for _, d := range s.cfg.Denied {
		if strings.EqualFold(d, action) {
			return true
		}
	}
	return false
}
