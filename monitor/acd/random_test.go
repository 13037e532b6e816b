package acd

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"
)

// model is a deliberately naive implementation of the rules (slices and
// linear scans), against which the machine is compared event by event.
type model struct {
	rt    time.Duration
	ops   []*mop
	calls map[string]*mcall
	queue []string
	seq   uint64
}

type mop struct {
	id      string
	tier    Tier
	idx     int
	state   OperatorState
	call    string
	pending bool
}

type mcall struct {
	state    CallState
	op       *mop
	deadline time.Time
	seq      uint64
}

func newModel(ops []Operator, rt time.Duration) *model {
	md := &model{rt: rt, calls: map[string]*mcall{}}
	for i, o := range ops {
		md.ops = append(md.ops, &mop{id: o.ID, tier: o.Tier, idx: i, state: Available})
	}
	return md
}

func (md *model) op(id string) *mop {
	for _, o := range md.ops {
		if o.id == id {
			return o
		}
	}
	return nil
}

func (md *model) pick() *mop {
	var best *mop
	for _, o := range md.ops {
		if o.state == Available && (best == nil || o.tier < best.tier || (o.tier == best.tier && o.idx < best.idx)) {
			best = o
		}
	}
	return best
}

func (md *model) deliver(id string, o *mop, now time.Time) []Message {
	md.seq++
	c := md.calls[id]
	c.state, c.op, c.deadline, c.seq = CallRinging, o, now.Add(md.rt), md.seq
	o.state, o.call = Ringing, id
	return []Message{{Kind: MsgRinging, Call: id, Operator: o.id}}
}

func (md *model) makeAvail(o *mop, now time.Time) []Message {
	o.call = ""
	if len(md.queue) > 0 {
		id := md.queue[0]
		md.queue = md.queue[1:]
		return md.deliver(id, o, now)
	}
	o.state = Available
	return nil
}

func (md *model) redeliver(o *mop, now time.Time) []Message {
	id := o.call
	if other := md.pick(); other != nil {
		msgs := md.deliver(id, other, now)
		return append(msgs, md.makeAvail(o, now)...)
	}
	return md.deliver(id, o, now)
}

func (md *model) release(o *mop, now time.Time) []Message {
	o.call = ""
	if o.pending {
		o.pending, o.state = false, LoggedOut
		return []Message{{Kind: MsgLoggedOut, Operator: o.id}}
	}
	return md.makeAvail(o, now)
}

var errModel = fmt.Errorf("model: makes no sense")

func (md *model) do(c Command, now time.Time) ([]Message, error) {
	switch c.Verb {
	case Call:
		if md.calls[c.ID] != nil {
			return nil, errModel
		}
		md.calls[c.ID] = &mcall{}
		msgs := []Message{{Kind: MsgReceived, Call: c.ID}}
		if o := md.pick(); o != nil {
			return append(msgs, md.deliver(c.ID, o, now)...), nil
		}
		md.calls[c.ID].state = Waiting
		md.queue = append(md.queue, c.ID)
		return append(msgs, Message{Kind: MsgWaiting, Call: c.ID}), nil
	case Answer, Reject:
		o := md.op(c.ID)
		if o == nil || o.state != Ringing {
			return nil, errModel
		}
		if c.Verb == Answer {
			md.calls[o.call].state = Answered
			o.state = Busy
			return []Message{{Kind: MsgAnswered, Call: o.call, Operator: o.id}}, nil
		}
		msgs := []Message{{Kind: MsgRejected, Call: o.call, Operator: o.id}}
		return append(msgs, md.redeliver(o, now)...), nil
	case Hangup:
		call := md.calls[c.ID]
		if call == nil {
			return nil, errModel
		}
		delete(md.calls, c.ID)
		switch call.state {
		case Waiting:
			md.queue = slices.DeleteFunc(md.queue, func(s string) bool { return s == c.ID })
			return []Message{{Kind: MsgMissed, Call: c.ID}}, nil
		case CallRinging:
			msgs := []Message{{Kind: MsgMissed, Call: c.ID}}
			return append(msgs, md.release(call.op, now)...), nil
		default:
			msgs := []Message{{Kind: MsgFinished, Call: c.ID, Operator: call.op.id}}
			return append(msgs, md.release(call.op, now)...), nil
		}
	case Login:
		o := md.op(c.ID)
		switch {
		case o == nil:
			return nil, errModel
		case o.state == LoggedOut:
			msgs := []Message{{Kind: MsgLoggedIn, Operator: o.id}}
			return append(msgs, md.makeAvail(o, now)...), nil
		case o.state == Busy && o.pending:
			o.pending = false
			return []Message{{Kind: MsgLoggedIn, Operator: o.id}}, nil
		}
		return nil, errModel
	case Logout:
		o := md.op(c.ID)
		if o == nil || o.state == LoggedOut || (o.state == Busy && o.pending) {
			return nil, errModel
		}
		switch o.state {
		case Busy:
			o.pending = true
			return []Message{{Kind: MsgLogoutPending, Operator: o.id, Call: o.call}}, nil
		case Available:
			o.state = LoggedOut
			return []Message{{Kind: MsgLoggedOut, Operator: o.id}}, nil
		}
		id := o.call
		o.state, o.call = LoggedOut, ""
		msgs := []Message{{Kind: MsgLoggedOut, Operator: o.id}}
		if other := md.pick(); other != nil {
			return append(msgs, md.deliver(id, other, now)...), nil
		}
		md.calls[id].state = Waiting
		md.queue = append([]string{id}, md.queue...)
		return append(msgs, Message{Kind: MsgWaiting, Call: id}), nil
	}
	return nil, errModel
}

func (md *model) tick(now time.Time) []Message {
	var msgs []Message
	for {
		var due *mcall
		var dueID string
		for id, c := range md.calls {
			if c.state == CallRinging && !c.deadline.After(now) &&
				(due == nil || c.deadline.Before(due.deadline) || (c.deadline.Equal(due.deadline) && c.seq < due.seq)) {
				due, dueID = c, id
			}
		}
		if due == nil {
			return msgs
		}
		msgs = append(msgs, Message{Kind: MsgIgnored, Call: dueID, Operator: due.op.id})
		msgs = append(msgs, md.redeliver(due.op, now)...)
	}
}

// ledger checks from the messages alone that every call received ends
// exactly once.
type ledger map[string]bool

func (l ledger) see(t *testing.T, msgs []Message) {
	t.Helper()
	for _, m := range msgs {
		switch m.Kind {
		case MsgReceived:
			if l[m.Call] {
				t.Fatalf("call %s received twice without ending", m.Call)
			}
			l[m.Call] = true
		case MsgMissed, MsgFinished:
			if !l[m.Call] {
				t.Fatalf("call %s ended but was not in progress", m.Call)
			}
			delete(l, m.Call)
		case MsgRinging, MsgAnswered, MsgRejected, MsgIgnored, MsgWaiting:
			if !l[m.Call] {
				t.Fatalf("%q about a call not in progress", m)
			}
		}
	}
}

func TestRandomSequences(t *testing.T) {
	sequences, steps := 4000, 150
	if testing.Short() {
		sequences = 500
	}
	const rt = 10 * time.Second
	for seed := uint64(1); seed <= uint64(sequences); seed++ {
		r := rand.New(rand.NewPCG(seed, 42))
		var cfg []Operator
		for i := range 1 + r.IntN(5) {
			cfg = append(cfg, Operator{ID: "O" + strconv.Itoa(i), Tier: Tier(r.IntN(3))})
		}
		m, err := New(cfg, rt)
		if err != nil {
			t.Fatal(err)
		}
		md := newModel(cfg, rt)
		seen := ledger{}
		now := t0
		nIDs := 4 + r.IntN(12)
		var history []string
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d after %v: %s", seed, history, fmt.Sprintf(format, args...))
		}
		for range steps {
			now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
			var cmd Command
			opID := "O" + strconv.Itoa(r.IntN(len(cfg)+1)) // sometimes unknown
			callID := strconv.Itoa(r.IntN(nIDs))
			switch p := r.IntN(100); {
			case p < 30:
				cmd = Command{Call, callID}
			case p < 45:
				cmd = Command{Answer, opID}
			case p < 53:
				cmd = Command{Reject, opID}
			case p < 75:
				cmd = Command{Hangup, callID}
			case p < 80:
				cmd = Command{Login, opID}
			case p < 85:
				cmd = Command{Logout, opID}
			case p < 99:
				now = now.Add(time.Duration(r.IntN(25000)) * time.Millisecond)
				history = append(history, "tick "+now.Sub(t0).String())
				got, want := m.Tick(now), md.tick(now)
				if !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
					fail("tick: got %v want %v", got, want)
				}
				seen.see(t, got)
				checkInvariants(t, m)
				checkQueue(t, m, md)
				continue
			default:
				// Save and restore in the middle of the sequence.
				r2, msgs, err := Restore(cfg, rt, m.Snapshot(), now)
				if err != nil || len(msgs) > 0 {
					fail("restore: %v %v", err, msgs)
				}
				m = r2
				history = append(history, "restore")
				continue
			}
			history = append(history, cmd.String())
			var before Snapshot
			if r.IntN(4) == 0 {
				before = m.Snapshot()
			}
			got, err := m.Do(cmd, now)
			want, werr := md.do(cmd, now)
			if (err == nil) != (werr == nil) {
				fail("%v: error %v, model error %v", cmd, err, werr)
			}
			if err != nil {
				if before.Operators != nil && !reflect.DeepEqual(before, m.Snapshot()) {
					fail("%v failed (%v) but changed the state", cmd, err)
				}
				continue
			}
			if !reflect.DeepEqual(got, want) {
				fail("%v: got %v want %v", cmd, got, want)
			}
			seen.see(t, got)
			checkInvariants(t, m)
			checkQueue(t, m, md)
		}
		// Hang up everything: every call ends exactly once.
		var left []string
		for id := range md.calls {
			left = append(left, id)
		}
		sort.Strings(left)
		for _, id := range left {
			got, err := m.Hangup(id, now)
			want, _ := md.do(Command{Hangup, id}, now)
			if err != nil || !reflect.DeepEqual(got, want) {
				fail("final hangup %s: %v %v want %v", id, got, err, want)
			}
			seen.see(t, got)
		}
		if len(seen) != 0 || m.InProgress() != 0 || m.Waiting() != 0 {
			fail("calls left: ledger %v, machine %d", seen, m.InProgress())
		}
		checkInvariants(t, m)
	}
}

// checkQueue: the machine's queue is the model's, in order (FIFO, with
// calls that went back to the head in front).
func checkQueue(t *testing.T, m *Machine, md *model) {
	t.Helper()
	var q []string
	for c := m.queue.front(); c != nil && c != &m.queue.root; c = c.next {
		q = append(q, c.id)
	}
	if !slices.Equal(q, md.queue) {
		t.Fatalf("queue %v, model %v", q, md.queue)
	}
}

// TestFIFOUnderLoad: calls wait and are served strictly in arrival order.
func TestFIFOUnderLoad(t *testing.T) {
	m := newMachine(t, "A,B,C")
	now := t0
	for i := range 1000 {
		if _, err := m.Call(strconv.Itoa(i), now); err != nil {
			t.Fatal(err)
		}
	}
	next := 3
	for _, op := range []string{"A", "B", "C"} {
		if _, err := m.Answer(op, now); err != nil {
			t.Fatal(err)
		}
	}
	// Hang up some waiting calls: they leave, the order of the rest holds.
	for i := 500; i < 600; i++ {
		if _, err := m.Hangup(strconv.Itoa(i), now); err != nil {
			t.Fatal(err)
		}
	}
	active := map[string]string{"A": "0", "B": "1", "C": "2"}
	for round := 0; m.Waiting() > 0; round++ {
		op := []string{"A", "B", "C"}[round%3]
		msgs, err := m.Hangup(active[op], now)
		if err != nil {
			t.Fatal(err)
		}
		if next == 500 {
			next = 600
		}
		want := strconv.Itoa(next)
		if len(msgs) != 2 || msgs[1].Kind != MsgRinging || msgs[1].Call != want || msgs[1].Operator != op {
			t.Fatalf("round %d: %v, want call %s for %s", round, msgs, want, op)
		}
		next++
		if _, err := m.Answer(op, now); err != nil {
			t.Fatal(err)
		}
		active[op] = want
	}
	if next != 1000 {
		t.Fatalf("served up to %d", next)
	}
	checkInvariants(t, m)
}
