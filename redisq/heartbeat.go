package redisq

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/internal/proc"
	"github.com/multcall/dialbridge/internal/retry"
)

// Heartbeat defaults.
const (
	DefaultHeartbeatTTL   = 10 * time.Second
	DefaultHeartbeatEvery = 3 * time.Second
)

// HeartbeatInfo is what an instance reports about itself. Host, PID and
// StartedAt default to the machine's host name, the process id and the
// Heartbeat's creation time when left zero.
type HeartbeatInfo struct {
	Host      string
	PID       int
	Version   string
	Threads   int
	InFlight  int
	StartedAt time.Time
	// AMI is the PBX the instance dials through (ami.host:port), for
	// people and the monitor; each call hash records it too ("pbx"), since
	// a dead instance's heartbeat is gone when its calls are adopted.
	AMI string
	// Extra are more field, value pairs (the trunk breaker's state): what
	// another subsystem wants operators and other daemons to see.
	Extra []string
}

// Heartbeat keeps P:{C}:instance:<instance> alive: a hash with host, pid,
// version, threads, in_flight, started_at, beat_at (plus cell and instance)
// and a TTL, rewritten every period. When the process dies the key expires
// within the TTL, which is how other instances and the monitor tell live
// instances from dead ones. On Linux the hash also names the process
// exactly (pstart, boot_id, pid_ns: see internal/proc), so that a daemon
// restarted on the same machine can tell at once that its predecessor is
// gone, without waiting for the TTL (AdoptOrphans). Each beat also adds the instance to the cell's
// instance set (Keys.InstanceSet), so the instance's claimed list can be
// found without scanning the keyspace: beat once (Run does at once) before
// the first ClaimNext.
type Heartbeat struct {
	rdb      redis.UniversalClient
	keys     Keys
	instance string
	key      string
	info     func() HeartbeatInfo
	ttl      time.Duration
	every    time.Duration
	started  time.Time
	host     string
	self     proc.Identity
	log      zerolog.Logger
	health   *retry.Health
	// lastRound is when Run last went round (unix ns), beat written or
	// not: the systemd watchdog is fed only while it moves, because a
	// heartbeat stuck while the claim loop goes on would let other
	// daemons recover this one's live calls.
	lastRound atomic.Int64
}

// NewHeartbeat builds the heartbeat of instance. info is called at every
// beat (it may be nil); ttl and every default to DefaultHeartbeatTTL and
// DefaultHeartbeatEvery when not positive, and every is kept below ttl.
func NewHeartbeat(rdb redis.UniversalClient, keys Keys, instance string, info func() HeartbeatInfo, ttl, every time.Duration) *Heartbeat {
	if ttl <= 0 {
		ttl = DefaultHeartbeatTTL
	}
	if every <= 0 {
		every = DefaultHeartbeatEvery
	}
	if every >= ttl {
		every = ttl / 3
	}
	host, _ := os.Hostname()
	h := &Heartbeat{
		rdb: rdb, keys: keys, instance: instance, key: keys.Instance(instance),
		info: info, ttl: ttl, every: every, started: time.Now(), host: host,
		self: proc.Self(), log: zerolog.Nop(),
	}
	h.health = retry.NewHealth("redis", h.log)
	h.lastRound.Store(time.Now().UnixNano())
	return h
}

// LastRound is when the heartbeat last went round (written, or failed to
// write: an outage is not a hang).
func (h *Heartbeat) LastRound() time.Time { return time.Unix(0, h.lastRound.Load()) }

// SetLogger sets where the heartbeat logs Redis outages (default: nowhere).
// Call it before Run.
func (h *Heartbeat) SetLogger(log zerolog.Logger) {
	h.log = log.With().Str("component", "heartbeat").Logger()
	h.health = retry.NewHealth("redis", h.log)
}

// WriteErr is the error of the last beat, nil when it was written. A beat
// is a write every few seconds, so it doubles as the daemon's write probe:
// a Redis that answers PING but refuses writes (OOM under noeviction, a
// replica after a failover, a read-only ACL) shows here.
func (h *Heartbeat) WriteErr() error { return h.health.Err() }

// Key is the heartbeat's key.
func (h *Heartbeat) Key() string { return h.key }

// Beat writes the heartbeat once: HSET + PEXPIRE + SADD to the instance
// set in one MULTI, so the key never exists without its TTL.
func (h *Heartbeat) Beat(ctx context.Context) error {
	var in HeartbeatInfo
	if h.info != nil {
		in = h.info()
	}
	if in.Host == "" {
		in.Host = h.host
	}
	if in.PID == 0 {
		in.PID = os.Getpid()
	}
	if in.StartedAt.IsZero() {
		in.StartedAt = h.started
	}
	fields := []any{
		"instance", h.instance,
		"cell", h.keys.Cell(),
		"host", in.Host,
		"pid", in.PID,
		"version", in.Version,
		"threads", in.Threads,
		"in_flight", in.InFlight,
		"started_at", bridge.FormatTime(in.StartedAt),
		"beat_at", bridge.FormatTime(time.Now()),
		"ami", in.AMI,
	}
	if in.PID == h.self.PID && h.self.Complete() {
		fields = append(fields, "pstart", h.self.Start, "boot_id", h.self.Boot, "pid_ns", h.self.PidNS)
	}
	for i := 0; i+1 < len(in.Extra); i += 2 {
		fields = append(fields, in.Extra[i], in.Extra[i+1])
	}
	_, err := h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, h.key, fields...)
		p.PExpire(ctx, h.key, h.ttl)
		p.SAdd(ctx, h.keys.InstanceSet(), h.instance)
		return nil
	})
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", h.key, err)
	}
	return nil
}

// Run beats at once and then every period until ctx ends; it returns nil.
// Failures are logged once per outage and retried at the next beat.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		if err := h.Beat(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.health.Down(err)
		} else {
			h.health.Up()
		}
		h.lastRound.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Delete removes the heartbeat (clean exit): the instance is gone at once
// instead of after the TTL. It leaves the instance set too, unless commands
// are still in its claimed list (left for recovery).
func (h *Heartbeat) Delete(ctx context.Context) error {
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, h.key)
		pruneScript.Run(ctx, p, pruneKeys(h.keys, h.instance), h.instance)
		return nil
	})
	if isNoScript(err) {
		// Pipelined scripts get no EVAL fallback: run it alone.
		err = pruneScript.Run(ctx, h.rdb, pruneKeys(h.keys, h.instance), h.instance).Err()
	}
	if err != nil {
		return fmt.Errorf("delete heartbeat %s: %w", h.key, err)
	}
	return nil
}

func pruneKeys(k Keys, inst string) []string {
	return []string{k.InstanceSet(), k.Instance(inst), k.Claimed(inst)}
}

// InstanceInfo is one live instance of a cell, read from its heartbeat.
type InstanceInfo struct {
	Instance  string
	Host      string
	PID       int
	Version   string
	Threads   int
	InFlight  int
	StartedAt time.Time
	BeatAt    time.Time
	TTL       time.Duration // time left before the heartbeat expires
	Fields    map[string]string
}

// Instances lists the live instances of a cell (those whose heartbeat has
// not expired), sorted by name: SMEMBERS of the instance set, then one
// pipeline. Members left with neither heartbeat nor claimed commands are
// pruned from the set on the way.
func Instances(ctx context.Context, rdb redis.UniversalClient, k Keys) ([]InstanceInfo, error) {
	names, err := RegisteredInstances(ctx, rdb, k)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	all := make([]*redis.MapStringStringCmd, len(names))
	ttls := make([]*redis.DurationCmd, len(names))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			all[i] = p.HGetAll(ctx, k.Instance(name))
			ttls[i] = p.PTTL(ctx, k.Instance(name))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("instances of cell %s: %w", k.Cell(), err)
	}
	out := make([]InstanceInfo, 0, len(names))
	for i, name := range names {
		f := all[i].Val()
		if len(f) == 0 {
			// Dead or gone: forget it unless it left commands to recover.
			// Best effort: the next reader tries again.
			_ = pruneScript.Run(ctx, rdb, pruneKeys(k, name), name).Err()
			continue
		}
		in := InstanceInfo{
			Instance: name,
			Host:     f["host"],
			Version:  f["version"],
			TTL:      ttls[i].Val(),
			Fields:   f,
		}
		in.PID, _ = strconv.Atoi(f["pid"])
		in.Threads, _ = strconv.Atoi(f["threads"])
		in.InFlight, _ = strconv.Atoi(f["in_flight"])
		in.StartedAt, _ = time.Parse(bridge.TimeFormat, f["started_at"])
		in.BeatAt, _ = time.Parse(bridge.TimeFormat, f["beat_at"])
		out = append(out, in)
	}
	return out, nil
}

// RegisteredInstances lists, sorted, every instance in the cell's instance
// set: the live ones and the dead ones that may have left claimed commands
// (what crash recovery looks at).
func RegisteredInstances(ctx context.Context, rdb redis.UniversalClient, k Keys) ([]string, error) {
	names, err := rdb.SMembers(ctx, k.InstanceSet()).Result()
	if err != nil {
		return nil, fmt.Errorf("instances of cell %s: %w", k.Cell(), err)
	}
	sort.Strings(names)
	return names, nil
}

// Instances lists the live instances of the heartbeat's cell.
func (h *Heartbeat) Instances(ctx context.Context) ([]InstanceInfo, error) {
	return Instances(ctx, h.rdb, h.keys)
}
