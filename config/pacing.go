package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/multcall/dialbridge/monitor/acd"
)

// PacingMode is queues[].pacing.mode (contract section 6). Its values are
// the strings of bridge.PacingMode, so cmd converts with a plain cast;
// config does not import bridge (the domain must not depend on the file
// format, and cmd already wires the two).
type PacingMode string

// The pacing modes of contract section 6.
const (
	PacingNone        PacingMode = "none"
	PacingProgressive PacingMode = "progressive"
	PacingRatio       PacingMode = "ratio"
	PacingPredictive  PacingMode = "predictive"
)

// Pacing is queues[].pacing: how many of the cell's threads to use, from
// what the call queue manager knows of the operators.
type Pacing struct {
	Mode PacingMode `yaml:"mode"`
	// Ratio is calls dialing per available operator in ratio mode; 0
	// outside it means unset.
	Ratio float64 `yaml:"ratio"`
	// MaxAbandon is the abandon-rate cap, abandoned ÷ answered.
	MaxAbandon Fraction `yaml:"max_abandon"`
	// AbandonAfter is how long an answered call may wait for an operator
	// before it counts as abandoned (the regulators' 2 s).
	AbandonAfter Duration `yaml:"abandon_after"`
	// MaxLevel is the most calls dialing per logged-in operator, whatever
	// the mode or the controller says.
	MaxLevel float64 `yaml:"max_level"`
	// Window is the sliding window of the abandon rate; the calendar day
	// in Timezone is measured besides.
	Window Duration `yaml:"window"`
	// Timezone is the IANA name whose midnight starts the day of the daily
	// abandon rate (regulators count per local day).
	Timezone string `yaml:"timezone"`

	loc *time.Location // Timezone, loaded by Validate
}

// Pacing defaults and bounds (contract section 6). The upper bounds keep a
// typo from becoming a setting: ratio 250 was meant as 2.50, and a window
// past a day is the day's measure already.
const (
	DefaultMaxAbandon   = 0.03
	DefaultAbandonAfter = 2 * time.Second
	DefaultMaxLevel     = 3.0
	DefaultWindow       = 30 * time.Minute
	DefaultTimezone     = "UTC"

	maxPacingRatio  = 100
	maxPacingLevel  = 100
	minAbandonAfter = 100 * time.Millisecond
	maxAbandonAfter = time.Minute
	minPacingWindow = time.Minute
	maxPacingWindow = 24 * time.Hour
)

// DefaultPacing is the pacing of a cell that says nothing about it: off.
func DefaultPacing() Pacing {
	return Pacing{
		Mode:         PacingNone,
		MaxAbandon:   DefaultMaxAbandon,
		AbandonAfter: Duration(DefaultAbandonAfter),
		MaxLevel:     DefaultMaxLevel,
		Window:       Duration(DefaultWindow),
		Timezone:     DefaultTimezone,
	}
}

// Paced reports whether the pacer decides the budget (any mode but none).
func (p Pacing) Paced() bool { return p.Mode != PacingNone && p.Mode != "" }

// Location is the time zone of the daily abandon rate. Validate loads it
// once; a Pacing that was never validated loads it here, UTC if it cannot.
func (p Pacing) Location() *time.Location {
	if p.loc != nil {
		return p.loc
	}
	if loc, err := loadZone(p.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

// loadZone refuses "Local": the day would start at a different hour on a
// host whose clock is set differently, and the pacer's lease may move
// between hosts of the cell.
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, fmt.Errorf("Local is refused")
	}
	return time.LoadLocation(name)
}

// UnmarshalYAML fills the pacing defaults before the file is decoded over
// them: a field the file leaves out takes its default, while a field the
// file sets to 0 stays 0 and fails validation, as a typo should. The
// callback form keeps the parent decoder's KnownFields (see Trunk).
func (q *Queue) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Queue // without this method, or it would recurse
	p := plain{Pacing: DefaultPacing()}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*q = Queue(p)
	return nil
}

// OperatorsFor is cell q's operators: its own list, else acd.operators.
func (s *Settings) OperatorsFor(q Queue) []Operator {
	if q.Operators != nil {
		return q.Operators
	}
	return s.ACD.Operators
}

// validate checks the pacing of the queue at field f and loads its zone.
// A zero Pacing is a Queue built in Go, not read from a file: it gets the
// defaults.
func (p *Pacing) validate(f string) error {
	if *p == (Pacing{}) {
		*p = DefaultPacing()
	}
	switch p.Mode {
	case PacingNone, PacingProgressive, PacingRatio, PacingPredictive:
	default:
		return fieldErr(f+".mode", "must be none, progressive, ratio or predictive, got %q", p.Mode)
	}
	// !(x > 0) also refuses NaN, which YAML spells .nan.
	if p.Ratio != 0 || p.Mode == PacingRatio {
		if !(p.Ratio > 0 && p.Ratio <= maxPacingRatio) {
			if p.Mode == PacingRatio && p.Ratio == 0 {
				return fieldErr(f+".ratio", "is required with mode ratio: calls dialing per available operator, > 0, e.g. 2.5")
			}
			return fieldErr(f+".ratio", "must be > 0 and at most %d calls dialing per available operator, got %g", maxPacingRatio, p.Ratio)
		}
	}
	if m := float64(p.MaxAbandon); !(m > 0 && m < 1) {
		// A bare whole number is most likely a percentage without its sign.
		hint := ""
		if m >= 1 && m < 100 && m == math.Trunc(m) {
			hint = fmt.Sprintf("; if you meant %g%%, write %g%% or %g", m, m, m/100)
		}
		return fieldErr(f+".max_abandon", "must be a rate between 0%% and 100%% exclusive, like 3%% or 0.03, got %g (%s)%s", m, p.MaxAbandon, hint)
	}
	if err := checkDuration(f+".abandon_after", p.AbandonAfter, minAbandonAfter, maxAbandonAfter); err != nil {
		return err
	}
	if !(p.MaxLevel >= 1 && p.MaxLevel <= maxPacingLevel) {
		return fieldErr(f+".max_level", "must be 1-%d calls dialing per logged-in operator, got %g", maxPacingLevel, p.MaxLevel)
	}
	if err := checkDuration(f+".window", p.Window, minPacingWindow, maxPacingWindow); err != nil {
		return err
	}
	if strings.TrimSpace(p.Timezone) != p.Timezone {
		return fieldErr(f+".timezone", "may not start or end with spaces, got %q", p.Timezone)
	}
	if p.Timezone == "Local" {
		return fieldErr(f+".timezone", "Local is the host's zone, which may differ between the hosts of a cell; name the zone, e.g. America/Sao_Paulo")
	}
	loc, err := loadZone(p.Timezone)
	if err != nil {
		return fieldErr(f+".timezone", "is not a time zone this host knows (an IANA name like UTC or Europe/London; is tzdata installed?): %s", oneLine(err.Error()))
	}
	p.loc = loc
	return nil
}

// validateOperators checks an operator list (acd.operators or a cell's)
// and fills an empty tier with "operator".
func validateOperators(field string, ops []Operator) error {
	if len(ops) == 0 {
		return fieldErr(field, "needs at least one operator")
	}
	seen := map[string]bool{}
	for i, op := range ops {
		f := fmt.Sprintf("%s[%d]", field, i)
		// The queue manager's own rule, checked here so that a bad id is
		// named by its field when the settings load, not refused later by
		// a queue manager with no field to name.
		if !acd.ValidID(op.ID) {
			return fieldErr(f+".id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -, got %q", op.ID)
		}
		if seen[op.ID] {
			return fieldErr(f+".id", "operator %q is listed twice", op.ID)
		}
		seen[op.ID] = true
		if op.Tier == "" {
			ops[i].Tier = "operator"
			op.Tier = "operator"
		}
		ok := false
		for _, t := range Tiers {
			ok = ok || op.Tier == t
		}
		if !ok {
			return fieldErr(f+".tier", "must be operator, supervisor or director, got %q", op.Tier)
		}
	}
	return nil
}

// oneLine keeps an error from another package on the one line the daemon
// prints.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
