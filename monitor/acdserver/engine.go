package acdserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// Store persists the floor (redisq.ACDStore is the Redis one). Each method
// is one atomic write. acks are inbox events (as taken from the inbox) whose
// effect the write includes: the store forgets them in the same step.
type Store interface {
	// Save writes the changes of one event and logs its messages.
	Save(ctx context.Context, ch acd.Changes, msgs []acd.Message, at time.Time, acks []string) error
	// SaveAll replaces the saved floor with snap (after a failed Save, or
	// at start) and logs msgs.
	SaveAll(ctx context.Context, snap acd.Snapshot, msgs []acd.Message, at time.Time, acks []string) error
}

// Inbox is where the bridge's events arrive (redisq.ACDStore is the Redis
// one): JSON lines {"command": "call"|"hangup", "id": "<call id>"}.
type Inbox interface {
	// Pending returns events taken earlier but never acknowledged (the
	// previous run stopped in between), oldest first.
	Pending(ctx context.Context) ([]string, error)
	// Take waits up to wait for the next event; ok is false when none came.
	Take(ctx context.Context, wait time.Duration) (event string, ok bool, err error)
}

// Options of an Engine.
type Options struct {
	// Store persists every change; nil keeps the floor in memory only.
	Store Store
	// Logf receives notes for the operator of the service (Redis errors,
	// refused inbox events). Nil discards them.
	Logf func(format string, args ...any)
	// Now is the clock (tests); nil is time.Now. Ring timers run on real
	// time.
	Now func() time.Time
	// SaveTimeout bounds one write to the store (default 5s).
	SaveTimeout time.Duration
}

// Engine owns an acd.Machine: it serializes commands, runs the ring
// timer on the real clock, persists changes and hands the messages no
// command caused (ring timeouts, inbox events) to every subscriber.
type Engine struct {
	mu      sync.Mutex
	m       *acd.Machine
	opt     Options
	subs    map[int]func(lines []string)
	nextSub int
	wake    chan struct{}
	dirty   bool     // the last save failed: the next one writes everything
	acks    []string // inbox events applied but not yet saved
}

// NewEngine wraps m. Call Run for ring timeouts.
func NewEngine(m *acd.Machine, opt Options) *Engine {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	if opt.SaveTimeout <= 0 {
		opt.SaveTimeout = 5 * time.Second
	}
	return &Engine{m: m, opt: opt, subs: map[int]func([]string){}, wake: make(chan struct{}, 1)}
}

// Do runs one command. reply gets the lines to print (or the error) while
// the engine is still locked, so that replies and broadcasts reach each
// client in the engine's order; it must not block for long nor call back
// into the engine.
func (e *Engine) Do(cmd acd.Command, reply func(lines []string, err error)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cmd.Verb == acd.Status {
		lines, err := e.m.Status(cmd.ID)
		reply(lines, err)
		return
	}
	now := e.opt.Now()
	msgs, err := e.m.Do(cmd, now)
	if err != nil {
		reply(nil, err)
		return
	}
	e.persist(e.m.Changes(), msgs, now, "", false)
	reply(msgLines(msgs), nil)
	e.poke()
}

// Subscribe registers fn for the messages no command caused. fn runs with
// the engine locked: it must not block for long nor call the engine.
func (e *Engine) Subscribe(fn func(lines []string)) (cancel func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = fn
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.subs, id)
	}
}

// Snapshot is the whole floor.
func (e *Engine) Snapshot() acd.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m.Snapshot()
}

func (e *Engine) broadcast(lines []string) {
	if len(lines) == 0 {
		return
	}
	for _, fn := range e.subs {
		fn(lines)
	}
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// persist saves the latest event's changes (under e.mu). A failed save
// leaves the engine dirty: commands then go on without waiting for the
// store, and the Run loop writes the whole floor (retry) every second until
// the store answers; log entries of that period are lost.
func (e *Engine) persist(ch acd.Changes, msgs []acd.Message, now time.Time, ack string, retry bool) {
	if e.opt.Store == nil {
		return
	}
	if ack != "" {
		e.acks = append(e.acks, ack)
	}
	if e.dirty && !retry {
		return
	}
	if !e.dirty && ch.Empty() && len(msgs) == 0 && len(e.acks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opt.SaveTimeout)
	defer cancel()
	var err error
	if e.dirty {
		err = e.opt.Store.SaveAll(ctx, e.m.Snapshot(), msgs, now, e.acks)
	} else {
		err = e.opt.Store.Save(ctx, ch, msgs, now, e.acks)
	}
	if err != nil {
		if !e.dirty {
			e.opt.Logf("acd: saving the floor failed (%v): the whole floor will be written once the store answers", err)
		}
		e.dirty = true
		return
	}
	if e.dirty {
		e.opt.Logf("acd: the floor is saved again")
	}
	e.dirty = false
	e.acks = e.acks[:0]
}

// Run drives ring timeouts on the real clock, and retries a failed save
// every second, until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		e.mu.Lock()
		dl, ok := e.m.NextDeadline()
		dirty := e.dirty
		e.mu.Unlock()
		wait := time.Duration(-1)
		if ok {
			wait = max(dl.Sub(e.opt.Now()), 0)
		}
		if dirty && (wait < 0 || wait > time.Second) {
			wait = time.Second
		}
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
			t.Stop()
		case <-t.C:
			e.tick()
		}
	}
}

// tick fires due ring timeouts.
func (e *Engine) tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opt.Now()
	msgs := e.m.Tick(now)
	e.persist(e.m.Changes(), msgs, now, "", true)
	e.broadcast(msgLines(msgs))
}

// Inject applies one inbox event (a JSON line from the bridge): its
// messages go to every subscriber, an error to Logf. Only "call" and
// "hangup" are accepted. ack is handed to the store with the event's
// changes ("" for none).
func (e *Engine) Inject(event string, ack string) {
	cmd, err := DecodeRequest([]byte(event))
	if err == nil && cmd.Verb != acd.Call && cmd.Verb != acd.Hangup {
		err = fmt.Errorf("only call and hangup come from the inbox, not %s", cmd.Verb)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opt.Now()
	var msgs []acd.Message
	var ch acd.Changes // a refused event changed nothing
	if err == nil {
		msgs, err = e.m.Do(cmd, now)
	}
	if err != nil {
		e.opt.Logf("acd: inbox event %s refused: %v", event, err)
		msgs = nil
	} else {
		ch = e.m.Changes()
	}
	e.persist(ch, msgs, now, ack, false)
	e.broadcast(msgLines(msgs))
	e.poke()
}

// RunInbox applies the inbox's events until ctx ends: first those a
// previous run took but never acknowledged, then new ones as they come.
func (e *Engine) RunInbox(ctx context.Context, in Inbox) error {
	for {
		pending, err := in.Pending(ctx)
		if err == nil {
			for _, ev := range pending {
				e.Inject(ev, ev)
			}
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		e.opt.Logf("acd: reading the inbox: %v", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
	failing := false
	for ctx.Err() == nil {
		ev, ok, err := in.Take(ctx, time.Second)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			if !failing {
				e.opt.Logf("acd: reading the inbox: %v (retrying every second)", err)
			}
			failing = true
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		failing = false
		if ok {
			e.Inject(ev, ev)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func msgLines(msgs []acd.Message) []string {
	if len(msgs) == 0 {
		return nil
	}
	lines := make([]string, len(msgs))
	for i, m := range msgs {
		lines[i] = m.String()
	}
	return lines
}
