package acd

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// DefaultRingTimeout is the contract's ring time before a delivered call is
// ignored.
const DefaultRingTimeout = 10 * time.Second

// Machine is the queue manager's state. It is not safe for concurrent use:
// its owner serializes events.
type Machine struct {
	ringTimeout time.Duration
	ops         []*operator // configuration order, then removed ones
	byID        map[string]*operator
	calls       map[string]*call
	avail       opHeap
	rings       callHeap
	queue       callList
	seq         uint64

	// change journal of the latest event
	epoch        uint64
	changedOps   []*operator
	changedCalls []*call
	queueOps     []QueueOp
}

// New makes a floor with the given operators (configuration order), all
// logged in and available, and the ring timeout (≤ 0 means
// DefaultRingTimeout).
func New(ops []Operator, ringTimeout time.Duration) (*Machine, error) {
	if len(ops) == 0 {
		return nil, fmt.Errorf("acd: at least one operator is needed")
	}
	if ringTimeout <= 0 {
		ringTimeout = DefaultRingTimeout
	}
	m := &Machine{
		ringTimeout: ringTimeout,
		byID:        make(map[string]*operator, len(ops)),
		calls:       make(map[string]*call),
		avail:       make(opHeap, 0, len(ops)),
	}
	m.queue.init()
	for _, o := range ops {
		if !ValidID(o.ID) {
			return nil, fmt.Errorf("acd: invalid operator id %q: %s", o.ID, idRule)
		}
		if o.Tier > TierDirector {
			return nil, fmt.Errorf("acd: operator %s: invalid tier %d", o.ID, o.Tier)
		}
		if m.byID[o.ID] != nil {
			return nil, fmt.Errorf("acd: operator %s is listed twice", o.ID)
		}
		op := &operator{id: o.ID, tier: o.Tier, state: Available, heapIdx: -1}
		m.ops = append(m.ops, op)
		m.byID[o.ID] = op
	}
	m.rerank()
	for _, op := range m.ops {
		m.avail.push(op)
	}
	return m, nil
}

// rerank gives every operator its delivery rank: tier, then list order.
func (m *Machine) rerank() {
	order := make([]*operator, len(m.ops))
	copy(order, m.ops)
	sort.SliceStable(order, func(i, j int) bool { return order[i].tier < order[j].tier })
	for i, op := range order {
		op.rank = i
	}
}

// RingTimeout is the ring time before a delivered call is ignored.
func (m *Machine) RingTimeout() time.Duration { return m.ringTimeout }

// Operators returns the operators in configuration order.
func (m *Machine) Operators() []Operator {
	out := make([]Operator, 0, len(m.ops))
	for _, op := range m.ops {
		if !op.removed {
			out = append(out, Operator{ID: op.id, Tier: op.tier})
		}
	}
	return out
}

// Waiting is the number of calls in the queue.
func (m *Machine) Waiting() int { return m.queue.n }

// InProgress is the number of calls in progress (waiting, ringing or
// answered).
func (m *Machine) InProgress() int { return len(m.calls) }

// NextDeadline is the earliest ring deadline, if a call is ringing: the
// owner calls Tick at that time.
func (m *Machine) NextDeadline() (time.Time, bool) {
	c := m.rings.min()
	if c == nil {
		return time.Time{}, false
	}
	return c.deadline, true
}

// Do applies one command at time now. Status is refused here: it is a
// query (see [Machine.Status]).
func (m *Machine) Do(c Command, now time.Time) ([]Message, error) {
	switch c.Verb {
	case Call:
		return m.Call(c.ID, now)
	case Answer:
		return m.Answer(c.ID, now)
	case Reject:
		return m.Reject(c.ID, now)
	case Hangup:
		return m.Hangup(c.ID, now)
	case Login:
		return m.Login(c.ID, now)
	case Logout:
		return m.Logout(c.ID, now)
	}
	m.begin()
	return nil, errorf(ErrSyntax, "%s is not an event", c.Verb)
}

// begin starts an event: the change journal restarts.
func (m *Machine) begin() {
	m.epoch++
	clear(m.changedOps)
	m.changedOps = m.changedOps[:0]
	clear(m.changedCalls)
	m.changedCalls = m.changedCalls[:0]
	m.queueOps = m.queueOps[:0]
}

func (m *Machine) touchOp(op *operator) {
	if op.mark != m.epoch {
		op.mark = m.epoch
		m.changedOps = append(m.changedOps, op)
	}
}

func (m *Machine) touchCall(c *call) {
	if c.mark != m.epoch {
		c.mark = m.epoch
		m.changedCalls = append(m.changedCalls, c)
	}
}

// Call is "call <id>": a new call arrives.
func (m *Machine) Call(id string, now time.Time) ([]Message, error) {
	m.begin()
	if !ValidID(id) {
		return nil, errorf(ErrSyntax, "invalid call id %q: %s", short(id), idRule)
	}
	if c := m.calls[id]; c != nil {
		return nil, errorf(ErrInProgress, "call %s is already in progress (%s)", id, c.where())
	}
	c := &call{id: id, received: now, since: now, ringIdx: -1}
	m.calls[id] = c
	m.touchCall(c)
	msgs := make([]Message, 0, 2)
	msgs = append(msgs, Message{Kind: MsgReceived, Call: id})
	if op := m.avail.min(); op != nil {
		m.avail.remove(op)
		msgs = m.deliver(msgs, c, op, now)
	} else {
		msgs = m.enqueue(msgs, c, false, now)
	}
	return msgs, nil
}

// Answer is "answer <operator>": the ringing operator takes the call.
func (m *Machine) Answer(opID string, now time.Time) ([]Message, error) {
	m.begin()
	op, err := m.ringingOperator(opID)
	if err != nil {
		return nil, err
	}
	c := op.call
	m.rings.remove(c)
	c.state, c.since, c.deadline = Answered, now, time.Time{}
	op.state, op.since = Busy, now
	m.touchCall(c)
	m.touchOp(op)
	return []Message{{Kind: MsgAnswered, Call: c.id, Operator: op.id}}, nil
}

// Reject is "reject <operator>": the ringing operator refuses the call,
// which is delivered again at once.
func (m *Machine) Reject(opID string, now time.Time) ([]Message, error) {
	m.begin()
	op, err := m.ringingOperator(opID)
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, 2)
	msgs = append(msgs, Message{Kind: MsgRejected, Call: op.call.id, Operator: op.id})
	return m.redeliver(msgs, op, now), nil
}

// Hangup is "hangup <id>": the caller hangs up.
func (m *Machine) Hangup(id string, now time.Time) ([]Message, error) {
	m.begin()
	if !ValidID(id) {
		return nil, errorf(ErrSyntax, "invalid call id %q: %s", short(id), idRule)
	}
	c := m.calls[id]
	if c == nil {
		return nil, errorf(ErrUnknownCall, "unknown call %s", id)
	}
	msgs := make([]Message, 0, 2)
	switch c.state {
	case Waiting:
		m.queue.remove(c)
		m.queueOps = append(m.queueOps, QueueOp{Kind: QueueRemove, Call: c.id})
		m.end(c)
		msgs = append(msgs, Message{Kind: MsgMissed, Call: id})
	case CallRinging:
		op := c.op
		m.rings.remove(c)
		m.end(c)
		msgs = append(msgs, Message{Kind: MsgMissed, Call: id})
		msgs = m.release(msgs, op, now)
	case Answered:
		op := c.op
		m.end(c)
		msgs = append(msgs, Message{Kind: MsgFinished, Call: id, Operator: op.id})
		msgs = m.release(msgs, op, now)
	}
	return msgs, nil
}

// Login is "login <operator>".
func (m *Machine) Login(opID string, now time.Time) ([]Message, error) {
	m.begin()
	op, err := m.operator(opID)
	if err != nil {
		return nil, err
	}
	switch {
	case op.state == LoggedOut && op.removed:
		return nil, errorf(ErrUnknownOperator, "operator %s is not in the configuration", op.id)
	case op.state == LoggedOut:
		msgs := []Message{{Kind: MsgLoggedIn, Operator: op.id}}
		return m.makeAvailable(msgs, op, now), nil
	case op.state == Busy && op.logoutPending && !op.removed:
		op.logoutPending = false
		m.touchOp(op)
		return []Message{{Kind: MsgLoggedIn, Operator: op.id}}, nil
	case op.removed:
		return nil, errorf(ErrUnknownOperator, "operator %s is not in the configuration", op.id)
	}
	return nil, errorf(ErrLogin, "operator %s is already logged in", op.id)
}

// Logout is "logout <operator>". See the package documentation for what
// happens to a ringing or busy operator's call.
func (m *Machine) Logout(opID string, now time.Time) ([]Message, error) {
	m.begin()
	op, err := m.operator(opID)
	if err != nil {
		return nil, err
	}
	switch op.state {
	case LoggedOut:
		return nil, errorf(ErrLogin, "operator %s is already logged out", op.id)
	case Busy:
		if op.logoutPending {
			return nil, errorf(ErrLogin, "operator %s already logs out after call %s", op.id, op.call.id)
		}
		op.logoutPending = true
		m.touchOp(op)
		return []Message{{Kind: MsgLogoutPending, Operator: op.id, Call: op.call.id}}, nil
	case Available:
		m.avail.remove(op)
		m.setLoggedOut(op, now)
		return []Message{{Kind: MsgLoggedOut, Operator: op.id}}, nil
	}
	// Ringing: the operator leaves, the call is delivered again ahead of
	// the queue.
	msgs := []Message{{Kind: MsgLoggedOut, Operator: op.id}}
	return m.unring(msgs, op, now), nil
}

// Tick is time passing: every call whose ring deadline is at or before now
// is ignored by its operator and delivered again (at now).
func (m *Machine) Tick(now time.Time) []Message {
	m.begin()
	var msgs []Message
	// Only calls due before this tick: a call delivered again during
	// this tick gets a deadline after now (ring timeout > 0), so the loop
	// ends.
	for {
		c := m.rings.min()
		if c == nil || c.deadline.After(now) {
			return msgs
		}
		op := c.op
		msgs = append(msgs, Message{Kind: MsgIgnored, Call: c.id, Operator: op.id})
		msgs = m.redeliver(msgs, op, now)
	}
}

// --- transitions ---------------------------------------------------------

// deliver rings op (already out of the available heap) for c.
func (m *Machine) deliver(msgs []Message, c *call, op *operator, now time.Time) []Message {
	m.seq++
	c.state, c.op, c.since, c.seq = CallRinging, op, now, m.seq
	c.deadline = now.Add(m.ringTimeout)
	m.rings.push(c)
	op.state, op.call, op.since = Ringing, c, now
	m.touchCall(c)
	m.touchOp(op)
	return append(msgs, Message{Kind: MsgRinging, Call: c.id, Operator: op.id})
}

// enqueue puts c at the back (or front) of the queue.
func (m *Machine) enqueue(msgs []Message, c *call, front bool, now time.Time) []Message {
	c.state, c.op, c.since, c.deadline = Waiting, nil, now, time.Time{}
	if front {
		m.queue.pushFront(c)
		m.queueOps = append(m.queueOps, QueueOp{Kind: QueuePushFront, Call: c.id})
	} else {
		m.queue.pushBack(c)
		m.queueOps = append(m.queueOps, QueueOp{Kind: QueuePushBack, Call: c.id})
	}
	m.touchCall(c)
	return append(msgs, Message{Kind: MsgWaiting, Call: c.id})
}

// redeliver handles a rejected or ignored call of ringing operator op: to
// another available operator if there is one, else to op again.
func (m *Machine) redeliver(msgs []Message, op *operator, now time.Time) []Message {
	c := op.call
	m.rings.remove(c)
	if other := m.avail.min(); other != nil {
		m.avail.remove(other)
		msgs = m.deliver(msgs, c, other, now)
		op.call = nil
		return m.makeAvailable(msgs, op, now)
	}
	return m.deliver(msgs, c, op, now)
}

// unring takes the ringing call away from op, which logs out; the call goes
// to another available operator, else to the head of the queue.
func (m *Machine) unring(msgs []Message, op *operator, now time.Time) []Message {
	c := op.call
	m.rings.remove(c)
	m.setLoggedOut(op, now)
	if other := m.avail.min(); other != nil {
		m.avail.remove(other)
		return m.deliver(msgs, c, other, now)
	}
	return m.enqueue(msgs, c, true, now)
}

// release frees op after its call ended.
func (m *Machine) release(msgs []Message, op *operator, now time.Time) []Message {
	op.call = nil
	if op.logoutPending {
		m.setLoggedOut(op, now)
		return append(msgs, Message{Kind: MsgLoggedOut, Operator: op.id})
	}
	return m.makeAvailable(msgs, op, now)
}

// makeAvailable: op (no call, not in the heap) takes the head of the
// queue, or waits among the available operators.
func (m *Machine) makeAvailable(msgs []Message, op *operator, now time.Time) []Message {
	op.call = nil
	op.logoutPending = false
	if c := m.queue.front(); c != nil {
		m.queue.remove(c)
		m.queueOps = append(m.queueOps, QueueOp{Kind: QueuePopFront, Call: c.id})
		return m.deliver(msgs, c, op, now)
	}
	op.state, op.since = Available, now
	m.avail.push(op)
	m.touchOp(op)
	return msgs
}

func (m *Machine) setLoggedOut(op *operator, now time.Time) {
	op.state, op.call, op.since, op.logoutPending = LoggedOut, nil, now, false
	m.touchOp(op)
}

// end forgets c (its id may be used again).
func (m *Machine) end(c *call) {
	delete(m.calls, c.id)
	m.touchCall(c)
	c.state = Ended
	c.op = nil
}

// --- lookups -------------------------------------------------------------

func (m *Machine) operator(id string) (*operator, error) {
	if !ValidID(id) {
		return nil, errorf(ErrSyntax, "invalid operator id %q: %s", short(id), idRule)
	}
	op := m.byID[id]
	if op == nil {
		return nil, errorf(ErrUnknownOperator, "unknown operator %s", id)
	}
	return op, nil
}

func (m *Machine) ringingOperator(id string) (*operator, error) {
	op, err := m.operator(id)
	if err != nil {
		return nil, err
	}
	if op.state != Ringing {
		return nil, errorf(ErrNotRinging, "operator %s is not ringing (%s)", op.id, op.describe())
	}
	return op, nil
}

func (op *operator) describe() string {
	switch op.state {
	case Available:
		return "available"
	case Ringing:
		return "ringing with call " + op.call.id
	case Busy:
		if op.logoutPending {
			return "busy on call " + op.call.id + ", logging out after it"
		}
		return "busy on call " + op.call.id
	}
	return "logged out"
}

func (c *call) where() string {
	switch c.state {
	case Waiting:
		return "waiting in queue"
	case CallRinging:
		return "ringing for operator " + c.op.id
	case Answered:
		return "answered by operator " + c.op.id
	}
	return "ended"
}

// --- queries -------------------------------------------------------------

// Position is the 1-based place of a waiting call in the queue and the
// queue's length. It walks the queue: O(position).
func (m *Machine) Position(id string) (pos, of int, err error) {
	c := m.calls[id]
	if c == nil {
		return 0, 0, errorf(ErrUnknownCall, "unknown call %s", id)
	}
	if c.state != Waiting {
		return 0, m.queue.n, errorf(ErrUnknownCall, "call %s is not waiting (%s)", id, c.where())
	}
	n := 1
	for x := m.queue.front(); x != c; x = x.next {
		n++
	}
	return n, m.queue.n, nil
}

// Status answers "status" (id empty: one line per operator, then the
// queue's length) or "status <id>" (where that call is). It changes
// nothing.
func (m *Machine) Status(id string) ([]string, error) {
	if id == "" {
		lines := make([]string, 0, len(m.ops)+1)
		for _, op := range m.ops {
			lines = append(lines, "Operator "+op.id+" ("+op.tier.String()+") "+op.describe())
		}
		switch m.queue.n {
		case 0:
			lines = append(lines, "Queue empty")
		case 1:
			lines = append(lines, "Queue: 1 call waiting")
		default:
			lines = append(lines, "Queue: "+strconv.Itoa(m.queue.n)+" calls waiting")
		}
		return lines, nil
	}
	if !ValidID(id) {
		return nil, errorf(ErrSyntax, "invalid call id %q: %s", short(id), idRule)
	}
	c := m.calls[id]
	if c == nil {
		return nil, errorf(ErrUnknownCall, "unknown call %s", id)
	}
	switch c.state {
	case Waiting:
		pos, of, _ := m.Position(id)
		return []string{"Call " + id + " waiting in queue at position " + strconv.Itoa(pos) + " of " + strconv.Itoa(of)}, nil
	case CallRinging:
		return []string{Message{Kind: MsgRinging, Call: id, Operator: c.op.id}.String()}, nil
	}
	return []string{Message{Kind: MsgAnswered, Call: id, Operator: c.op.id}.String()}, nil
}
