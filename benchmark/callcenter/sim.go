// Package callcenter is a call center in virtual time — operators, customers,
// a dialer — that runs the daemon's pacer (bridge.Pace) and the baselines it
// must beat on the same observations (issue 15 parts 5 and 6). A run is a pure
// function of its scenario, policy and seed.
package callcenter

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

// Scenario is one cell of the matrix.
type Scenario struct {
	Operators  int
	AnswerRate float64       // probability that a dialed customer answers
	MeanTalk   time.Duration // mean of the log-normal talk time
	Shift      time.Duration
}

// Result is one run's figures.
type Result struct {
	Scenario Scenario
	Policy   Policy
	Seed     uint64

	Dials, Answered, Abandoned int
	Occupancy                  float64 // (talk + wrap) ÷ logged-in time
	AbandonRate                float64 // abandoned ÷ answered, whole shift
	WorstWindow                float64 // worst 30-minute abandon rate (minute steps)
	MeanLevel                  float64 // mean calls dialing per operator
}

// The model's constants (issue 15 part 5).
const (
	ringMean      = 8.0 // s, time to answer, log-normal
	ringSigma     = 0.5
	noAnswerAt    = 25.0 // s
	failShare     = 0.08 // of all dials, busy/failed within 3 s (at most the non-answers)
	patienceMean  = 10.0 // s, exponential, once answered and waiting
	talkSigmaSim  = 0.6  // σ of log(talk): the pacer does not know it
	abandonAfter  = 2.0  // s
	tick          = 0.5  // s, the simulation's clock for policies
	measureWindow = 200  // last samples the measured times are taken over
	attemptWindow = 1000 // last attempts the answer rate is taken over
	abandonWindow = 1800.0
)

type evKind uint8

const (
	evTick evKind = iota
	evAnswer
	evDialEnd // busy, failed or no answer
	evOpAnswer
	evPatience
	evAbandonCheck
	evTalkEnd
	evWrapEnd
)

type event struct {
	t    float64
	seq  uint64
	kind evKind
	id   int32
}

type callState uint8

const (
	cDialing callState = iota
	cWaiting
	cDelivered // ringing an operator
	cConnected
	cGone
)

type call struct {
	state      callState
	dialedAt   float64
	answeredAt float64
	op         int32
	decided    bool
}

type opState uint8

const (
	oAvailable opState = iota
	oRinging
	oTalking
	oWrap
)

type operator struct {
	state opState
	since float64 // connected at (talk and wrap: busy for = now − since)
	call  int32
}

type ring struct {
	v    []float64
	i, n int
	sum  float64
}

func newRing(n int) ring { return ring{v: make([]float64, n)} }

func (r *ring) add(x float64) {
	if r.n == len(r.v) {
		r.sum -= r.v[r.i]
	} else {
		r.n++
	}
	r.v[r.i] = x
	r.sum += x
	r.i = (r.i + 1) % len(r.v)
}

func (r *ring) mean() float64 {
	if r.n == 0 {
		return 0
	}
	return r.sum / float64(r.n)
}

type decision struct {
	t         float64
	abandoned bool
}

type sim struct {
	sc  Scenario
	rng *rand.Rand
	now float64
	end float64
	seq uint64
	h   []event

	calls   []call
	ops     []operator
	free    []int32 // available operators, LIFO
	queue   []int32 // waiting calls, FIFO from qHead
	qHead   int
	dialing int
	waiting int

	answerRate, ring, attempt, talk, wrap, opDelay ring

	win                     []decision // abandon decisions in the window
	winHead                 int
	winAnswered, winAbandon int
	answered, abandoned     int
	minuteAns, minuteAbn    []int
	dials                   int
	busyTime                float64
	levelSum                float64
	levelN                  int
	busyFor, dialingFor     []time.Duration
	oldestDialing           int // calls before it have all ended
}

var epoch = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func newSim(sc Scenario, seed uint64) *sim {
	s := &sim{
		sc:         sc,
		rng:        rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		end:        sc.Shift.Seconds(),
		ops:        make([]operator, sc.Operators),
		answerRate: newRing(attemptWindow),
		ring:       newRing(measureWindow),
		attempt:    newRing(attemptWindow),
		talk:       newRing(measureWindow),
		wrap:       newRing(measureWindow),
		opDelay:    newRing(measureWindow),
	}
	for i := sc.Operators - 1; i >= 0; i-- {
		s.free = append(s.free, int32(i))
	}
	mins := int(math.Ceil(s.end/60)) + 1
	s.minuteAns = make([]int, mins)
	s.minuteAbn = make([]int, mins)
	return s
}

func (s *sim) push(t float64, k evKind, id int32) {
	s.seq++
	s.h = append(s.h, event{t, s.seq, k, id})
	h := s.h
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func less(a, b event) bool { return a.t < b.t || (a.t == b.t && a.seq < b.seq) }

func (s *sim) pop() event {
	h := s.h
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && less(h[r], h[l]) {
			m = r
		}
		if !less(h[m], h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	s.h = h
	return top
}

func (s *sim) lognormal(mean, sigma float64) float64 {
	mu := math.Log(mean) - sigma*sigma/2
	return math.Exp(mu + sigma*s.rng.NormFloat64())
}

func (s *sim) uniform(a, b float64) float64 { return a + (b-a)*s.rng.Float64() }

// dial starts one call; its fate is drawn now, its events come later.
func (s *sim) dial() {
	id := int32(len(s.calls))
	s.calls = append(s.calls, call{op: -1, dialedAt: s.now})
	s.dialing++
	s.dials++
	u := s.rng.Float64()
	p := s.sc.AnswerRate
	switch {
	case u < p:
		t := min(max(s.lognormal(ringMean, ringSigma), 1), noAnswerAt-0.1)
		s.push(s.now+t, evAnswer, id)
	case u < p+min(failShare, 1-p):
		s.push(s.now+s.uniform(0.5, 3), evDialEnd, id)
	default:
		s.push(s.now+noAnswerAt, evDialEnd, id)
	}
}

func (s *sim) decide(c *call, abandoned bool) {
	c.decided = true
	if s.now >= s.end {
		return
	}
	s.answered++
	s.winAnswered++
	m := int(s.now / 60)
	s.minuteAns[m]++
	if abandoned {
		s.abandoned++
		s.winAbandon++
		s.minuteAbn[m]++
	}
	s.win = append(s.win, decision{s.now, abandoned})
}

// deliver hands waiting calls to available operators, in order, as the queue
// manager does; the operator answers after their answer delay.
func (s *sim) deliver() {
	for len(s.free) > 0 && s.qHead < len(s.queue) {
		id := s.queue[s.qHead]
		s.qHead++
		c := &s.calls[id]
		if c.state != cWaiting {
			continue
		}
		op := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		s.waiting--
		c.state = cDelivered
		c.op = op
		s.ops[op] = operator{state: oRinging, since: s.now, call: id}
		s.push(s.now+s.uniform(0.5, 1.5), evOpAnswer, op)
	}
	if s.qHead > 1024 && s.qHead*2 > len(s.queue) {
		s.queue = append(s.queue[:0], s.queue[s.qHead:]...)
		s.qHead = 0
	}
}

func (s *sim) handle(e event) {
	switch e.kind {
	case evAnswer:
		c := &s.calls[e.id]
		s.dialing--
		s.answerRate.add(1)
		s.ring.add(s.now - c.dialedAt)
		s.attempt.add(s.now - c.dialedAt)
		c.state = cWaiting
		c.answeredAt = s.now
		s.waiting++
		s.queue = append(s.queue, e.id)
		s.push(s.now+s.rng.ExpFloat64()*patienceMean, evPatience, e.id)
		s.push(s.now+abandonAfter, evAbandonCheck, e.id)
		s.deliver()
	case evDialEnd:
		s.dialing--
		s.answerRate.add(0)
		s.attempt.add(s.now - s.calls[e.id].dialedAt)
		s.calls[e.id].state = cGone
	case evOpAnswer:
		op := &s.ops[e.id]
		if op.state != oRinging {
			return // the customer hung up while it rang; already freed
		}
		c := &s.calls[op.call]
		if c.state != cDelivered || c.op != e.id {
			return
		}
		s.opDelay.add(s.now - op.since)
		c.state = cConnected
		if !c.decided {
			s.decide(c, false)
		}
		op.state = oTalking
		op.since = s.now
		s.push(s.now+s.lognormal(s.sc.MeanTalk.Seconds(), talkSigmaSim), evTalkEnd, e.id)
	case evPatience:
		c := &s.calls[e.id]
		switch c.state {
		case cWaiting:
			s.waiting--
		case cDelivered:
			s.ops[c.op] = operator{state: oAvailable, call: -1}
			s.free = append(s.free, c.op)
		default:
			return
		}
		c.state = cGone
		if !c.decided {
			// hung up before abandon_after: not an abandon (one definition
			// for every policy).
			s.decide(c, false)
		}
		s.deliver()
	case evAbandonCheck:
		c := &s.calls[e.id]
		if !c.decided {
			s.decide(c, c.state != cConnected)
		}
	case evTalkEnd:
		op := &s.ops[e.id]
		s.talk.add(s.now - op.since)
		op.state = oWrap
		w := s.uniform(5, 15)
		s.wrap.add(w)
		s.push(s.now+w, evWrapEnd, e.id)
	case evWrapEnd:
		op := &s.ops[e.id]
		s.busyTime += min(s.now, s.end) - op.since
		*op = operator{state: oAvailable, call: -1}
		s.free = append(s.free, e.id)
		s.deliver()
	}
}

// observe builds the pacer's observation from the simulated state.
func (s *sim) observe() bridge.PacingObservation {
	for s.winHead < len(s.win) && s.win[s.winHead].t <= s.now-abandonWindow {
		s.winAnswered--
		if s.win[s.winHead].abandoned {
			s.winAbandon--
		}
		s.winHead++
	}
	if s.winHead > 4096 && s.winHead*2 > len(s.win) {
		s.win = append(s.win[:0], s.win[s.winHead:]...)
		s.winHead = 0
	}
	o := bridge.PacingObservation{
		Now:            epoch.Add(secs(s.now)),
		Waiting:        s.waiting,
		Dialing:        s.dialing,
		AnswerRate:     s.answerRate.mean(),
		TimeToAnswer:   secs(s.ring.mean()),
		AttemptTime:    secs(s.attempt.mean()),
		TalkTime:       secs(s.talk.mean()),
		WrapUp:         secs(s.wrap.mean()),
		OperatorDelay:  secs(s.opDelay.mean()),
		AnsweredWindow: s.winAnswered,
		AnsweredDay:    s.answered,
	}
	if s.winAnswered > 0 {
		o.AbandonRateWindow = float64(s.winAbandon) / float64(s.winAnswered)
	}
	if s.answered > 0 {
		o.AbandonRateDay = float64(s.abandoned) / float64(s.answered)
	}
	s.busyFor = s.busyFor[:0]
	for i := range s.ops {
		switch s.ops[i].state {
		case oAvailable:
			o.Available++
		case oRinging:
			o.Ringing++
		default:
			o.Busy++
			s.busyFor = append(s.busyFor, secs(s.now-s.ops[i].since))
		}
	}
	o.BusyFor = s.busyFor
	for s.oldestDialing < len(s.calls) && s.calls[s.oldestDialing].state != cDialing {
		s.oldestDialing++
	}
	s.dialingFor = s.dialingFor[:0]
	for i := s.oldestDialing; i < len(s.calls); i++ {
		if s.calls[i].state == cDialing {
			s.dialingFor = append(s.dialingFor, secs(s.now-s.calls[i].dialedAt))
		}
	}
	o.DialingFor = s.dialingFor
	return o
}

func secs(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }

// run plays the shift under one policy.
func (s *sim) run(p pacer) Result {
	s.push(0, evTick, 0)
	threads := 4 * s.sc.Operators
	for len(s.h) > 0 {
		e := s.pop()
		if e.t >= s.end {
			break
		}
		s.now = e.t
		if e.kind != evTick {
			s.handle(e)
			continue
		}
		n := p.step(s.now, s.observe)
		n = min(n, threads-s.dialing)
		for range n {
			s.dial()
		}
		s.levelSum += float64(s.dialing) / float64(s.sc.Operators)
		s.levelN++
		s.push(s.now+tick, evTick, 0)
	}
	s.now = s.end
	for i := range s.ops {
		if st := s.ops[i].state; st == oTalking || st == oWrap {
			s.busyTime += s.end - s.ops[i].since
		}
	}
	r := Result{
		Scenario:  s.sc,
		Dials:     s.dials,
		Answered:  s.answered,
		Abandoned: s.abandoned,
		Occupancy: s.busyTime / (s.end * float64(s.sc.Operators)),
	}
	if s.answered > 0 {
		r.AbandonRate = float64(s.abandoned) / float64(s.answered)
	}
	if s.levelN > 0 {
		r.MeanLevel = s.levelSum / float64(s.levelN)
	}
	r.WorstWindow = worstWindow(s.minuteAns, s.minuteAbn, 30)
	return r
}

// worstWindow is the highest abandon rate over any w consecutive minutes.
func worstWindow(ans, abn []int, w int) float64 {
	worst := 0.0
	a, b := 0, 0
	for i := range ans {
		a += ans[i]
		b += abn[i]
		if i >= w {
			a -= ans[i-w]
			b -= abn[i-w]
		}
		if i >= w-1 && a > 0 {
			worst = max(worst, float64(b)/float64(a))
		}
	}
	return worst
}
