package config

import (
	"fmt"
	"strings"
	"time"
)

// Trunk is a carrier path several cells and hosts may share (contract
// section 7). Its limits hold across every daemon that names it, through
// Redis; Channel replaces originate.channel for the cells on the trunk.
type Trunk struct {
	Name    string `yaml:"name"`
	Channel string `yaml:"channel"`
	// CPS is Originates per second on the trunk, spread evenly; 0 = no
	// limit. A float: budget carriers sell 0.5 or 1.5 calls per second.
	CPS float64 `yaml:"cps"`
	// Burst is how many Originates may go closer together than 1/CPS.
	Burst int `yaml:"burst"`
	// MaxChannels is the calls of the trunk in progress at once across
	// every daemon; 0 = no limit.
	MaxChannels int     `yaml:"max_channels"`
	Breaker     Breaker `yaml:"breaker"`
}

// Breaker stops a host from burning the list on a dead trunk.
type Breaker struct {
	Failures int      `yaml:"failures"` // consecutive trunk failures that open it
	Cooldown Duration `yaml:"cooldown"` // how long it stays open before one probe
}

// Trunk defaults and bounds. The bounds keep a typo from becoming a limit
// nobody meant: 1e5 CPS is beyond any carrier, 0.01 is one call per 100 s.
const (
	DefaultTrunkBurst      = 1
	DefaultBreakerFailures = 10
	DefaultBreakerCooldown = 30 * time.Second

	minTrunkCPS     = 0.01
	maxTrunkCPS     = 100000
	maxTrunkBurst   = 10000
	maxTrunkChans   = 100000
	maxBreakerFails = 10000
	minCooldown     = time.Second
	maxCooldown     = time.Hour
)

// UnmarshalYAML fills the defaults under what the file says. It uses the
// callback form on purpose: yaml.v3 runs it on the parent decoder, which
// keeps KnownFields (a misspelt trunk field stays an error), whereas
// Node.Decode would start a lenient decoder.
func (t *Trunk) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Trunk // without this method, or it would recurse
	p := plain{Burst: DefaultTrunkBurst, Breaker: Breaker{Failures: DefaultBreakerFailures, Cooldown: Duration(DefaultBreakerCooldown)}}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*t = Trunk(p)
	return nil
}

// Trunk returns the trunk called name.
func (s *Settings) Trunk(name string) (Trunk, bool) {
	for _, t := range s.Trunks {
		if t.Name == name {
			return t, true
		}
	}
	return Trunk{}, false
}

// TrunkFor returns cell q's trunk; false when the cell dials without one
// (as before trunks existed: no shared limits, originate.channel).
func (s *Settings) TrunkFor(q Queue) (Trunk, bool) {
	if q.Trunk == "" {
		return Trunk{}, false
	}
	return s.Trunk(q.Trunk)
}

// ChannelFor is the channel template cell q dials with: its trunk's, else
// originate.channel.
func (s *Settings) ChannelFor(q Queue) string {
	if t, ok := s.TrunkFor(q); ok {
		return t.Channel
	}
	return s.Originate.Channel
}

func validateTrunks(trunks []Trunk) error {
	seen := map[string]bool{}
	for i, t := range trunks {
		f := fmt.Sprintf("trunks[%d]", i)
		if t.Name == "" {
			return fieldErr(f+".name", "is required")
		}
		if !validName(t.Name) {
			return fieldErr(f+".name", "may only contain A-Z a-z 0-9 . _ - (at most 64), got %q", t.Name)
		}
		if seen[t.Name] {
			return fieldErr(f+".name", "trunk %q is listed twice", t.Name)
		}
		seen[t.Name] = true
		if err := checkChannel(f+".channel", t.Channel); err != nil {
			return err
		}
		// !(x >= min) also refuses NaN, which YAML spells .nan.
		if t.CPS != 0 && !(t.CPS >= minTrunkCPS && t.CPS <= maxTrunkCPS) {
			return fieldErr(f+".cps", "must be 0 (no limit) or %g-%d Originates per second, got %g", minTrunkCPS, maxTrunkCPS, t.CPS)
		}
		if t.Burst < 1 || t.Burst > maxTrunkBurst {
			return fieldErr(f+".burst", "must be 1-%d, got %d", maxTrunkBurst, t.Burst)
		}
		if t.MaxChannels < 0 || t.MaxChannels > maxTrunkChans {
			return fieldErr(f+".max_channels", "must be 0 (no limit) or 1-%d, got %d", maxTrunkChans, t.MaxChannels)
		}
		if t.Breaker.Failures < 1 || t.Breaker.Failures > maxBreakerFails {
			return fieldErr(f+".breaker.failures", "must be 1-%d, got %d", maxBreakerFails, t.Breaker.Failures)
		}
		if err := checkDuration(f+".breaker.cooldown", t.Breaker.Cooldown, minCooldown, maxCooldown); err != nil {
			return err
		}
	}
	return nil
}

// checkQueueTrunk checks that queues[i].trunk, when set, names a trunk.
func checkQueueTrunk(field string, q Queue, trunks []Trunk) error {
	if q.Trunk == "" {
		return nil
	}
	names := make([]string, 0, len(trunks))
	for _, t := range trunks {
		if t.Name == q.Trunk {
			return nil
		}
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return fieldErr(field, "names trunk %q, but trunks lists none", q.Trunk)
	}
	return fieldErr(field, "names trunk %q, which is not in trunks (%s)", q.Trunk, strings.Join(names, ", "))
}
