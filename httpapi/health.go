package httpapi

import (
	"context"
	"time"
)

// CellState is what the health check reads from the daemon's cell.
type CellState interface {
	InFlight() int
	Threads() int
	RedisUp() bool  // the cell's last Redis step succeeded
	Claiming() bool // taking commands: AMI and Redis up, not starting or stopping
}

// AMIState is what the health check reads from the AMI client.
type AMIState interface {
	Ready() bool
}

// Checker decides whether the daemon is healthy: Redis up (the cell's last
// step succeeded and a PING answers), AMI connected and logged in, and the
// cell claiming commands.
type Checker struct {
	Ping func(ctx context.Context) error // a Redis PING; nil: not checked
	// Writes reports the last write probe's error (the heartbeat), nil
	// when writes succeed; nil func: not checked. PING alone answers while
	// Redis refuses every write.
	Writes func() error
	// Trunk reports the breaker of the cell's trunk (state, and when a
	// call is next let through); nil without a trunk.
	Trunk func() (state string, retryAt time.Time)
	Cell  CellState
	AMI   AMIState
	// Pacing says, for a paced cell, why it dials nothing now (queue
	// manager not running, no operator logged in, …) or its budget; nil
	// for an unpaced cell. Dialing nothing is pacing, not a fault: the
	// status stays "ok".
	Pacing func() string
	// Hold says why the cell claims nothing though Redis and AMI are up
	// (replicas that do not acknowledge: redis.wait_replicas), "" when
	// nothing holds it back; nil: not checked.
	Hold func() string
	// PingTimeout bounds the PING; default 500 ms.
	PingTimeout time.Duration
}

// Report is the body of /healthz.
type Report struct {
	Status   string   `json:"status"` // "ok" or "down"
	Redis    string   `json:"redis"`  // "up" or "down: <why>"
	AMI      string   `json:"ami"`    // "up" or "down: <why>"
	Claiming bool     `json:"claiming"`
	Hold     string   `json:"hold,omitempty"` // why nothing is claimed, when something holds it back
	InFlight int      `json:"in_flight"`
	Threads  int      `json:"threads"`
	Reasons  []string `json:"reasons,omitempty"`
	Pacing   string   `json:"pacing,omitempty"` // paced cells: "dials nothing: <why>" or the budget
	// Trunk is the state of the host's breaker on the cell's trunk
	// ("closed", "open", "half_open"; absent without a trunk). An open
	// breaker is the trunk's trouble, not the daemon's: status stays ok.
	Trunk        string `json:"trunk,omitempty"`
	TrunkRetryAt string `json:"trunk_retry_at,omitempty"`

	RedisOK bool `json:"-"`
	AMIOK   bool `json:"-"`
}

// OK reports whether the daemon is healthy.
func (r Report) OK() bool { return r.Status == "ok" }

// Ready reports whether Redis and AMI are up (systemd readiness); the cell
// may still be recovering before its first claim.
func (r Report) Ready() bool { return r.RedisOK && r.AMIOK }

// Check probes the daemon's state now.
func (c *Checker) Check(ctx context.Context) Report {
	rep := Report{Redis: "up", AMI: "up", RedisOK: true, AMIOK: true}
	if c.Cell != nil {
		rep.Claiming = c.Cell.Claiming()
		rep.InFlight = c.Cell.InFlight()
		rep.Threads = c.Cell.Threads()
		if !c.Cell.RedisUp() {
			rep.RedisOK, rep.Redis = false, "down: the cell's last Redis step failed"
		}
	}
	if rep.RedisOK && c.Ping != nil {
		d := c.PingTimeout
		if d <= 0 {
			d = 500 * time.Millisecond
		}
		pctx, cancel := context.WithTimeout(ctx, d)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			rep.RedisOK, rep.Redis = false, "down: PING: "+err.Error()
		}
	}
	if rep.RedisOK && c.Writes != nil {
		if err := c.Writes(); err != nil {
			rep.RedisOK, rep.Redis = false, "down: writes refused: "+err.Error()
		}
	}
	if c.AMI != nil && !c.AMI.Ready() {
		rep.AMIOK, rep.AMI = false, "down: not connected or not logged in"
	}
	if !rep.RedisOK {
		rep.Reasons = append(rep.Reasons, "redis "+rep.Redis)
	}
	if !rep.AMIOK {
		rep.Reasons = append(rep.Reasons, "ami "+rep.AMI)
	}
	if c.Hold != nil {
		if rep.Hold = c.Hold(); rep.Hold != "" {
			rep.Claiming = false
			rep.Reasons = append(rep.Reasons, "not claiming: "+rep.Hold)
		}
	}
	if c.Cell != nil && !rep.Claiming && rep.RedisOK && rep.AMIOK && rep.Hold == "" {
		rep.Reasons = append(rep.Reasons, "cell not claiming (starting, recovering or stopping)")
	}
	if c.Pacing != nil {
		rep.Pacing = c.Pacing()
	}
	if c.Trunk != nil {
		st, at := c.Trunk()
		rep.Trunk = st
		if !at.IsZero() {
			rep.TrunkRetryAt = at.UTC().Format(time.RFC3339)
		}
	}
	rep.Status = "ok"
	if len(rep.Reasons) > 0 {
		rep.Status = "down"
	}
	return rep
}
