package dash

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// The trunks pane (issue 14): per trunk of the settings, the rate used
// against its cps, the channels in use against max_channels, and the
// breaker of every host that dials it, with when it lets a call through
// again. The limiter and the breakers are read with their own scripts
// (redisq.TrunkLimiter.Usage, redisq.BreakerStore.State), which write
// nothing: one round trip per trunk and one per host on it, on top of the
// cells' pipelines.

// TrunkSpec is a trunk as the settings give it (config.Trunk without the
// settings types) and the cells that dial through it.
type TrunkSpec struct {
	Name        string
	CPS         float64
	Burst       int
	MaxChannels int
	Breaker     bridge.BreakerConfig
	Cells       []string
}

// TrunkBreaker is the breaker of one host on a trunk.
type TrunkBreaker struct {
	Host  string              `json:"host"`
	State bridge.BreakerState `json:"state"`
	Err   string              `json:"error,omitempty"`
}

// Trunk is what one refresh read of one trunk.
type Trunk struct {
	Name        string  `json:"trunk"`
	CPS         float64 `json:"cps"`
	Burst       int     `json:"burst"`
	MaxChannels int     `json:"max_channels"`
	// Failures is breaker.failures: the failures in a row that open it.
	Failures int    `json:"breaker_failures"`
	Err      string `json:"error,omitempty"` // the usage could not be read
	// Usage is the limiter's view (Redis's clock); LastSecond is the rate
	// used.
	Usage redisq.TrunkUsage `json:"usage"`
	// Breakers: one per host that runs a daemon of a cell on the trunk (as
	// the cells' heartbeats name the hosts), sorted by host.
	Breakers []TrunkBreaker `json:"breakers"`
}

// trunkSet is the Collector's trunks; the zero value reads none.
type trunkSet struct {
	specs  []TrunkSpec
	stores map[string]*redisq.BreakerStore // trunk + "\x00" + host
}

// SetTrunks makes each refresh read these trunks too.
func (c *Collector) SetTrunks(specs []TrunkSpec) {
	c.trunks = trunkSet{specs: slices.Clone(specs), stores: map[string]*redisq.BreakerStore{}}
}

// collectTrunks reads every trunk; the hosts come from cells, the cells of
// this refresh (a host shows once a daemon of a cell on the trunk beats).
func (c *Collector) collectTrunks(ctx context.Context, cells []Cell) []Trunk {
	if len(c.trunks.specs) == 0 {
		return nil
	}
	out := make([]Trunk, 0, len(c.trunks.specs))
	for _, sp := range c.trunks.specs {
		t := Trunk{Name: sp.Name, CPS: sp.CPS, Burst: sp.Burst, MaxChannels: sp.MaxChannels, Failures: max(1, sp.Breaker.Failures)}
		lim, err := redisq.NewTrunkLimiter(c.rdb, c.prefix, sp.Name, redisq.TrunkLimits{CPS: sp.CPS, Burst: sp.Burst, MaxChannels: sp.MaxChannels})
		if err == nil {
			t.Usage, err = lim.Usage(ctx)
		}
		if err != nil {
			t.Err = err.Error()
			out = append(out, t)
			continue // Redis is down or the trunk is unreadable: no breakers either
		}
		for _, host := range trunkHosts(sp, cells) {
			b := TrunkBreaker{Host: host}
			st, err := c.breakerStore(sp, host).State(ctx)
			if err != nil {
				b.Err = err.Error()
			}
			b.State = st
			t.Breakers = append(t.Breakers, b)
		}
		out = append(out, t)
	}
	return out
}

func (c *Collector) breakerStore(sp TrunkSpec, host string) *redisq.BreakerStore {
	key := sp.Name + "\x00" + host
	b := c.trunks.stores[key]
	if b == nil {
		b = redisq.NewBreakerStore(c.rdb, c.prefix, sp.Name, host, sp.Breaker)
		c.trunks.stores[key] = b
	}
	b.SetClock(c.now)
	return b
}

// trunkHosts are the hosts of the live daemons of the trunk's cells.
func trunkHosts(sp TrunkSpec, cells []Cell) []string {
	var hosts []string
	for _, c := range cells {
		if !slices.Contains(sp.Cells, c.Name) {
			continue
		}
		for _, in := range c.Instances {
			if !in.Gone && in.Host != "" && !slices.Contains(hosts, in.Host) {
				hosts = append(hosts, in.Host)
			}
		}
	}
	slices.Sort(hosts)
	return hosts
}

// sanitizeTrunks escapes every text of the trunks read from Redis (and the
// names, which come from the settings but travel the same way).
func sanitizeTrunks(ts []Trunk) []Trunk {
	return mapSlice(ts, func(t Trunk) Trunk {
		t.Name, t.Err = esc(t.Name), esc(t.Err)
		t.Breakers = mapSlice(t.Breakers, func(b TrunkBreaker) TrunkBreaker {
			b.Host, b.Err = esc(b.Host), esc(b.Err)
			b.State.Mode = bridge.BreakerMode(esc(string(b.State.Mode)))
			b.State.Probe, b.State.LastEvent = esc(b.State.Probe), esc(b.State.LastEvent)
			return b
		})
		return t
	})
}

// trunkLines is the trunks pane: a line per trunk, then one per host's
// breaker under it.
func trunkLines(ts []Trunk, now time.Time) []line {
	out := []line{hdr("%-12s %-11s %-12s %-9s %-8s %s", "TRUNK", "RATE / CPS", "CHANNELS", "BOOKED", "REFUSED", "BREAKER (per host)")}
	for _, t := range ts {
		if t.Err != "" {
			out = append(out, bad("%-12s unreadable: %s", clip(t.Name, 12), t.Err))
			continue
		}
		u := t.Usage
		rate := fmt.Sprintf("%d/s", u.LastSecond)
		if t.CPS > 0 {
			rate = fmt.Sprintf("%d/%s", u.LastSecond, trimFloat(t.CPS))
		} else {
			rate += " (∞)"
		}
		chans := fmt.Sprintf("%d", u.Channels)
		if t.MaxChannels > 0 {
			chans = fmt.Sprintf("%d/%d", u.Channels, t.MaxChannels)
		} else {
			chans += " (∞)"
		}
		booked := "-"
		if u.Ahead > 0 {
			booked = Age(u.Ahead)
		}
		refused := fmt.Sprintf("%d", u.NoToken+u.NoChannel)
		l := txt("%-12s %-11s %-12s %-9s %-8s %s", clip(t.Name, 12), rate, chans, booked, refused, breakerSummary(t.Breakers))
		full := t.MaxChannels > 0 && u.Channels >= t.MaxChannels
		if full || anyBreakerNot(t.Breakers, bridge.BreakerClosed) {
			l.kind = 2
		}
		out = append(out, l)
		for _, b := range t.Breakers {
			out = append(out, breakerLine(b, t.Failures, now))
		}
	}
	if len(ts) == 0 {
		out = append(out, faint("no trunk in the settings (trunks[])"))
	}
	return out
}

func trimFloat(x float64) string {
	s := fmt.Sprintf("%.2f", x)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func anyBreakerNot(bs []TrunkBreaker, m bridge.BreakerMode) bool {
	for _, b := range bs {
		if b.Err != "" || b.State.Mode != m {
			return true
		}
	}
	return false
}

// breakerSummary counts the hosts per breaker mode.
func breakerSummary(bs []TrunkBreaker) string {
	if len(bs) == 0 {
		return "no host dialing"
	}
	n := map[bridge.BreakerMode]int{}
	errs := 0
	for _, b := range bs {
		if b.Err != "" {
			errs++
			continue
		}
		n[b.State.Mode]++
	}
	var parts []string
	for _, m := range []bridge.BreakerMode{bridge.BreakerClosed, bridge.BreakerOpen, bridge.BreakerHalfOpen} {
		if n[m] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[m], modeText(m)))
		}
	}
	if errs > 0 {
		parts = append(parts, fmt.Sprintf("%d unreadable", errs))
	}
	return strings.Join(parts, " · ")
}

func modeText(m bridge.BreakerMode) string {
	switch m {
	case bridge.BreakerOpen:
		return "OPEN"
	case bridge.BreakerHalfOpen:
		return "HALF-OPEN"
	}
	return string(m)
}

// breakerLine is one host's breaker and when it lets a call through.
func breakerLine(b TrunkBreaker, failures int, now time.Time) line {
	const f = "  host %-16s %s"
	if b.Err != "" {
		return bad(f, clip(b.Host, 16), "breaker unreadable: "+b.Err)
	}
	s := b.State
	switch s.Mode {
	case bridge.BreakerOpen:
		return bad(f, clip(b.Host, 16), fmt.Sprintf("OPEN after %d failures, %s ago; retries in %s (%s)",
			s.Failures, Age(now.Sub(s.OpenedAt)), Age(s.RetryAt().Sub(now)), s.RetryAt().In(now.Location()).Format("15:04:05")))
	case bridge.BreakerHalfOpen:
		if s.Probe != "" {
			return bad(f, clip(b.Host, 16), fmt.Sprintf("HALF-OPEN: one probe call out (%s); another may probe in %s if it never ends",
				clip(s.Probe, 24), Age(s.RetryAt().Sub(now))))
		}
		return bad(f, clip(b.Host, 16), "HALF-OPEN: the next call is the probe")
	}
	if s.Failures > 0 {
		return txt(f, clip(b.Host, 16), fmt.Sprintf("closed, %d of %d failures in a row", s.Failures, failures))
	}
	return faint(f, clip(b.Host, 16), "closed")
}

// shown reports whether pane p is on the screen: the trunks pane only when
// the snapshot has trunks.
func (m Model) shown(p int) bool { return p != PaneTrunks || len(m.snap.Trunks) > 0 }

// nextPane is the next shown pane step panes away (1 forward, numPanes−1
// back), for tab and shift-tab.
func (m Model) nextPane(step int) int {
	p := m.focus
	for range numPanes {
		if p = (p + step) % numPanes; m.shown(p) {
			return p
		}
	}
	return m.focus
}

// trunksBox is the trunks pane, "" when there are no trunks.
func (m Model) trunksBox(now time.Time, w, inner int) string {
	if !m.shown(PaneTrunks) {
		return ""
	}
	return m.box("trunks", PaneTrunks, m.render(scrolled(trunkLines(m.snap.Trunks, now), m.scroll[PaneTrunks], 10), inner), w)
}
