package acd

import (
	"fmt"
	"time"
)

// OperatorInfo is the saved state of one operator.
type OperatorInfo struct {
	ID            string        `json:"id"`
	Tier          Tier          `json:"tier"`
	State         OperatorState `json:"state"`
	Call          string        `json:"call,omitempty"` // ringing or busy
	Since         time.Time     `json:"since,omitzero"`
	LogoutPending bool          `json:"logout_pending,omitempty"`
}

// CallInfo is the saved state of one call in progress. In [Changes], a
// call with State Ended is gone.
type CallInfo struct {
	ID       string    `json:"id"`
	State    CallState `json:"state"`
	Operator string    `json:"operator,omitempty"` // ringing or answered
	Received time.Time `json:"received,omitzero"`
	Since    time.Time `json:"since,omitzero"`    // time of the latest change of state
	Deadline time.Time `json:"deadline,omitzero"` // ringing: when it is ignored
	Seq      uint64    `json:"seq,omitempty"`     // ringing: delivery order, breaks deadline ties
}

// QueueOpKind is one change of the waiting queue.
type QueueOpKind uint8

// Queue changes (head = front, the next call delivered).
const (
	QueuePushBack  QueueOpKind = iota // a call joins the back
	QueuePushFront                    // a call goes back to the head
	QueuePopFront                     // the head call is delivered
	QueueRemove                       // a waiting call hangs up
)

var queueOpNames = [...]string{"push_back", "push_front", "pop_front", "remove"}

func (k QueueOpKind) String() string {
	if int(k) < len(queueOpNames) {
		return queueOpNames[k]
	}
	return fmt.Sprintf("queueop(%d)", uint8(k))
}

// QueueOp is one change of the waiting queue, in order.
type QueueOp struct {
	Kind QueueOpKind
	Call string
}

// Changes is what the latest event changed: the new state of each operator
// and call it touched, and the queue's changes in order.
type Changes struct {
	Operators []OperatorInfo
	Calls     []CallInfo
	Queue     []QueueOp
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Operators) == 0 && len(c.Calls) == 0 && len(c.Queue) == 0
}

// Changes returns what the latest event (call, answer, …, Tick) changed.
// An event that failed changed nothing.
func (m *Machine) Changes() Changes {
	var ch Changes
	if len(m.changedOps) > 0 {
		ch.Operators = make([]OperatorInfo, len(m.changedOps))
		for i, op := range m.changedOps {
			ch.Operators[i] = op.info()
		}
	}
	if len(m.changedCalls) > 0 {
		ch.Calls = make([]CallInfo, len(m.changedCalls))
		for i, c := range m.changedCalls {
			ch.Calls[i] = c.info()
		}
	}
	if len(m.queueOps) > 0 {
		ch.Queue = append([]QueueOp(nil), m.queueOps...)
	}
	return ch
}

func (op *operator) info() OperatorInfo {
	i := OperatorInfo{ID: op.id, Tier: op.tier, State: op.state, Since: op.since, LogoutPending: op.logoutPending}
	if op.call != nil {
		i.Call = op.call.id
	}
	return i
}

func (c *call) info() CallInfo {
	if c.state == Ended {
		return CallInfo{ID: c.id, State: Ended}
	}
	i := CallInfo{ID: c.id, State: c.state, Received: c.received, Since: c.since, Deadline: c.deadline}
	if c.op != nil {
		i.Operator = c.op.id
	}
	if c.state == CallRinging {
		i.Seq = c.seq
	}
	return i
}

// Snapshot is the whole floor.
type Snapshot struct {
	Operators []OperatorInfo `json:"operators"` // configuration order
	Calls     []CallInfo     `json:"calls"`     // every call in progress
	Queue     []string       `json:"queue"`     // waiting calls, head first
}

// Snapshot returns the whole floor: O(operators + calls).
func (m *Machine) Snapshot() Snapshot {
	s := Snapshot{
		Operators: make([]OperatorInfo, 0, len(m.ops)),
		Calls:     make([]CallInfo, 0, len(m.calls)),
		Queue:     make([]string, 0, m.queue.n),
	}
	for c := m.queue.front(); c != nil && c != &m.queue.root; c = c.next {
		s.Queue = append(s.Queue, c.id)
		s.Calls = append(s.Calls, c.info())
	}
	for _, op := range m.ops {
		s.Operators = append(s.Operators, op.info())
		if op.call != nil {
			s.Calls = append(s.Calls, op.call.info())
		}
	}
	return s
}

// Restore rebuilds a floor from a snapshot saved by an earlier run, under
// the current configuration ops (which wins on tiers and order):
//   - a configured operator missing from the snapshot is available;
//   - an operator of the snapshot no longer configured is logged out by the
//     logout rules: when available or logged out it is dropped, when
//     ringing its call is delivered again (another available operator,
//     else the head of the queue), when busy it finishes its call first;
//   - then available operators take waiting calls from the head of the
//     queue, as always.
//
// The messages those steps produce are returned. Ring deadlines are kept:
// a deadline already past is ignored at the next Tick. A snapshot whose
// parts disagree (a call in two places, an operator ringing for a call
// that says otherwise, …) is an error.
func Restore(ops []Operator, ringTimeout time.Duration, snap Snapshot, now time.Time) (*Machine, []Message, error) {
	m, err := New(ops, ringTimeout)
	if err != nil {
		return nil, nil, err
	}
	for _, op := range m.ops {
		m.avail.remove(op)
	}
	bad := func(format string, args ...any) (*Machine, []Message, error) {
		return nil, nil, fmt.Errorf("acd: saved state is inconsistent: "+format, args...)
	}
	infos := make(map[string]CallInfo, len(snap.Calls))
	for _, ci := range snap.Calls {
		if !ValidID(ci.ID) {
			return bad("invalid call id %q", ci.ID)
		}
		if _, dup := infos[ci.ID]; dup {
			return bad("call %s is listed twice", ci.ID)
		}
		if ci.State > Answered {
			return bad("call %s has state %s", ci.ID, ci.State)
		}
		infos[ci.ID] = ci
	}
	newCall := func(ci CallInfo) *call {
		c := &call{id: ci.ID, state: ci.State, received: ci.Received, since: ci.Since, deadline: ci.Deadline, ringIdx: -1}
		m.calls[ci.ID] = c
		return c
	}
	seenOp := map[string]bool{}
	var removed []*operator
	var ringing []*call
	for _, oi := range snap.Operators {
		if !ValidID(oi.ID) {
			return bad("invalid operator id %q", oi.ID)
		}
		if seenOp[oi.ID] {
			return bad("operator %s is listed twice", oi.ID)
		}
		seenOp[oi.ID] = true
		op := m.byID[oi.ID]
		if op == nil {
			if oi.State == Available || oi.State == LoggedOut {
				continue // gone from the configuration, nothing to finish
			}
			op = &operator{id: oi.ID, tier: oi.Tier, removed: true, heapIdx: -1, rank: len(m.ops)}
			m.ops = append(m.ops, op)
			m.byID[op.id] = op
			removed = append(removed, op)
		}
		op.state, op.since = oi.State, oi.Since
		switch oi.State {
		case Available, LoggedOut:
			if oi.Call != "" {
				return bad("operator %s is %s with call %s", oi.ID, oi.State, oi.Call)
			}
		case Ringing, Busy:
			ci, ok := infos[oi.Call]
			want := CallRinging
			if oi.State == Busy {
				want = Answered
			}
			if !ok || ci.State != want || ci.Operator != oi.ID || m.calls[oi.Call] != nil {
				return bad("operator %s is %s with call %q, which says otherwise", oi.ID, oi.State, oi.Call)
			}
			c := newCall(ci)
			c.op, op.call = op, c
			if oi.State == Ringing {
				if c.deadline.IsZero() {
					c.deadline = now.Add(m.ringTimeout)
				}
				c.seq = ci.Seq
				ringing = append(ringing, c)
			} else {
				op.logoutPending = oi.LogoutPending
			}
		default:
			return bad("operator %s has state %s", oi.ID, oi.State)
		}
	}
	for _, id := range snap.Queue {
		ci, ok := infos[id]
		if !ok || ci.State != Waiting || m.calls[id] != nil {
			return bad("waiting call %q is not a waiting call", id)
		}
		c := newCall(ci)
		m.queue.pushBack(c)
	}
	if len(m.calls) != len(infos) {
		for id := range infos {
			if m.calls[id] == nil {
				return bad("call %s is neither waiting nor with an operator", id)
			}
		}
	}
	// Ringing calls keep their order: deadline, then delivery order.
	for _, c := range ringing {
		m.seq = max(m.seq, c.seq)
		m.rings.push(c)
	}
	for _, op := range m.ops {
		if op.state == Available {
			m.avail.push(op)
		}
	}
	var msgs []Message
	for _, op := range removed {
		switch op.state {
		case Ringing:
			msgs = append(msgs, Message{Kind: MsgLoggedOut, Operator: op.id})
			msgs = m.unring(msgs, op, now)
		case Busy:
			if !op.logoutPending {
				op.logoutPending = true
				msgs = append(msgs, Message{Kind: MsgLogoutPending, Operator: op.id, Call: op.call.id})
			}
		}
	}
	for m.queue.n > 0 && len(m.avail) > 0 {
		op := m.avail.min()
		m.avail.remove(op)
		c := m.queue.front()
		m.queue.remove(c)
		msgs = m.deliver(msgs, c, op, now)
	}
	m.begin()
	return m, msgs, nil
}
