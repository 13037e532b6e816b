package callcenter

import (
	"math"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

// Policy names a dialing policy of the matrix.
type Policy string

// The policies compared (issue 15 part 6).
const (
	Predictive    Policy = "predictive"
	Progressive   Policy = "progressive"
	Ratio2        Policy = "ratio 2"
	ViciHardLimit Policy = "vici HARD_LIMIT"
	ViciAverage   Policy = "vici AVERAGE"
)

// Policies is every policy, predictive first.
var Policies = []Policy{Predictive, Progressive, Ratio2, ViciHardLimit, ViciAverage}

// pacer is called every simulation tick (0.5 s) and returns how many calls
// to start now; observe builds the observation only when it is needed.
type pacer interface {
	step(now float64, observe func() bridge.PacingObservation) int
}

func newPacer(p Policy, sc Scenario) pacer {
	s := bridge.PacingSettings{
		MaxLevel:     3.0,
		MaxAbandon:   0.03,
		AbandonAfter: 2 * time.Second,
		Window:       30 * time.Minute,
		Threads:      4 * sc.Operators,
	}
	switch p {
	case Predictive:
		s.Mode = bridge.PacingPredictive
	case Progressive:
		s.Mode = bridge.PacingProgressive
	case Ratio2:
		s.Mode, s.Ratio = bridge.PacingRatio, 2
	case ViciHardLimit:
		return &vicidial{hardLimit: true, level: 1}
	case ViciAverage:
		return &vicidial{level: 1}
	}
	return &daemonPacer{s: s}
}

// daemonPacer is the daemon's pacer, re-evaluated every second; calls start
// while dialing is under the budget.
type daemonPacer struct {
	s    bridge.PacingSettings
	st   bridge.PacerState
	next float64
}

func (d *daemonPacer) step(now float64, observe func() bridge.PacingObservation) int {
	if now < d.next {
		return 0
	}
	d.next = now + 1
	o := observe()
	var dec bridge.PacingDecision
	d.st, dec = bridge.Pace(d.s, d.st, o)
	return dec.Budget - o.Dialing
}

// vicidial is AST_VDauto_dial + AST_VDadapt as pacing-notes.md describes
// them: a 2.5 s dial loop (goal = round(level × agents), make = goal − live
// calls) and a 15 s adapter over the last 15 one-second samples, intensity 0,
// level in [1.0, 3.0], with the minute and daily drop guards. Drops are our
// 2 s abandons. Mapping to the shared observation: agents = READY + INCALL =
// every logged-in operator; live calls = every call not finished on the
// customer side (dialing, waiting, ringing an operator, or with one), which
// the observation gives as Dialing + Waiting + Ringing + Busy — so level 1.0
// is progressive, as in VICIdial.
type vicidial struct {
	hardLimit bool
	level     float64

	nextDial, nextSample, nextAdapt float64
	ready, waiting, agents          [15]float64
	samples                         int
	// the drop guard's last minute
	minute         []minuteMark
	lastAns, lastA int
}

type minuteMark struct {
	t             float64
	answered, abn int
}

func (v *vicidial) step(now float64, observe func() bridge.PacingObservation) int {
	var o bridge.PacingObservation
	seen := false
	get := func() bridge.PacingObservation {
		if !seen {
			o, seen = observe(), true
		}
		return o
	}
	if now >= v.nextSample {
		v.nextSample = now + 1
		ob := get()
		i := v.samples % 15
		v.ready[i] = float64(ob.Available)
		v.waiting[i] = float64(ob.Waiting)
		v.agents[i] = float64(ob.LoggedIn())
		v.samples++
		abn := int(math.Round(ob.AbandonRateDay * float64(ob.AnsweredDay)))
		v.minute = append(v.minute, minuteMark{now, ob.AnsweredDay, abn})
		for len(v.minute) > 1 && v.minute[0].t < now-60 {
			v.minute = v.minute[1:]
		}
	}
	if now >= v.nextAdapt && v.samples >= 15 {
		v.nextAdapt = now + 15
		v.adapt(get())
	}
	if now < v.nextDial {
		return 0
	}
	v.nextDial = now + 2.5
	ob := get()
	agents := ob.LoggedIn()
	goal := int(math.Round(v.level * float64(agents)))
	live := ob.Dialing + ob.Waiting + ob.Ringing + ob.Busy
	return goal - live
}

func (v *vicidial) adapt(o bridge.PacingObservation) {
	var r, w, a float64
	for i := range 15 {
		r += v.ready[i]
		w += v.waiting[i]
		a += v.agents[i]
	}
	r, w, a = r/15, w/15, a/15
	if a > 0 {
		pct := (r - w) / a * 100 // intensity 0: step = pct
		v.level *= 1 + pct/100
	}
	v.level = min(max(v.level, 1.0), 3.0)
	// drop guard, last minute: > 20 calls with > 50 % drops → halve
	first := v.minute[0]
	lastAns := o.AnsweredDay - first.answered
	lastAbn := int(math.Round(o.AbandonRateDay*float64(o.AnsweredDay))) - first.abn
	if lastAns > 20 && float64(lastAbn) > 0.5*float64(lastAns) {
		v.level = max(v.level/2, 1.0)
	}
	// daily guard: drops ÷ answered > 3 % after 50 calls
	if o.AnsweredDay >= 50 && o.AbandonRateDay > 0.03 {
		if v.hardLimit {
			v.level = 1.0
		} else {
			v.level = max(v.level/2, 1.0)
		}
	}
}
