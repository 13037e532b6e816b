package main

import (
	"fmt"
	"math"
	"time"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/config"
)

// demoTrunk is the demo's carrier trunk: the cell dials through it, with a
// calls-per-second limit, a channel cap and a breaker, and the simulated
// Asterisk plays its carrier (limits, 503s, kill and revive).
type demoTrunk struct {
	cps      float64
	burst    int
	channels int
	cooldown time.Duration
}

// demoTrunkName is the trunk's name in the settings and the PJSIP endpoint
// the simulator's carrier model sits behind.
const demoTrunkName = "gw1"

func (t demoTrunk) on() bool { return t.cps > 0 || t.channels > 0 }

// settings is the trunk as trunks[] would say it.
func (t demoTrunk) settings() config.Trunk {
	return config.Trunk{
		Name: demoTrunkName, Channel: "PJSIP/{number}@" + demoTrunkName,
		CPS: t.cps, Burst: max(1, t.burst), MaxChannels: t.channels,
		Breaker: config.Breaker{Failures: config.DefaultBreakerFailures, Cooldown: config.Duration(t.cooldown)},
	}
}

// carrier is the carrier behind the trunk: it takes what the trunk's
// settings promise (cps + burst − 1 in any 0.97 s, max_channels at once)
// and answers 503 beyond, as a real carrier would.
func (t demoTrunk) carrier() amisim.Carrier {
	c := amisim.Carrier{MaxChannels: t.channels}
	if t.cps > 0 {
		c.CPS, c.Window = int(math.Floor(t.cps+float64(max(1, t.burst))-1+1e-9)), 970*time.Millisecond
		if c.CPS < 1 { // a fractional cps under 1: one call per 1/cps
			c.CPS, c.Window = 1, time.Duration(float64(time.Second)/t.cps)-30*time.Millisecond
		}
	}
	return c
}

// banner says the trunk and how to kill and revive it live.
func (t demoTrunk) banner(amiAddr string, tui bool) []string {
	s := t.settings()
	lines := []string{fmt.Sprintf("trunk %s: cps %g, burst %d, max_channels %d, breaker after %d failures, retried every %s (the carrier model: 503 beyond)",
		s.Name, s.CPS, s.Burst, s.MaxChannels, s.Breaker.Failures, t.cooldown)}
	if tui {
		lines = append(lines, fmt.Sprintf("kill the trunk live: type  amisim kill %s  (or  amisim kill %s nochannel), revive:  amisim revive %s,  status:  amisim carriers", s.Name, s.Name, s.Name))
	} else {
		lines = append(lines, fmt.Sprintf("kill the trunk live: any AMI client on %s, Action: Command, Command: amisim kill %s (revive: amisim revive %s)", amiAddr, s.Name, s.Name))
	}
	return lines
}

const demoTrunkHelp = `
The cell dials through trunk gw1 (--trunk-cps, --trunk-burst, --trunk-channels; --trunk-cps 0
--trunk-channels 0: no trunk), and the simulated Asterisk plays its carrier, answering 503 beyond
those limits. Kill the trunk live and watch its breaker open in the trunks pane, then revive it: in
the monitor's command line type "amisim kill gw1" (every call congestion), "amisim kill gw1
nochannel" (no channel at all), "amisim revive gw1" or "amisim carriers"; from outside, any AMI
client on the simulator's port: Action: Command, Command: amisim kill gw1.

`
