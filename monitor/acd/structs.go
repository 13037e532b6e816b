package acd

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

// opHeap is a min-heap of available operators by rank.
type opHeap []*operator

func (h *opHeap) push(o *operator) {
	o.heapIdx = len(*h)
	*h = append(*h, o)
	h.up(o.heapIdx)
}

func (h *opHeap) min() *operator {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

func (h *opHeap) remove(o *operator) {
	i := o.heapIdx
	s := *h
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].heapIdx = i
	}
	s[last] = nil
	*h = s[:last]
	o.heapIdx = -1
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h opHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].rank <= h[i].rank {
			return
		}
		h[p], h[i] = h[i], h[p]
		h[p].heapIdx, h[i].heapIdx = p, i
		i = p
	}
}

func (h opHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h[r].rank < h[l].rank {
			c = r
		}
		if h[i].rank <= h[c].rank {
			break
		}
		h[i], h[c] = h[c], h[i]
		h[i].heapIdx, h[c].heapIdx = i, c
		i = c
	}
	return i != start
}

// callHeap is a min-heap of ringing calls by (deadline, seq).
type callHeap []*call

func ringLess(a, b *call) bool {
	if !a.deadline.Equal(b.deadline) {
		return a.deadline.Before(b.deadline)
	}
	return a.seq < b.seq
}

func (h *callHeap) push(c *call) {
	c.ringIdx = len(*h)
	*h = append(*h, c)
	h.up(c.ringIdx)
}

func (h *callHeap) min() *call {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

func (h *callHeap) remove(c *call) {
	i := c.ringIdx
	s := *h
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].ringIdx = i
	}
	s[last] = nil
	*h = s[:last]
	c.ringIdx = -1
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h callHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !ringLess(h[i], h[p]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		h[p].ringIdx, h[i].ringIdx = p, i
		i = p
	}
}

func (h callHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && ringLess(h[r], h[l]) {
			c = r
		}
		if !ringLess(h[c], h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		h[i].ringIdx, h[c].ringIdx = i, c
		i = c
	}
	return i != start
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
