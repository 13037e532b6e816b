package dash

import (
	"strconv"
	"time"

	"github.com/multcall/dialbridge/bridge"
)

// pacingStale: a pacing hash not updated for this long has no pacer (the
// daemons' admission refuses a budget older than 5 s).
const pacingStale = 5 * time.Second

// pacingLines is the pacing pane of a paced cell (nil for an unpaced one):
// mode and level, the operators and calls the pacer saw, the measured
// rates, and why the cell dials nothing when it does. The values were
// escaped by sanitize.
func pacingLines(c *Cell, now time.Time) []line {
	p := c.Pacing
	if len(p) == 0 {
		return nil
	}
	pct := func(f string) string {
		v, err := strconv.ParseFloat(p[f], 64)
		if err != nil {
			return "-"
		}
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%"
	}
	out := []line{
		hdr("%-12s %-6s %-7s %-6s %-5s %-8s %-8s %-8s %-7s %-9s %-9s %s", "MODE", "LEVEL", "BUDGET", "AVAIL", "BUSY", "RINGING", "WAITING", "DIALING", "ANSWER", "ABANDON/W", "ABANDON/D", "UPDATED"),
	}
	upd := "-"
	stale := true
	if t, err := time.Parse(bridge.TimeFormat, p["updated_at"]); err == nil {
		upd = Age(now.Sub(t)) + " ago"
		stale = now.Sub(t) > pacingStale
	}
	l := txt("%-12s %-6s %-7s %-6s %-5s %-8s %-8s %-8s %-7s %-9s %-9s %s", clip(p["mode"], 12), clip(p["level"], 6), clip(p["budget"], 7),
		clip(p["available"], 6), clip(p["busy"], 5), clip(p["ringing"], 8), clip(p["waiting"], 8), clip(p["dialing"], 8),
		pct("answer_rate"), pct("abandon_rate_window"), pct("abandon_rate_day"), upd)
	out = append(out, l)
	switch {
	case stale:
		out = append(out, bad("no pacer: the pacing state is %s old — the cell dials nothing", upd))
	case p["nothing"] != "":
		out = append(out, bad("%s", p["nothing"]))
	case p["hard_limit"] == "1":
		out = append(out, bad("hard limit: the abandon rate reached max_abandon; dialing as progressive"))
	case p["reason"] != "":
		out = append(out, faint("%s · pacer %s", p["reason"], clip(p["leader"], 24)))
	}
	return out
}
