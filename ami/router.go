package ami

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

// shardCount spreads watches over independent locks: the event goroutine and
// thousands of Originate callers must not queue behind one mutex.
const shardCount = 32

// leg2Suffix is what Asterisk appends to our ChannelId for the other half of
// a Local channel when no OtherChannelId is given.
const leg2Suffix = ";2"

// errDuplicateID means a watch is already registered under the same ActionID
// or ChannelID: routing both would hand one call's events to another.
var errDuplicateID = errors.New("duplicate id")

type shard struct {
	mu        sync.Mutex
	byAction  map[string]*watch
	byChannel map[string]*watch
	_         [40]byte // keeps neighbouring shards' locks off one cache line
}

// router hands events read on the event session to the watch of the call
// they belong to. Events for ids it does not know are dropped after one map
// lookup: other daemons share the Asterisk and its events reach us too.
type router struct {
	seed    maphash.Seed
	shards  [shardCount]shard
	watches atomic.Int64
}

func newRouter() *router {
	r := &router{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].byAction = make(map[string]*watch)
		r.shards[i].byChannel = make(map[string]*watch)
	}
	return r
}

func (r *router) shard(key string) *shard {
	return &r.shards[maphash.String(r.seed, key)%shardCount]
}

// register routes events for w's ActionID and ChannelID to w.
func (r *router) register(w *watch) error {
	sa := r.shard(w.actionID)
	sa.mu.Lock()
	if _, dup := sa.byAction[w.actionID]; dup {
		sa.mu.Unlock()
		return fmt.Errorf("%w: ActionID %q is already in flight", errDuplicateID, w.actionID)
	}
	sa.byAction[w.actionID] = w
	sa.mu.Unlock()

	if w.channelID != "" {
		sc := r.shard(w.channelID)
		sc.mu.Lock()
		if _, dup := sc.byChannel[w.channelID]; dup {
			sc.mu.Unlock()
			sa.mu.Lock()
			delete(sa.byAction, w.actionID)
			sa.mu.Unlock()
			return fmt.Errorf("%w: ChannelID %q is already in flight", errDuplicateID, w.channelID)
		}
		sc.byChannel[w.channelID] = w
		sc.mu.Unlock()
	}
	r.watches.Add(1)
	return nil
}

func (r *router) unregister(w *watch) {
	sa := r.shard(w.actionID)
	sa.mu.Lock()
	if sa.byAction[w.actionID] == w {
		delete(sa.byAction, w.actionID)
	}
	sa.mu.Unlock()
	if w.channelID != "" {
		sc := r.shard(w.channelID)
		sc.mu.Lock()
		if sc.byChannel[w.channelID] == w {
			delete(sc.byChannel, w.channelID)
		}
		sc.mu.Unlock()
	}
	r.watches.Add(-1)
}

func (r *router) byAction(id string) *watch {
	if id == "" {
		return nil
	}
	s := r.shard(id)
	s.mu.Lock()
	w := s.byAction[id]
	s.mu.Unlock()
	return w
}

// byUniqueid finds the watch of a channel event and which leg it is.
func (r *router) byUniqueid(uid string) (*watch, int) {
	if uid == "" {
		return nil, 0
	}
	key, leg := uid, 1
	if base, ok := strings.CutSuffix(uid, leg2Suffix); ok {
		key, leg = base, 2
	}
	s := r.shard(key)
	s.mu.Lock()
	w := s.byChannel[key]
	s.mu.Unlock()
	return w, leg
}

// all returns every registered watch (each once: every watch has an ActionID).
func (r *router) all() []*watch {
	var ws []*watch
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for _, w := range s.byAction {
			ws = append(ws, w)
		}
		s.mu.Unlock()
	}
	return ws
}

// lost tells every call in progress that events may have been missed.
func (r *router) lost(at time.Time) {
	for _, w := range r.all() {
		w.deliverLost(at)
	}
}

// restored tells the calls that were told Lost that events flow again.
func (r *router) restored(at time.Time) {
	for _, w := range r.all() {
		w.deliverRestored(at)
	}
}

// The handlers below run on amigo's single event goroutine, which also
// carries action responses and keepalive pongs: they must only look up and
// append, never block.

func (r *router) onOriginateResponse(e map[string]string) {
	w := r.byAction(e["ActionID"])
	if w == nil {
		return
	}
	w.deliver(bridge.Event{
		Kind:     bridge.EventOriginateResponse,
		At:       readAt(e),
		Response: e["Response"],
		Reason:   atoi(e["Reason"]),
		Channel:  e["Channel"],
		Uniqueid: e["Uniqueid"],
	})
}

func (r *router) onNewchannel(e map[string]string) {
	r.channelEvent(e, bridge.EventNewchannel)
}

func (r *router) onNewstate(e map[string]string) {
	// Up (6) and Ringing (5, the carrier reached a phone: the trunk
	// breaker tells a dead trunk from a live one by it) matter to the
	// bridge; busy and the rest come through OriginateResponse and Hangup.
	switch e["ChannelState"] {
	case "6":
		r.channelEvent(e, bridge.EventUp)
	case "5":
		r.channelEvent(e, bridge.EventRinging)
	}
}

func (r *router) onHangup(e map[string]string) {
	r.channelEvent(e, bridge.EventHangup)
}

func (r *router) channelEvent(e map[string]string, kind bridge.EventKind) {
	uid := e["Uniqueid"]
	w, leg := r.byUniqueid(uid)
	if w == nil {
		return
	}
	ev := bridge.Event{
		Kind:     kind,
		At:       readAt(e),
		Channel:  e["Channel"],
		Uniqueid: uid,
		Leg:      leg,
	}
	if kind == bridge.EventHangup {
		ev.Cause = atoi(e["Cause"])
		ev.CauseText = e["Cause-txt"]
	}
	w.deliver(ev)
}

// RoutedEvents are the only events dialbridge reads; every other event
// Asterisk sends is parsed by amigo and dropped.
var RoutedEvents = []string{"OriginateResponse", "Newchannel", "Newstate", "Hangup"}

// EventFilter is the manager.conf eventfilter (legacy, regular expression
// form: any Asterisk since 1.8) that keeps every other event off dialbridge's
// socket. An answered call is 21 events on the wire without it, 7 with it.
// "[[:space:]]" ends the name, so that "Hangup" does not let HangupRequest
// through.
const EventFilter = `Event: (OriginateResponse|Newchannel|Newstate|Hangup)[[:space:]]`

// EventFilterNames are the same filter in the advanced form of Asterisk 21
// and later (matched on the event's name, no regular expression), one
// manager.conf line each: eventfilter(name(Hangup)) =
func EventFilterNames() []string {
	lines := make([]string, len(RoutedEvents))
	for i, name := range RoutedEvents {
		lines[i] = "eventfilter(name(" + name + "))"
	}
	return lines
}

// handlers maps each of RoutedEvents to its handler.
func (r *router) handlers() map[string]func(map[string]string) {
	return map[string]func(map[string]string){
		"OriginateResponse": r.onOriginateResponse,
		"Newchannel":        r.onNewchannel,
		"Newstate":          r.onNewstate,
		"Hangup":            r.onHangup,
	}
}

// readAt is when amigo read the message off the socket (it stamps every
// message); events can wait in amigo's queue a little before dispatch.
func readAt(e map[string]string) time.Time {
	if s := e["TimeReceived"]; s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return time.Now()
}

func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return n
}

// watch is the mailbox of one originated call. Delivery appends under a
// short lock and signals a 1-slot channel, so it never waits for the reader.
type watch struct {
	r         *router
	actionID  string
	channelID string
	sig       chan struct{}

	mu       sync.Mutex
	events   []bridge.Event
	onEvents func() // set by Notify: called once when events arrive
	notifyN  uint64 // counts Notify calls, so a stale stop leaves a newer f alone
	lost     bool   // told Lost and not yet Restored
	closed   bool
}

var _ bridge.Watch = (*watch)(nil)

func newWatch(r *router, actionID, channelID string) *watch {
	return &watch{r: r, actionID: actionID, channelID: channelID, sig: make(chan struct{}, 1)}
}

func (w *watch) C() <-chan struct{} { return w.sig }

func (w *watch) Drain() []bridge.Event {
	w.mu.Lock()
	ev := w.events
	w.events = nil
	w.mu.Unlock()
	return ev
}

func (w *watch) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.events = nil
	w.onEvents = nil
	w.mu.Unlock()
	w.r.unregister(w)
}

func (w *watch) deliver(ev bridge.Event) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.events = append(w.events, ev)
	w.mu.Unlock()
	w.signal()
}

func (w *watch) deliverLost(at time.Time) {
	w.mu.Lock()
	if w.closed || w.lost {
		w.mu.Unlock()
		return
	}
	w.lost = true
	w.events = append(w.events, bridge.Event{Kind: bridge.EventLost, At: at})
	w.mu.Unlock()
	w.signal()
}

func (w *watch) deliverRestored(at time.Time) {
	w.mu.Lock()
	if w.closed || !w.lost {
		w.mu.Unlock()
		return
	}
	w.lost = false
	w.events = append(w.events, bridge.Event{Kind: bridge.EventRestored, At: at})
	w.mu.Unlock()
	w.signal()
}

func (w *watch) signal() {
	select {
	case w.sig <- struct{}{}:
	default:
	}
	w.mu.Lock()
	f := w.onEvents
	w.onEvents = nil
	w.mu.Unlock()
	if f != nil {
		f() // it does not block (Notify's contract)
	}
}

func (w *watch) Notify(f func()) (stop func()) {
	w.mu.Lock()
	w.notifyN++
	if len(w.events) > 0 {
		w.onEvents = nil
		w.mu.Unlock()
		go f() // not on the caller's goroutine: it may hold a lock f takes
		return func() {}
	}
	n := w.notifyN
	w.onEvents = f
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		if w.notifyN == n {
			w.onEvents = nil
		}
		w.mu.Unlock()
	}
}
