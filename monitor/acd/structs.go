package acd

import "container/heap"

import "time"

// operator is one operator of the floor.
type operator struct {
	id            string
	tier          Tier
	rank          int // delivery order: (tier, configuration order)
	state         OperatorState
	call          *call // ringing or busy
	since         time.Time
	logoutPending bool
	removed       bool // restored from saved state, no longer configured
	heapIdx       int  // index in Machine.avail, -1 when absent
	mark          uint64
}

// call is one call in progress.
type call struct {
	id       string
	state    CallState
	op       *operator // ringing or answered
	received time.Time
	since    time.Time
	deadline time.Time // ringing
	seq      uint64    // delivery order, breaks deadline ties
	ringIdx  int       // index in Machine.rings, -1 when absent
	prev     *call     // queue links
	next     *call
	mark     uint64
}

// opHeap is a min-heap (container/heap) of available operators by rank;
// each operator knows its index, so one can be removed in O(log n).
type opHeap []*operator

func (h opHeap) Len() int           { return len(h) }
func (h opHeap) Less(i, j int) bool { return h[i].rank < h[j].rank }
func (h opHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

// Push and Pop are for container/heap; use push and remove.
func (h *opHeap) Push(x any) {
	o := x.(*operator)
	o.heapIdx = len(*h)
	*h = append(*h, o)
}

func (h *opHeap) Pop() any {
	s := *h
	o := s[len(s)-1]
	s[len(s)-1] = nil
	*h = s[:len(s)-1]
	o.heapIdx = -1
	return o
}

func (h *opHeap) push(o *operator)   { heap.Push(h, o) }
func (h *opHeap) remove(o *operator) { heap.Remove(h, o.heapIdx) }

func (h *opHeap) min() *operator {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

// callHeap is a min-heap (container/heap) of ringing calls by (deadline,
// seq); each call knows its index.
type callHeap []*call

func ringLess(a, b *call) bool {
	if !a.deadline.Equal(b.deadline) {
		return a.deadline.Before(b.deadline)
	}
	return a.seq < b.seq
}

func (h callHeap) Len() int           { return len(h) }
func (h callHeap) Less(i, j int) bool { return ringLess(h[i], h[j]) }
func (h callHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].ringIdx, h[j].ringIdx = i, j
}

// Push and Pop are for container/heap; use push and remove.
func (h *callHeap) Push(x any) {
	c := x.(*call)
	c.ringIdx = len(*h)
	*h = append(*h, c)
}

func (h *callHeap) Pop() any {
	s := *h
	c := s[len(s)-1]
	s[len(s)-1] = nil
	*h = s[:len(s)-1]
	c.ringIdx = -1
	return c
}

func (h *callHeap) push(c *call)   { heap.Push(h, c) }
func (h *callHeap) remove(c *call) { heap.Remove(h, c.ringIdx) }

func (h *callHeap) min() *call {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

// callList is the waiting queue: a doubly linked list through the calls,
// with a sentinel, so that a waiting call is unlinked in O(1).
type callList struct {
	root call
	n    int
}

func (l *callList) init() {
	l.root.next = &l.root
	l.root.prev = &l.root
	l.n = 0
}

func (l *callList) front() *call {
	if l.n == 0 {
		return nil
	}
	return l.root.next
}

func (l *callList) insertAfter(c, at *call) {
	c.prev = at
	c.next = at.next
	at.next.prev = c
	at.next = c
	l.n++
}

func (l *callList) pushBack(c *call)  { l.insertAfter(c, l.root.prev) }
func (l *callList) pushFront(c *call) { l.insertAfter(c, &l.root) }

func (l *callList) remove(c *call) {
	c.prev.next = c.next
	c.next.prev = c.prev
	c.prev, c.next = nil, nil
	l.n--
}
