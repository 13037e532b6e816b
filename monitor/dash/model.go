package dash

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/multcall/dialbridge/monitor/termsafe"
)

// Panes, in tab order.
const (
	PaneCells = iota
	PaneBridges
	PaneTrunks // shown only when the settings name trunks (trunks.go)
	PaneACD
	PaneCommand
	numPanes
)

var paneNames = [numPanes]string{"cells", "bridges", "trunks", "queue manager", "command"}

// Options configure a Model.
type Options struct {
	// Title follows "dialbridge monitor" on the first line (e.g. the Redis
	// address); Banner lines come under it (the demo's ports).
	Title  string
	Banner []string
	// Interval between refreshes (default 1s).
	Interval time.Duration
	// Fetch reads a snapshot; nil: snapshots come only as SnapshotMsg
	// (tests).
	Fetch func(ctx context.Context) Snapshot
	// Exec sends a typed line to the queue manager; its output comes back
	// as ConsoleMsg. Nil: the command line is read-only (ACDNote says why).
	Exec func(line string)
	// ACDCell is the cell whose queue manager the command line talks to;
	// ACDMode says how ("hosted", "attached to 127.0.0.1:5678", …).
	ACDCell, ACDMode, ACDNote string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Renderer draws the styles (default lipgloss's, for stdout).
	Renderer *lipgloss.Renderer
	// LogLines, ConsoleLines: how many ACD log / console lines to show.
	LogLines, ConsoleLines int
}

// SnapshotMsg brings a new snapshot.
type SnapshotMsg Snapshot

// ConsoleMsg brings lines printed by the queue manager (Err: on its error
// output).
type ConsoleMsg struct {
	Lines []string
	Err   bool
}

type refreshMsg struct{}

type consoleLine struct {
	text string
	err  bool
}

// Model is the monitor's state.
type Model struct {
	o       Options
	st      styles
	snap    Snapshot
	have    bool
	last    map[string]Cell      // last good read of each cell
	lastAt  map[string]time.Time // when
	hist    map[string]*History
	width   int
	height  int
	focus   int
	help    bool
	scroll  [numPanes]int
	input   []rune
	console []consoleLine
	history []string // lines typed
	histPos int
}

// New builds the model.
func New(o Options) Model {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Renderer == nil {
		o.Renderer = lipgloss.DefaultRenderer()
	}
	if o.LogLines <= 0 {
		o.LogLines = 8
	}
	if o.ConsoleLines <= 0 {
		o.ConsoleLines = 5
	}
	o = sanitizeOptions(o)
	return Model{
		o: o, st: newStyles(o.Renderer), width: 100, height: 40,
		last: map[string]Cell{}, lastAt: map[string]time.Time{}, hist: map[string]*History{},
	}
}

func (m Model) fetch() tea.Cmd {
	if m.o.Fetch == nil {
		return nil
	}
	f, iv := m.o.Fetch, m.o.Interval
	return func() (msg tea.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), max(iv, 2*time.Second))
		defer cancel()
		defer func() {
			// A bug in a read must not take the terminal down with it.
			if r := recover(); r != nil {
				msg = SnapshotMsg{At: time.Now(), Cells: []Cell{{Name: "?", Err: fmt.Sprintf("internal error: %v", r)}}}
			}
		}()
		return SnapshotMsg(f(ctx))
	}
}

// Init starts the first refresh.
func (m Model) Init() tea.Cmd { return m.fetch() }

// Update applies one message.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case SnapshotMsg:
		m.addSnapshot(sanitize(Snapshot(msg)))
		if m.o.Fetch != nil {
			return m, tea.Tick(m.o.Interval, func(time.Time) tea.Msg { return refreshMsg{} })
		}
	case refreshMsg:
		return m, m.fetch()
	case ConsoleMsg:
		// The queue manager's output carries ids and error texts from
		// Redis or from the server attached to.
		for _, l := range msg.Lines {
			m.console = append(m.console, consoleLine{text: termsafe.Escape(l), err: msg.Err})
		}
		if n := len(m.console) - 200; n > 0 {
			m.console = m.console[n:]
		}
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m *Model) addSnapshot(s Snapshot) {
	m.snap, m.have = s, true
	for i := range s.Cells {
		c := &s.Cells[i]
		if c.Err != "" {
			continue
		}
		m.last[c.Name] = *c
		m.lastAt[c.Name] = s.At
		h := m.hist[c.Name]
		if h == nil {
			h = NewHistory(60)
			m.hist[c.Name] = h
		}
		h.Add(s.At, c)
	}
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyCtrlC:
		return m, tea.Quit
	case tea.KeyTab:
		m.focus = m.nextPane(1)
		m.help = false
		return m, nil
	case tea.KeyShiftTab:
		m.focus = m.nextPane(numPanes - 1)
		m.help = false
		return m, nil
	}
	if m.focus == PaneCommand {
		return m.commandKey(k)
	}
	switch k.Type {
	case tea.KeyEsc:
		m.help = false
	case tea.KeyUp:
		m.scroll[m.focus] = max(0, m.scroll[m.focus]-1)
	case tea.KeyDown:
		m.scroll[m.focus]++
	case tea.KeyEnter:
		m.focus, m.help = PaneCommand, false
	case tea.KeyRunes:
		switch string(k.Runes) {
		case "q":
			return m, tea.Quit
		case "?":
			m.help = !m.help
		case ":", "/":
			m.focus, m.help = PaneCommand, false
		}
	}
	return m, nil
}

func (m Model) commandKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Alt && k.Type == tea.KeyRunes {
		// Esc then a key, typed quickly, arrives as alt+key: leave the
		// command line and take the key there.
		m.focus = PaneCells
		k.Alt = false
		return m.key(k)
	}
	switch k.Type {
	case tea.KeyEsc:
		m.focus = PaneCells
	case tea.KeyBackspace:
		if len(m.input) > 0 {
			m.input = m.input[:len(m.input)-1]
		}
	case tea.KeyCtrlU:
		m.input = nil
	case tea.KeyUp:
		if m.histPos > 0 {
			m.histPos--
			m.input = []rune(m.history[m.histPos])
		}
	case tea.KeyDown:
		if m.histPos < len(m.history) {
			m.histPos++
			m.input = nil
			if m.histPos < len(m.history) {
				m.input = []rune(m.history[m.histPos])
			}
		}
	case tea.KeySpace:
		m.input = append(m.input, ' ')
	case tea.KeyRunes:
		// A paste can bring control and format characters: no command
		// has a use for them, and the line is echoed on the screen.
		for _, r := range k.Runes {
			if len(m.input) < 256 && termsafe.FirstUnsafe(string(r)) < 0 {
				m.input = append(m.input, r)
			}
		}
	case tea.KeyEnter:
		line := strings.TrimSpace(string(m.input))
		m.input = nil
		if line == "" {
			return m, nil
		}
		m.history = append(m.history, line)
		if len(m.history) > 100 {
			m.history = m.history[1:]
		}
		m.histPos = len(m.history)
		m.console = append(m.console, consoleLine{text: "> " + line})
		switch strings.ToLower(line) {
		case "quit", "exit":
			return m, tea.Quit
		}
		if m.o.Exec == nil {
			note := m.o.ACDNote
			if note == "" {
				note = "no queue manager here: the command line is read-only"
			}
			m.console = append(m.console, consoleLine{text: "error: " + note, err: true})
			return m, nil
		}
		exec := m.o.Exec
		return m, func() tea.Msg { exec(line); return nil }
	}
	return m, nil
}

// Focus is the pane with the focus (tests).
func (m Model) Focus() int { return m.focus }
