package redisq

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/acd"
)

// What the pacer sees each second (bridge.PacingObservation), read from
// Redis in one round trip: the queue manager's floor (section 5 keys), the
// slots of the calls dialing, the day's counters and the new entries of the
// pacing log, whose recent past gives the measured rates.

// Sizes of the measured rates' memories: recent enough to follow a
// campaign's change, long enough to average out single calls.
const (
	measureAttempts = 400 // attempts that ended (answer rate, ring and attempt time)
	measureAnswered = 200 // answered calls (talk time, operator delay)
)

// pacingRead is one look at the cell.
type pacingRead struct {
	now       time.Time // Redis TIME
	qmRunning bool
	floorErr  error // the operators' or calls' state could not be read
	operators []acd.OperatorInfo
	waiting   int
	slots     []redis.Z
	dayAns    int
	dayAbn    int
	log       []redis.XMessage
}

// pacingMeasure keeps the recent past of the pacing log.
type pacingMeasure struct {
	lastID   string // last log entry read ("" = none yet)
	attempts ring[attemptSample]
	talk     ring[time.Duration]
	delay    ring[time.Duration]
	window   []answerSample // answered calls within the window, oldest first
}

type attemptSample struct {
	answered bool
	ring     time.Duration // dial → answer (answered)
	total    time.Duration // dial → end
}

type answerSample struct {
	at        int64 // ms, Redis TIME (the log entry's id)
	abandoned bool
}

// ring is a fixed-size memory of the newest values.
type ring[T any] struct {
	buf  []T
	next int
	n    int
}

func (r *ring[T]) add(v T, size int) {
	if len(r.buf) < size {
		r.buf = append(r.buf, v)
		r.n = len(r.buf)
		return
	}
	r.buf[r.next] = v
	r.next = (r.next + 1) % len(r.buf)
}

func (r *ring[T]) all() []T { return r.buf }

// read looks at the cell in one pipeline. day is today's date in the
// pacing time zone; since is where the log is read from ("" = start at
// sinceMS).
func (p *Pacer) read(ctx context.Context, day string) (pacingRead, error) {
	var out pacingRead
	start := "-"
	if p.meas.lastID != "" {
		start = "(" + p.meas.lastID
	} else {
		now := time.Now()
		start = strconv.FormatInt(now.Add(-max(p.opt.Settings.Window, 15*time.Minute)).UnixMilli(), 10)
	}
	k := p.keys
	var (
		tm    *redis.TimeCmd
		lease *redis.IntCmd
		ops   *redis.MapStringStringCmd
		calls *redis.MapStringStringCmd
		slots *redis.ZSliceCmd
		dayv  *redis.SliceCmd
		logv  *redis.XMessageSliceCmd
	)
	_, err := p.rdb.TxPipelined(ctx, func(pp redis.Pipeliner) error {
		tm = pp.Time(ctx)
		lease = pp.Exists(ctx, ACDKey(k.k.Prefix(), k.k.Cell(), "lease"))
		ops = pp.HGetAll(ctx, ACDKey(k.k.Prefix(), k.k.Cell(), "operators"))
		calls = pp.HGetAll(ctx, ACDKey(k.k.Prefix(), k.k.Cell(), "calls"))
		slots = pp.ZRangeWithScores(ctx, k.Slots(), 0, -1)
		dayv = pp.HMGet(ctx, k.Day(), day+":answered", day+":abandoned")
		logv = pp.XRangeN(ctx, k.Log(), start, "+", 5000)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("reading the cell's pacing state: %w", err)
	}
	out.now = tm.Val()
	out.qmRunning = lease.Val() == 1
	for id, v := range ops.Val() {
		var oi acd.OperatorInfo
		if err := json.Unmarshal([]byte(v), &oi); err != nil || oi.ID != id {
			out.floorErr = fmt.Errorf("operator %q: bad value %q", acdShorten(id, 40), acdShorten(v, 80))
			break
		}
		out.operators = append(out.operators, oi)
	}
	for id, v := range calls.Val() {
		var ci acd.CallInfo
		if err := json.Unmarshal([]byte(v), &ci); err != nil || ci.ID != id {
			out.floorErr = fmt.Errorf("call %q: bad value %q", acdShorten(id, 40), acdShorten(v, 80))
			break
		}
		if ci.State == acd.Waiting {
			out.waiting++
		}
	}
	nowUS := out.now.UnixMicro()
	for _, z := range slots.Val() {
		if int64(z.Score) > nowUS {
			out.slots = append(out.slots, z)
		}
	}
	if d := dayv.Val(); len(d) == 2 {
		out.dayAns = anyInt(d[0])
		out.dayAbn = anyInt(d[1])
	}
	out.log = logv.Val()
	return out, nil
}

func anyInt(v any) int {
	s, _ := v.(string)
	n, _ := strconv.Atoi(s)
	return n
}

// absorb adds the new log entries to the measures and drops the window's
// old ones.
func (m *pacingMeasure) absorb(log []redis.XMessage, now time.Time, window time.Duration) {
	num := func(v any) int64 {
		s, _ := v.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	for _, e := range log {
		m.lastID = e.ID
		ms, _, _ := strings.Cut(e.ID, "-")
		at, _ := strconv.ParseInt(ms, 10, 64)
		st, _ := e.Values["s"].(string)
		d, r, t, w, o := num(e.Values["d"]), num(e.Values["r"]), num(e.Values["t"]), num(e.Values["w"]), num(e.Values["o"])
		answered := st == string(bridge.StatusAnswered)
		if d >= 0 { // dialed: an attempt that ended
			m.attempts.add(attemptSample{answered: answered, ring: time.Duration(max(r, 0)) * time.Millisecond, total: time.Duration(d) * time.Millisecond}, measureAttempts)
		}
		if !answered {
			continue
		}
		m.window = append(m.window, answerSample{at: at, abandoned: e.Values["a"] == "1"})
		if o >= 0 { // an operator answered it
			m.delay.add(time.Duration(o)*time.Millisecond, measureAnswered)
			if t >= 0 && w >= 0 && t > w {
				m.talk.add(time.Duration(t-w)*time.Millisecond, measureAnswered)
			}
		}
	}
	cut := now.Add(-window).UnixMilli()
	i := 0
	for i < len(m.window) && m.window[i].at < cut {
		i++
	}
	m.window = m.window[i:]
}

// observe builds the pacer's observation from one look.
func (p *Pacer) observe(r pacingRead) bridge.PacingObservation {
	o := bridge.PacingObservation{Now: r.now, Waiting: r.waiting}
	for _, op := range r.operators {
		switch op.State {
		case acd.Available:
			o.Available++
		case acd.Ringing:
			o.Ringing++
		case acd.Busy:
			o.Busy++
			if !op.Since.IsZero() {
				o.BusyFor = append(o.BusyFor, max(r.now.Sub(op.Since), 0))
			}
		}
	}
	nowMS := r.now.UnixMilli()
	for _, z := range r.slots {
		o.Dialing++
		if m, ok := z.Member.(string); ok {
			if at := slotTakenMS(m); at > 0 {
				o.DialingFor = append(o.DialingFor, time.Duration(max(nowMS-at, 0))*time.Millisecond)
			}
		}
	}
	m := &p.meas
	var ans, n int
	var ringSum, totalSum time.Duration
	for _, a := range m.attempts.all() {
		n++
		totalSum += a.total
		if a.answered {
			ans++
			ringSum += a.ring
		}
	}
	if n > 0 {
		o.AnswerRate = float64(ans) / float64(n)
		o.AttemptTime = totalSum / time.Duration(n)
	}
	if ans > 0 {
		o.TimeToAnswer = ringSum / time.Duration(ans)
	}
	o.TalkTime = meanDur(m.talk.all())
	o.OperatorDelay = meanDur(m.delay.all())
	var wa, wb int
	for _, s := range m.window {
		wa++
		if s.abandoned {
			wb++
		}
	}
	o.AnsweredWindow = wa
	if wa > 0 {
		o.AbandonRateWindow = float64(wb) / float64(wa)
	}
	o.AnsweredDay = r.dayAns
	if r.dayAns > 0 {
		o.AbandonRateDay = float64(r.dayAbn) / float64(r.dayAns)
	}
	return o
}

func meanDur(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range v {
		s += d
	}
	return s / time.Duration(len(v))
}
