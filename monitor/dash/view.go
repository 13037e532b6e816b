package dash

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe"
	"github.com/multcall/dialbridge/redisq"
)

// StaleAfter is the age of a heartbeat past which a bridge is shown stale:
// two beats missed (redisq.DefaultHeartbeatEvery).
const StaleAfter = 2 * redisq.DefaultHeartbeatEvery

type styles struct {
	title, header, faint, stale, err, warn, ok, focus, box, boxFocus lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		title:    r.NewStyle().Bold(true),
		header:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("12")),
		faint:    r.NewStyle().Faint(true),
		stale:    r.NewStyle().Bold(true).Foreground(lipgloss.Color("9")),
		err:      r.NewStyle().Foreground(lipgloss.Color("9")),
		warn:     r.NewStyle().Bold(true).Foreground(lipgloss.Color("0")).Background(lipgloss.Color("11")),
		ok:       r.NewStyle().Foreground(lipgloss.Color("10")),
		focus:    r.NewStyle().Bold(true).Foreground(lipgloss.Color("13")),
		box:      r.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(lipgloss.Color("8")).Padding(0, 1),
		boxFocus: r.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(lipgloss.Color("13")).Padding(0, 1),
	}
}

// clip cuts s to n runes (every rune the monitor draws is one column wide).
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Age writes a duration the way the monitor shows ages: 0.4s, 12s, 3m05s, 2h03m.
func Age(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// line is one row of a pane: its text and how to style it.
type line struct {
	text string
	kind int // 0 plain, 1 header, 2 stale/error, 3 faint, 4 ok
}

func hdr(format string, a ...any) line   { return line{fmt.Sprintf(format, a...), 1} }
func txt(format string, a ...any) line   { return line{fmt.Sprintf(format, a...), 0} }
func bad(format string, a ...any) line   { return line{fmt.Sprintf(format, a...), 2} }
func faint(format string, a ...any) line { return line{fmt.Sprintf(format, a...), 3} }

// cellLines is the cells pane.
func cellLines(cells []Cell, hist map[string]*History, sparkW int) []line {
	out := []line{hdr("%-6s %6s %7s %5s %7s %7s %5s %9s %7s %6s  %s", "CELL", "DIAL", "CLAIMED", "ACK", "CONFIRM", "RESULTS", "DEAD", "IN FLIGHT", "CALLS/S", "1m", "DIAL DEPTH")}
	for _, c := range cells {
		h := hist[c.Name]
		var r Rates
		var spark string
		if h != nil {
			r = h.Rates()
			spark = Sparkline(h.Spark(), sparkW)
		}
		fl := fmt.Sprintf("%d/%d", c.InFlight(), c.Threads())
		if len(c.Instances) == 0 {
			fl = "-"
		}
		r10, r1m := "-", "-"
		if r.Have10s {
			r10 = fmt.Sprintf("%.1f", r.Per10s)
		}
		if r.HaveMin {
			r1m = fmt.Sprintf("%.1f", r.PerMin)
		}
		l := txt("%-6s %6d %7d %5d %7d %7d %5d %9s %7s %6s  %s", clip(c.Name, 6), c.Dial, c.Claimed, c.Ack, c.Confirm, c.Results, c.Dead, fl, r10, r1m, spark)
		out = append(out, l)
		out = append(out, faint("%-6s %s", "", mixText(r)))
		out = append(out, faint("%-6s %s", "", totalsText(c.Stats)))
	}
	return out
}

func totalsText(st map[string]int64) string {
	parts := []string{fmt.Sprintf("claimed %d", st["claimed"]), fmt.Sprintf("results %d", st["results"])}
	for _, s := range bridge.AllStatuses {
		if n := st[string(s)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	return "totals: " + strings.Join(parts, " · ")
}

func mixText(r Rates) string {
	if !r.HaveMin {
		return "outcomes (last minute): needs two refreshes (see totals)"
	}
	if r.MixAll == 0 {
		return "outcomes (last minute): none yet"
	}
	parts := []string{}
	for _, st := range bridge.AllStatuses {
		if n := r.Mix[string(st)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d%%", st, (n*100+r.MixAll/2)/r.MixAll))
		}
	}
	return fmt.Sprintf("outcomes (last %s, %d calls): %s", Age(r.Window), r.MixAll, strings.Join(parts, " · "))
}

// bridgeLines is the bridges pane.
func bridgeLines(cells []Cell, now time.Time) []line {
	out := []line{hdr("%-6s %-16s %-10s %6s %-8s %9s %-11s %s", "CELL", "INSTANCE", "HOST", "PID", "VERSION", "IN FLIGHT", "LAST BEAT", "UP")}
	n := 0
	for _, c := range cells {
		for _, in := range c.Instances {
			n++
			if in.Gone {
				out = append(out, bad("%-6s %-16s %-10s %6s %-8s %9s %-11s %s", clip(c.Name, 6), clip(in.Instance, 16), "", "", "", "", "GONE", fmt.Sprintf("%d claimed, awaiting recovery", in.Claimed)))
				continue
			}
			age := now.Sub(in.BeatAt)
			beat := Age(age) + " ago"
			l := txt("%-6s %-16s %-10s %6d %-8s %9s %-11s %s", clip(c.Name, 6), clip(in.Instance, 16), clip(in.Host, 10), in.PID, clip(in.Version, 8),
				fmt.Sprintf("%d/%d", in.InFlight, in.Threads), beat, Age(now.Sub(in.StartedAt)))
			if age > StaleAfter {
				l.text = fmt.Sprintf("%-6s %-16s %-10s %6d %-8s %9s %-11s %s", clip(c.Name, 6), clip(in.Instance, 16), clip(in.Host, 10), in.PID, clip(in.Version, 8),
					fmt.Sprintf("%d/%d", in.InFlight, in.Threads), "STALE "+Age(age), Age(now.Sub(in.StartedAt)))
				l.kind = 2
			}
			out = append(out, l)
			if in.Hold != "" {
				out = append(out, bad("%-6s NOT CLAIMING: %s", "", in.Hold))
			}
		}
	}
	if n == 0 {
		out = append(out, faint("no bridge running (no heartbeat): start one with ./run.sh <cell>"))
	}
	return out
}

// acdLines is the queue manager pane of one cell: operators, waiting
// calls, then the log.
func acdLines(c *Cell, now time.Time, logN int) (ops, waiting, log []line) {
	ops = []line{hdr("%-10s %-10s %-10s %-16s %s", "OPERATOR", "TIER", "STATE", "CALL", "FOR")}
	for _, o := range c.ACD.Operators {
		st := o.State.String()
		if o.LogoutPending {
			st += "*"
		}
		l := txt("%-10s %-10s %-10s %-16s %s", clip(o.ID, 10), o.Tier, st, clip(o.Call, 16), sinceText(o.Since, now))
		if o.State == acd.LoggedOut {
			l.kind = 3
		}
		ops = append(ops, l)
	}
	if len(c.ACD.Operators) == 0 {
		ops = append(ops, faint("no floor saved for this cell"))
	}
	calls := map[string]acd.CallInfo{}
	for _, ci := range c.ACD.Calls {
		calls[ci.ID] = ci
	}
	waiting = []line{hdr("%-4s %-16s %s", "POS", "WAITING CALL", "FOR")}
	for i, id := range c.ACD.Queue {
		ci := calls[id]
		since := ci.Since
		if since.IsZero() {
			since = ci.Received
		}
		waiting = append(waiting, txt("%-4d %-16s %s", i+1, clip(id, 16), sinceText(since, now)))
	}
	if len(c.ACD.Queue) == 0 {
		waiting = append(waiting, faint("queue empty"))
	}
	log = []line{hdr("%-9s %s", "TIME", "ACD LOG")}
	entries := c.Log
	if len(entries) > logN {
		entries = entries[len(entries)-logN:]
	}
	for _, e := range entries {
		log = append(log, txt("%s  %s", e.Time.In(now.Location()).Format("15:04:05"), e.Message))
	}
	if len(entries) == 0 {
		log = append(log, faint("no messages yet"))
	}
	return ops, waiting, log
}

func sinceText(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return Age(now.Sub(t))
}

// acdCell picks the cell of the queue manager pane.
func acdCell(cells []Cell, name string) *Cell {
	for i := range cells {
		if cells[i].Name == name {
			return &cells[i]
		}
	}
	if len(cells) > 0 {
		return &cells[0]
	}
	return nil
}

// Plain is one snapshot as plain text (--once, or stdout not a terminal).
// hist may be nil (no rates yet).
func Plain(s Snapshot, hist map[string]*History, acdName string, logN int) string {
	s = sanitize(s)
	var b strings.Builder
	fmt.Fprintf(&b, "dialbridge monitor — %s\n", s.At.Format("2006-01-02 15:04:05 MST"))
	var good []Cell
	for _, c := range s.Cells {
		if c.Err != "" {
			fmt.Fprintf(&b, "cell %s: unreadable: %s\n", c.Name, c.Err)
			continue
		}
		good = append(good, c)
	}
	if hist == nil {
		hist = map[string]*History{}
	}
	write := func(title string, ls []line) {
		fmt.Fprintf(&b, "\n%s\n", title)
		for _, l := range ls {
			fmt.Fprintln(&b, strings.TrimRight(l.text, " "))
		}
	}
	write("CELLS", cellLines(good, hist, 20))
	write("BRIDGES", bridgeLines(good, s.At))
	if len(s.Trunks) > 0 {
		write("TRUNKS", trunkLines(s.Trunks, s.At))
	}
	if c := acdCell(good, acdName); c != nil {
		ops, waiting, log := acdLines(c, s.At, logN)
		lease := "no queue manager running"
		if c.ACDLease != "" {
			lease = "run by " + c.ACDLease
		}
		write(fmt.Sprintf("QUEUE MANAGER — cell %s (%s; inbox %d)", c.Name, lease, c.ACDInbox), ops)
		write("WAITING", waiting)
		write("LOG", log)
	}
	for _, c := range good {
		if ls := pacingLines(&c, s.At); ls != nil {
			write("PACING — cell "+c.Name, ls)
		}
	}
	return b.String()
}

// JSON is one snapshot, with each cell's rates when hist has them, as one
// indented JSON document.
func JSON(s Snapshot, hist map[string]*History) ([]byte, error) {
	type cellOut struct {
		Cell
		Rates *Rates `json:"rates,omitempty"`
	}
	out := struct {
		At     time.Time `json:"at"`
		Cells  []cellOut `json:"cells"`
		Trunks []Trunk   `json:"trunks,omitempty"`
	}{At: s.At, Trunks: s.Trunks}
	for _, c := range s.Cells {
		co := cellOut{Cell: c}
		if h := hist[c.Name]; h != nil {
			r := h.Rates()
			co.Rates = &r
		}
		if co.Stats == nil && c.Err == "" {
			co.Stats = map[string]int64{}
		}
		out.Cells = append(out.Cells, co)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	// The data stays as Redis holds it (scripts want the real ids), but
	// what encoding/json leaves raw is written as \u escapes: --json is
	// also read on terminals.
	return termsafe.JSON(b), err
}

func (m Model) render(ls []line, w int) string {
	var b strings.Builder
	for i, l := range ls {
		if i > 0 {
			b.WriteByte('\n')
		}
		t := clip(l.text, w)
		switch l.kind {
		case 1:
			t = m.st.header.Render(t)
		case 2:
			t = m.st.stale.Render(t)
		case 3:
			t = m.st.faint.Render(t)
		case 4:
			t = m.st.ok.Render(t)
		}
		b.WriteString(t)
	}
	return b.String()
}

// scrolled keeps the header and at most n rows from the pane's offset.
func scrolled(ls []line, off, n int) []line {
	if len(ls) <= 1 || n <= 0 {
		return ls
	}
	body := ls[1:]
	off = min(off, max(0, len(body)-n))
	end := min(len(body), off+n)
	out := append([]line{ls[0]}, body[off:end]...)
	if rest := len(body) - end; rest > 0 {
		out = append(out, faint("… %d more (↑/↓ in this pane)", rest))
	}
	return out
}

func (m Model) box(title string, pane int, body string, w int) string {
	st := m.st.box
	t := m.st.title.Render(title)
	if m.focus == pane {
		st = m.st.boxFocus
		t = m.st.focus.Render("▶ " + title)
	}
	return st.Width(w - 2).Render(t + "\n" + body)
}

// View draws the screen.
func (m Model) View() string {
	now := m.o.Now()
	w := max(m.width, 40)
	inner := w - 4 // border and padding
	var parts []string

	title := "dialbridge monitor"
	if m.o.Title != "" {
		title += " — " + m.o.Title
	}
	head := m.st.title.Render(clip(title, w-10)) + "  " + now.Format("15:04:05")
	parts = append(parts, head)
	for _, b := range m.o.Banner {
		parts = append(parts, m.st.faint.Render(clip(b, w)))
	}

	// The cells as last read; a cell that failed shows its last good read
	// under a warning.
	var cells []Cell
	var warns []string
	for _, c := range m.snap.Cells {
		if c.Err == "" {
			cells = append(cells, c)
			continue
		}
		msg := fmt.Sprintf("REDIS DOWN — cell %s: %s — retrying every %s", c.Name, c.Err, m.o.Interval)
		if last, ok := m.last[c.Name]; ok {
			msg += fmt.Sprintf("; data from %s ago", Age(now.Sub(m.lastAt[c.Name])))
			cells = append(cells, last)
		} else {
			cells = append(cells, Cell{Name: c.Name})
		}
		warns = append(warns, msg)
	}
	for _, wmsg := range warns {
		parts = append(parts, m.st.warn.Render(clip(wmsg, w)))
	}
	if !m.have {
		parts = append(parts, m.st.faint.Render("reading Redis…"))
	}

	if m.help {
		parts = append(parts, m.box("help", -1, m.helpText(), w))
		return m.clipHeight(strings.Join(parts, "\n"))
	}

	parts = append(parts, m.box("cells", PaneCells, m.render(cellLines(cells, m.hist, max(10, inner-82)), inner), w))
	parts = append(parts, m.box("bridges", PaneBridges, m.render(scrolled(bridgeLines(cells, now), m.scroll[PaneBridges], 6), inner), w))
	if tb := m.trunksBox(now, w, inner); tb != "" {
		parts = append(parts, tb)
	}

	if c := acdCell(cells, m.o.ACDCell); c != nil {
		ops, waiting, log := acdLines(c, now, m.o.LogLines)
		ops = scrolled(ops, m.scroll[PaneACD], 10)
		waiting = scrolled(waiting, m.scroll[PaneACD], 10)
		var body string
		if inner >= 96 {
			left := m.render(ops, 58)
			right := m.render(waiting, inner-62)
			body = lipgloss.JoinHorizontal(lipgloss.Top, lipgloss.NewStyle().Width(62).Render(left), right)
		} else {
			body = m.render(ops, inner) + "\n" + m.render(waiting, inner)
		}
		body += "\n" + m.render(log, inner)
		mode := m.o.ACDMode
		if mode == "" {
			mode = "read-only"
		}
		lease := "no queue manager running"
		if c.ACDLease != "" {
			lease = "lease " + c.ACDLease
		}
		parts = append(parts, m.box(fmt.Sprintf("queue manager — cell %s (%s; %s; inbox %d)", c.Name, mode, lease, c.ACDInbox), PaneACD, body, w))
	}

	for i := range cells {
		if ls := pacingLines(&cells[i], now); ls != nil {
			parts = append(parts, m.box("pacing — cell "+cells[i].Name, -1, m.render(ls, inner), w))
		}
	}

	parts = append(parts, m.box("command", PaneCommand, m.commandView(inner), w))
	parts = append(parts, m.st.faint.Render(clip("q quit · tab/shift-tab pane · : or enter command line · esc leave it · ↑/↓ scroll · ? help", w)))
	return m.clipHeight(strings.Join(parts, "\n"))
}

func (m Model) commandView(w int) string {
	var ls []string
	start := max(0, len(m.console)-m.o.ConsoleLines)
	for _, c := range m.console[start:] {
		t := clip(c.text, w)
		if c.err {
			t = m.st.err.Render(t)
		}
		ls = append(ls, t)
	}
	for len(ls) < m.o.ConsoleLines {
		ls = append(ls, "")
	}
	prompt := "> " + string(m.input)
	if m.focus == PaneCommand {
		prompt += "█"
	} else {
		prompt = m.st.faint.Render(clip("> (press : to type call, answer, reject, hangup, login, logout, status)", w))
	}
	ls = append(ls, clip(prompt, w+1))
	return strings.Join(ls, "\n")
}

func (m Model) helpText() string {
	h := []string{
		"q, ctrl-c        quit (ctrl-c also from the command line)",
		"tab, shift-tab   next / previous pane (cells, bridges, trunks, queue manager, command)",
		"↑ ↓              scroll the pane; in the command line, the lines typed before",
		": or enter       type a command for the queue manager; esc leaves the command line",
		"?                this help (esc or ? closes it)",
		"",
		"commands:  call <id> · answer <op> · reject <op> · hangup <id> · login <op> · logout <op> · status [<id>]",
		"",
		"DIAL … DEAD are the lengths of the cell's lists; IN FLIGHT is calls in progress / threads of the",
		"live bridges; CALLS/S counts results over the last 10 s and minute; a bridge whose heartbeat is",
		fmt.Sprintf("older than %s is STALE, one whose heartbeat expired with commands claimed is GONE.", StaleAfter),
		"TRUNKS: RATE is Originates granted in the last second / cps, CHANNELS calls in progress / max_channels,",
		"BOOKED how far ahead the trunk's tokens are taken, REFUSED the waits for a token or a channel; under",
		"each trunk the breaker of every host dialing it, and when an OPEN one lets its probe call through.",
	}
	return strings.Join(h, "\n")
}

func (m Model) clipHeight(s string) string {
	if m.height <= 0 {
		return s
	}
	ls := strings.Split(s, "\n")
	if len(ls) > m.height {
		ls = ls[:m.height]
	}
	return strings.Join(ls, "\n")
}
