package redisq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease timings. A call's lease lives DefaultTrunkLeaseTTL past its last
// renewal, and the daemon renews its leases with its heartbeat, every
// DefaultTrunkRenewEvery (= DefaultHeartbeatEvery). A daemon killed with -9
// renewed at most one period before it died, so its slots count as free
// again between TTL − every and TTL after the kill: 12–15 s, never more than
// 15 s — the contract's recovery bound, by which time a live daemon of the
// cell has adopted or settled the dead one's calls (an adopter that comes
// after the expiry takes the slot back with Adopt). A live daemon may miss
// four renewals in a row (a Redis failover, a stalled host) before one of
// its calls' slots is lost.
const (
	DefaultTrunkLeaseTTL   = 15 * time.Second
	DefaultTrunkRenewEvery = DefaultHeartbeatEvery
)

// renewBatch bounds the lease ids of one renewal script, so that a daemon
// with thousands of calls in flight does not block Redis for long in one go.
const renewBatch = 500

// TrunkCommands are the commands the limiter runs (inside its scripts, which
// Redis checks against the caller's ACL, and ZREM) beyond the ones in
// DaemonCommands: a daemon's ACL user on a trunk needs both lists.
var TrunkCommands = []string{
	"time", "zadd", "zrem", "zscore", "zmscore", "zcard", "zcount", "zrange", "zremrangebyscore",
}

// TrunkLimits are a trunk's shared limits (config.Trunk, without the
// settings types: this package does not depend on config).
type TrunkLimits struct {
	CPS         float64 // Originates per second, spread evenly; 0 = no limit
	Burst       int     // how many may come closer than 1/CPS; < 1 counts as 1
	MaxChannels int     // calls in progress at once; 0 = no limit
}

// TrunkRefusal says why Acquire gave nothing.
type TrunkRefusal uint8

// Refusals.
const (
	TrunkGranted   TrunkRefusal = iota
	TrunkNoToken                // the rate: come back after Wait, exactly
	TrunkNoChannel              // the channel cap: come back after a Release
	TrunkBreaker                // the peeked breaker is not closed: ask it (BreakerStore.Allow)
)

func (r TrunkRefusal) String() string {
	switch r {
	case TrunkGranted:
		return "granted"
	case TrunkNoToken:
		return "no token"
	case TrunkNoChannel:
		return "no channel"
	case TrunkBreaker:
		return "breaker not closed"
	}
	return "refusal(" + strconv.Itoa(int(r)) + ")"
}

// TrunkGrant is Acquire's answer.
type TrunkGrant struct {
	OK      bool
	Refused TrunkRefusal // TrunkGranted when OK
	// Wait, for TrunkNoToken, is how long until a token is free: the caller
	// sleeps exactly that long (another daemon may take it first; then the
	// next answer has a new Wait). For TrunkNoChannel it is how long until
	// the oldest lease expires, the latest a slot comes back when nobody
	// releases one; a Release frees one sooner.
	Wait time.Duration
	// At is Redis's clock when the token's turn is: when the script
	// decided, or for a token the gate reserved ahead, that plus Delay.
	// The same clock for every daemon, which is what the rate is measured
	// on.
	At time.Time
	// Delay is how far ahead of the decision a reserved token's turn was
	// (TrunkGate waits for it before returning); 0 when it was free.
	Delay time.Duration
	// Channels is the number of leases held on the trunk after the decision.
	Channels int
	// Held says the lease was already held, so nothing was taken: a retried
	// Acquire whose first reply was lost.
	Held bool
}

// TrunkUsage is what the monitor and the metrics show of a trunk.
type TrunkUsage struct {
	At         time.Time // Redis's clock
	Channels   int       // leases live now
	LastSecond int       // grants in the last complete second of Redis's clock
	ThisSecond int       // grants so far in the current second
	// Ahead is how far beyond now the token schedule is booked: 0 when a
	// token is free, about Wait of the next refusal otherwise.
	Ahead time.Duration
	// Counters since the trunk's stats hash was created.
	Granted, NoToken, NoChannel int64
}

// TrunkLimiter is one trunk's limiter in Redis, shared by every daemon of
// every host that names the trunk: at most CPS Originates per second spread
// evenly (GCRA on Redis's clock) and at most MaxChannels calls in progress,
// each holding a lease that expires unless renewed. One Acquire is one
// round trip. It keeps no state of its own; it is safe for concurrent use.
//
// Every daemon must be given the same limits: the script uses the caller's.
//
// What the bounds rest on: one Redis clock. n grants in any window of W
// seconds are at most ⌊burst + W·cps⌋ — at a whole cps, for W = 0.97 s, the
// contract's cps + burst − 1 (a fractional cps keeps the 1/cps spacing, but
// e.g. 1.5 cps allows 2 in 0.97 s). A step back of Redis's clock only delays
// grants; a step forward allows at most burst at once. A failover to a
// replica that missed the last writes, or whose clock differs, can grant a
// few tokens early and forget leases taken just before it: a moment over
// the limits, then the schedule holds again.
type TrunkLimiter struct {
	rdb      redis.UniversalClient
	keys     TrunkKeys
	lim      TrunkLimits
	interval int64 // µs between two Originates, rounded up (never above CPS)
	tau      int64 // µs of tolerance: (burst − 1) × interval
	leaseTTL time.Duration
	// steps rides acquires and releases in pipelines shared with the other
	// calls asking at the same moment (batch.go): under load a token costs
	// a fraction of a round trip, as a call's own steps do.
	steps *batcher
}

// NewTrunkLimiter builds the limiter of trunk name under prefix.
func NewTrunkLimiter(rdb redis.UniversalClient, prefix, name string, lim TrunkLimits) (*TrunkLimiter, error) {
	if name == "" {
		return nil, errors.New("trunk limiter: empty trunk name")
	}
	if !(lim.CPS >= 0) || math.IsInf(lim.CPS, 0) || lim.MaxChannels < 0 {
		return nil, fmt.Errorf("trunk limiter %s: bad limits %+v", name, lim)
	}
	l := &TrunkLimiter{rdb: rdb, keys: NewTrunkKeys(prefix, name), lim: lim, leaseTTL: DefaultTrunkLeaseTTL,
		steps: &batcher{rdb: rdb}}
	if lim.CPS > 0 {
		l.interval = int64(math.Ceil(1e6 / lim.CPS))
		l.tau = int64(max(lim.Burst, 1)-1) * l.interval
	}
	return l, nil
}

// SetLeaseTTL changes how long a lease lives past its last renewal (tests;
// a daemon keeps DefaultTrunkLeaseTTL). Renew at most every TTL/3.
func (l *TrunkLimiter) SetLeaseTTL(d time.Duration) {
	if d >= time.Millisecond {
		l.leaseTTL = d
	}
}

// LeaseTTL is how long a lease lives past its last renewal.
func (l *TrunkLimiter) LeaseTTL() time.Duration { return l.leaseTTL }

// Keys are the trunk's keys.
func (l *TrunkLimiter) Keys() TrunkKeys { return l.keys }

// Limits are the limits the limiter was built with.
func (l *TrunkLimiter) Limits() TrunkLimits { return l.lim }

// Acquire takes, in one script, a channel slot held by lease and a token
// for one Originate; or neither, saying why and how long to wait. Call it
// right before writing the Originate, so the spacing holds at the AMI wire.
// The lease id names the call on the trunk, the same from every daemon
// ("<cell>:<call id>" is unique, and lets a daemon that adopts the call
// keep its slot, see Adopt). A retried Acquire with a lease already held is
// recognised and takes nothing more, so another attempt of the same call
// (after Asterisk refused the action) releases the lease first. lease may
// be empty only when the trunk has no channel cap (then no slot is kept).
func (l *TrunkLimiter) Acquire(ctx context.Context, lease string) (TrunkGrant, error) {
	return l.acquire(ctx, lease, "", 0)
}

// AcquireUnlessOpen is Acquire that first looks at the breaker stored at
// breakerKey (same trunk, so same slot): when it is open or half-open it
// takes nothing and answers Refused TrunkBreaker.
func (l *TrunkLimiter) AcquireUnlessOpen(ctx context.Context, lease, breakerKey string) (TrunkGrant, error) {
	return l.acquire(ctx, lease, breakerKey, 0)
}

// acquire takes a slot and a token; with ahead > 0 a token whose turn comes
// within ahead is reserved (granted with its Delay) instead of refused.
func (l *TrunkLimiter) acquire(ctx context.Context, lease, breakerKey string, ahead time.Duration) (TrunkGrant, error) {
	gs, err := l.acquireN(ctx, []string{lease}, breakerKey, ahead)
	if err != nil {
		return TrunkGrant{}, err
	}
	return gs[0], nil
}

// acquireN is acquire for several leases in order, in one script: the
// grants of the leading leases the trunk can serve now, then the refusal
// (for want of a token or a channel) that stopped it, if one did; the
// leases after a refusal were not asked and took nothing. A breaker not
// closed refuses them all (but held ones). It returns at least one answer.
func (l *TrunkLimiter) acquireN(ctx context.Context, leases []string, breakerKey string, ahead time.Duration) ([]TrunkGrant, error) {
	if len(leases) == 0 {
		return nil, fmt.Errorf("trunk %s: acquire: no lease", l.keys.Name())
	}
	args := make([]any, 0, 5+len(leases))
	args = append(args, l.interval, l.tau, l.lim.MaxChannels, l.leaseTTL.Microseconds(), ahead.Microseconds())
	for _, lease := range leases {
		if lease == "" && l.lim.MaxChannels > 0 {
			return nil, fmt.Errorf("trunk %s: acquire: a lease id is required with max_channels", l.keys.Name())
		}
		args = append(args, lease)
	}
	k := l.keys
	keys := []string{k.TAT(), k.Leases(), k.Stats()}
	if breakerKey != "" {
		keys = append(keys, breakerKey)
	}
	v, err := l.steps.run(ctx, trunkAcquireScript, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("trunk %s: acquire: %w", k.Name(), err)
	}
	n := (len(v) - 2) / 3
	if len(v) < 5 || (len(v)-2)%3 != 0 || n > len(leases) {
		return nil, fmt.Errorf("trunk %s: acquire: unexpected reply %v", k.Name(), v)
	}
	at, err := trunkTime(v[0], v[1])
	if err != nil {
		return nil, fmt.Errorf("trunk %s: acquire: %w", k.Name(), err)
	}
	gs := make([]TrunkGrant, n)
	for i := range gs {
		code, wait, chans := trunkInt(v[2+3*i]), trunkInt(v[3+3*i]), trunkInt(v[4+3*i])
		g := TrunkGrant{At: at, Channels: int(chans)}
		switch code {
		case 1:
			g.OK, g.Delay = true, time.Duration(max(wait, 0))*time.Microsecond
		case 4:
			g.OK, g.Held = true, true
		case 2:
			g.Refused, g.Wait = TrunkNoToken, time.Duration(max(wait, 0))*time.Microsecond
		case 3:
			g.Refused, g.Wait = TrunkNoChannel, time.Duration(max(wait, 0))*time.Microsecond
		case 5:
			g.Refused = TrunkBreaker
		default:
			return nil, fmt.Errorf("trunk %s: acquire: unexpected code %d", k.Name(), code)
		}
		gs[i] = g
	}
	return gs, nil
}

// Release gives back the slots of leases: call it when the call's result is
// pushed (or its Originate certainly started no call). Releasing a lease
// that is not held (expired, or released already) does nothing.
func (l *TrunkLimiter) Release(ctx context.Context, leases ...string) error {
	if len(leases) == 0 {
		return nil
	}
	members := make([]any, len(leases))
	for i, s := range leases {
		members[i] = s
	}
	if err := l.rdb.ZRem(ctx, l.keys.Leases(), members...).Err(); err != nil {
		return fmt.Errorf("trunk %s: release: %w", l.keys.Name(), err)
	}
	return nil
}

// Renew extends the leases of the calls still in progress to LeaseTTL from
// now; the heartbeat calls it with every lease the daemon holds. It returns
// the leases that were no longer held (expired after the daemon was cut off
// from Redis for longer than the TTL, or released meanwhile): they are not
// taken back, so the cap may be exceeded by those calls until they end.
func (l *TrunkLimiter) Renew(ctx context.Context, leases []string) (lost []string, err error) {
	for start := 0; start < len(leases); start += renewBatch {
		batch := leases[start:min(start+renewBatch, len(leases))]
		args := make([]any, 0, len(batch)+1)
		args = append(args, l.leaseTTL.Microseconds())
		for _, s := range batch {
			args = append(args, s)
		}
		v, err := trunkRenewScript.Run(ctx, l.rdb, []string{l.keys.Leases()}, args...).StringSlice()
		if err != nil {
			return lost, fmt.Errorf("trunk %s: renew: %w", l.keys.Name(), err)
		}
		lost = append(lost, v...)
	}
	return lost, nil
}

// Adopt holds leases for LeaseTTL from now whether they are held or not, and
// whatever the cap: for the live calls of a dead daemon that recovery adopts
// (contract: an adopted call keeps its trunk channel slot). Their leases
// may have expired before the adoption (12-15 s after the death; recovery
// has 15 s), and the calls are on the carrier either way, so they count
// again even when that puts the trunk over its cap for a while. Then Renew
// them with the daemon's other leases.
func (l *TrunkLimiter) Adopt(ctx context.Context, leases []string) error {
	for start := 0; start < len(leases); start += renewBatch {
		batch := leases[start:min(start+renewBatch, len(leases))]
		args := make([]any, 0, len(batch)+1)
		args = append(args, l.leaseTTL.Microseconds())
		for _, s := range batch {
			args = append(args, s)
		}
		if err := trunkAdoptScript.Run(ctx, l.rdb, []string{l.keys.Leases()}, args...).Err(); err != nil {
			return fmt.Errorf("trunk %s: adopt: %w", l.keys.Name(), err)
		}
	}
	return nil
}

// Usage reads the trunk's rate and channels in use.
func (l *TrunkLimiter) Usage(ctx context.Context) (TrunkUsage, error) {
	k := l.keys
	v, err := trunkUsageScript.Run(ctx, l.rdb, []string{k.TAT(), k.Leases(), k.Stats()}).Slice()
	if err != nil {
		return TrunkUsage{}, fmt.Errorf("trunk %s: usage: %w", k.Name(), err)
	}
	if len(v) != 9 {
		return TrunkUsage{}, fmt.Errorf("trunk %s: usage: unexpected reply %v", k.Name(), v)
	}
	at, err := trunkTime(v[0], v[1])
	if err != nil {
		return TrunkUsage{}, fmt.Errorf("trunk %s: usage: %w", k.Name(), err)
	}
	return TrunkUsage{
		At:         at,
		Channels:   int(trunkInt(v[2])),
		LastSecond: int(trunkInt(v[3])),
		ThisSecond: int(trunkInt(v[4])),
		Granted:    trunkInt(v[5]),
		NoToken:    trunkInt(v[6]),
		NoChannel:  trunkInt(v[7]),
		Ahead:      time.Duration(trunkInt(v[8])) * time.Microsecond,
	}, nil
}

// trunkTime turns TIME's two strings into a time.
func trunkTime(sec, usec any) (time.Time, error) {
	s, err1 := strconv.ParseInt(fmt.Sprint(sec), 10, 64)
	u, err2 := strconv.ParseInt(fmt.Sprint(usec), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return time.Time{}, fmt.Errorf("redis TIME %v %v: %w", sec, usec, err)
	}
	return time.Unix(s, u*1000), nil
}

// trunkInt reads an integer reply (a Lua number comes back as an integer).
func trunkInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}
