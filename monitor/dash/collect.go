// Package dash is the live terminal monitor ("dialbridge monitor"): a
// snapshot collector that reads each cell's keys from Redis in one pipelined
// round trip, the rates derived from successive snapshots, and a Bubble Tea
// model (model → update → view) that draws them, plus the plain-text and
// JSON renderings of one snapshot for scripts.
//
// Nothing here needs a terminal: the model is driven by messages (snapshots,
// console lines, keys, window sizes) and its View is a pure function of its
// state and its clock, which is what the golden tests check.
package dash

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/redisq"
)

// Instance is one bridge of a cell, from its heartbeat. A registered
// instance whose heartbeat has expired has Gone set (it died, or it is
// stopping; its claimed commands wait for crash recovery).
type Instance struct {
	Instance  string        `json:"instance"`
	Host      string        `json:"host"`
	PID       int           `json:"pid"`
	Version   string        `json:"version"`
	Threads   int           `json:"threads"`
	InFlight  int           `json:"in_flight"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	BeatAt    time.Time     `json:"beat_at,omitzero"`
	TTL       time.Duration `json:"-"`
	TTLMs     int64         `json:"ttl_ms"` // TTL, for JSON
	Claimed   int64         `json:"claimed"`
	Gone      bool          `json:"gone,omitempty"`
	// Hold says why the instance claims nothing though it runs (e.g.
	// "redis replicas: no replica acknowledged …"); "" when it claims.
	Hold string `json:"hold,omitempty"`
}

// LogEntry is one entry of the queue manager's log stream.
type LogEntry struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Message  string    `json:"message"`
	Kind     string    `json:"kind,omitempty"`
	Call     string    `json:"call,omitempty"`
	Operator string    `json:"operator,omitempty"`
}

// Cell is what one refresh read of one cell.
type Cell struct {
	Name      string           `json:"cell"`
	Err       string           `json:"error,omitempty"` // the refresh failed; the rest is empty
	Dial      int64            `json:"dial"`
	Claimed   int64            `json:"claimed"`
	Ack       int64            `json:"ack"`
	Confirm   int64            `json:"confirm"`
	Results   int64            `json:"results"`
	Dead      int64            `json:"dead"`
	Stats     map[string]int64 `json:"stats"`
	Instances []Instance       `json:"instances"`
	// The queue manager of the cell, as saved in Redis.
	ACD      acd.Snapshot `json:"acd"`
	ACDLease string       `json:"acd_lease,omitempty"` // instance of the running queue manager
	ACDInbox int64        `json:"acd_inbox"`           // bridge events not yet taken
	Log      []LogEntry   `json:"acd_log"`             // oldest first
	// Pacing is the cell's pacer state, P:{C}:pacing (contract section 6);
	// empty for an unpaced cell.
	Pacing map[string]string `json:"pacing,omitempty"`
}

// Threads is the sum of the live instances' threads.
func (c *Cell) Threads() int {
	n := 0
	for _, in := range c.Instances {
		if !in.Gone {
			n += in.Threads
		}
	}
	return n
}

// InFlight is the sum of the live instances' calls in progress.
func (c *Cell) InFlight() int {
	n := 0
	for _, in := range c.Instances {
		if !in.Gone {
			n += in.InFlight
		}
	}
	return n
}

// Snapshot is one refresh of every cell.
type Snapshot struct {
	At     time.Time `json:"at"`
	Cells  []Cell    `json:"cells"`
	Trunks []Trunk   `json:"trunks,omitempty"` // trunks.go
}

// Collector reads the cells. Each cell costs one pipelined round trip per
// refresh: SMEMBERS of the instance set travels in the same pipeline as the
// heartbeats and claimed lists of the instances the previous refresh knew,
// so only a refresh that finds a new instance makes a second (small) round
// trip, for that instance alone. No KEYS, no SCAN.
//
// A Collector is used by one goroutine at a time.
type Collector struct {
	rdb    redis.UniversalClient
	prefix string
	cells  []string
	logN   int
	known  map[string][]string // cell → instance names read last time
	trunks trunkSet            // trunks.go
	now    func() time.Time
}

// NewCollector reads cells under prefix; logN is how many ACD log entries
// to keep (default 12).
func NewCollector(rdb redis.UniversalClient, prefix string, cells []string, logN int) *Collector {
	if logN <= 0 {
		logN = 12
	}
	return &Collector{rdb: rdb, prefix: prefix, cells: cells, logN: logN, known: map[string][]string{}, now: time.Now}
}

// SetClock sets the clock that stamps snapshots (tests).
func (c *Collector) SetClock(now func() time.Time) { c.now = now }

// Cells are the cells read.
func (c *Collector) Cells() []string { return c.cells }

// Collect reads every cell. It never fails: a cell that could not be read
// has Err set.
func (c *Collector) Collect(ctx context.Context) Snapshot {
	s := Snapshot{At: c.now(), Cells: make([]Cell, 0, len(c.cells))}
	for _, name := range c.cells {
		cell, err := c.collectCell(ctx, name)
		if err != nil {
			cell = Cell{Name: name, Err: err.Error()}
		}
		s.Cells = append(s.Cells, cell)
	}
	s.Trunks = c.collectTrunks(ctx, s.Cells)
	return s
}

type instCmds struct {
	hash    *redis.MapStringStringCmd
	ttl     *redis.DurationCmd
	claimed *redis.IntCmd
}

func (c *Collector) queueInstances(ctx context.Context, p redis.Pipeliner, k redisq.Keys, names []string) []instCmds {
	out := make([]instCmds, len(names))
	for i, n := range names {
		out[i] = instCmds{
			hash:    p.HGetAll(ctx, k.Instance(n)),
			ttl:     p.PTTL(ctx, k.Instance(n)),
			claimed: p.LLen(ctx, k.Claimed(n)),
		}
	}
	return out
}

func (c *Collector) collectCell(ctx context.Context, name string) (Cell, error) {
	k := redisq.NewKeys(c.prefix, name)
	known := c.known[name]
	var (
		members           *redis.StringSliceCmd
		lens              [5]*redis.IntCmd
		stats, ops, calls *redis.MapStringStringCmd
		queue             *redis.StringSliceCmd
		lease             *redis.StringCmd
		inbox             *redis.IntCmd
		logs              *redis.XMessageSliceCmd
		pacing            *redis.MapStringStringCmd
		insts             []instCmds
		acdKey            = func(n string) string { return redisq.ACDKey(c.prefix, name, n) }
		fixed             = []string{k.Dial(), k.Ack(), k.Confirm(), k.Results(), k.Dead()}
	)
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		members = p.SMembers(ctx, k.InstanceSet())
		for i, key := range fixed {
			lens[i] = p.LLen(ctx, key)
		}
		stats = p.HGetAll(ctx, k.Stats())
		insts = c.queueInstances(ctx, p, k, known)
		ops = p.HGetAll(ctx, acdKey("operators"))
		calls = p.HGetAll(ctx, acdKey("calls"))
		queue = p.LRange(ctx, acdKey("queue"), 0, -1)
		lease = p.Get(ctx, acdKey("lease"))
		inbox = p.LLen(ctx, acdKey("inbox"))
		logs = p.XRevRangeN(ctx, acdKey("log"), "+", "-", int64(c.logN))
		pacing = p.HGetAll(ctx, redisq.NewPacingKeys(k).State())
		return nil
	})
	if err != nil && err != redis.Nil {
		return Cell{}, err
	}
	names := members.Val()
	sort := slices.Clone(names)
	slices.Sort(sort)
	names = sort
	// Instances the previous refresh did not know: one more small round trip.
	var fresh []string
	for _, n := range names {
		if !slices.Contains(known, n) {
			fresh = append(fresh, n)
		}
	}
	var freshCmds []instCmds
	if len(fresh) > 0 {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			freshCmds = c.queueInstances(ctx, p, k, fresh)
			return nil
		})
		if err != nil && err != redis.Nil {
			return Cell{}, err
		}
	}
	c.known[name] = names

	cell := Cell{
		Name: name, Dial: lens[0].Val(), Ack: lens[1].Val(), Confirm: lens[2].Val(),
		Results: lens[3].Val(), Dead: lens[4].Val(), Stats: map[string]int64{},
		ACDLease: lease.Val(), ACDInbox: inbox.Val(),
	}
	if pv := pacing.Val(); len(pv) > 0 {
		cell.Pacing = pv
	}
	for f, v := range stats.Val() {
		n, _ := strconv.ParseInt(v, 10, 64)
		cell.Stats[f] = n
	}
	addInst := func(n string, ic instCmds) {
		if !slices.Contains(names, n) {
			return // left the set since
		}
		f := ic.hash.Val()
		in := Instance{Instance: n, Claimed: ic.claimed.Val()}
		cell.Claimed += in.Claimed
		if len(f) == 0 {
			if in.Claimed == 0 {
				return // gone for good; redisq prunes it
			}
			in.Gone = true
		} else {
			in.Host, in.Version = f["host"], f["version"]
			in.PID, _ = strconv.Atoi(f["pid"])
			in.Threads, _ = strconv.Atoi(f["threads"])
			in.InFlight, _ = strconv.Atoi(f["in_flight"])
			in.Hold = f["hold"]
			in.StartedAt, _ = time.Parse(bridge.TimeFormat, f["started_at"])
			in.BeatAt, _ = time.Parse(bridge.TimeFormat, f["beat_at"])
			in.TTL = ic.ttl.Val()
			in.TTLMs = in.TTL.Milliseconds()
		}
		cell.Instances = append(cell.Instances, in)
	}
	for i, n := range known {
		addInst(n, insts[i])
	}
	for i, n := range fresh {
		addInst(n, freshCmds[i])
	}
	slices.SortFunc(cell.Instances, func(a, b Instance) int { return strings.Compare(a.Instance, b.Instance) })

	cell.ACD = parseFloor(ops.Val(), calls.Val(), queue.Val())
	msgs := logs.Val()
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		e := LogEntry{ID: m.ID}
		str := func(f string) string { s, _ := m.Values[f].(string); return s }
		e.Time, _ = time.Parse(bridge.TimeFormat, str("time"))
		e.Message, e.Kind, e.Call, e.Operator = str("message"), str("kind"), str("call"), str("operator")
		cell.Log = append(cell.Log, e)
	}
	return cell, nil
}

// parseFloor decodes the queue manager's hashes (redisq.ACDLoad's format);
// a value that does not decode is skipped, the monitor shows what it can.
func parseFloor(ops, calls map[string]string, queue []string) acd.Snapshot {
	var s acd.Snapshot
	for id, v := range ops {
		var oi acd.OperatorInfo
		if jsonUnmarshal(v, &oi) == nil && oi.ID == id {
			s.Operators = append(s.Operators, oi)
		}
	}
	for id, v := range calls {
		var ci acd.CallInfo
		if jsonUnmarshal(v, &ci) == nil && ci.ID == id {
			s.Calls = append(s.Calls, ci)
		}
	}
	slices.SortFunc(s.Operators, func(a, b acd.OperatorInfo) int {
		if a.Tier != b.Tier {
			return int(a.Tier) - int(b.Tier)
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.SortFunc(s.Calls, func(a, b acd.CallInfo) int { return strings.Compare(a.ID, b.ID) })
	s.Queue = queue
	return s
}
