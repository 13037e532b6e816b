package dash

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/redisq"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./monitor/dash -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// fakeCell is a busy cell at time at, with total results n.
func fakeCell(at time.Time, n int64) Cell {
	return Cell{
		Name: "101", Dial: 12 + n/100, Claimed: 40, Ack: 2, Confirm: 1, Results: 3, Dead: 1,
		Stats: map[string]int64{"claimed": n + 40, "results": n, "answered": n / 2, "busy": n / 4, "no_answer": n / 4},
		Instances: []Instance{
			{Instance: "pbx1-4711", Host: "pbx1", PID: 4711, Version: "v1.2.0", Threads: 100, InFlight: 40, StartedAt: at.Add(-2 * time.Hour), BeatAt: at.Add(-1200 * time.Millisecond), TTL: 9 * time.Second, TTLMs: 9000},
			{Instance: "pbx2-99", Host: "pbx2", PID: 99, Version: "v1.2.0", Threads: 50, InFlight: 3, StartedAt: at.Add(-10 * time.Minute), BeatAt: at.Add(-8 * time.Second), TTL: 2 * time.Second, TTLMs: 2000},
			{Instance: "pbx3-7", Claimed: 5, Gone: true},
		},
		ACD: acd.Snapshot{
			Operators: []acd.OperatorInfo{
				{ID: "A", Tier: acd.TierOperator, State: acd.Busy, Call: "c-000101", Since: at.Add(-75 * time.Second)},
				{ID: "B", Tier: acd.TierOperator, State: acd.Ringing, Call: "c-000102", Since: at.Add(-3 * time.Second)},
				{ID: "C", Tier: acd.TierOperator, State: acd.LoggedOut, Since: at.Add(-time.Hour)},
				{ID: "S", Tier: acd.TierSupervisor, State: acd.Busy, Call: "c-000099", Since: at.Add(-20 * time.Second), LogoutPending: true},
			},
			Calls: []acd.CallInfo{
				{ID: "c-000103", State: acd.Waiting, Received: at.Add(-9 * time.Second), Since: at.Add(-9 * time.Second)},
				{ID: "c-000104", State: acd.Waiting, Received: at.Add(-4 * time.Second), Since: at.Add(-4 * time.Second)},
			},
			Queue: []string{"c-000103", "c-000104"},
		},
		ACDLease: "queue-pbx1-5000",
		Log: []LogEntry{
			{Time: at.Add(-4 * time.Second), Message: "Call c-000104 received"},
			{Time: at.Add(-4 * time.Second), Message: "Call c-000104 waiting in queue"},
			{Time: at.Add(-3 * time.Second), Message: "Call c-000102 ringing for operator B"},
		},
	}
}

func newTestModel(now *time.Time, exec func(string)) Model {
	return New(Options{
		Title: "redis 127.0.0.1:6379", Interval: time.Second, ACDCell: "101", ACDMode: "hosted",
		Now: func() time.Time { return *now }, Renderer: lipgloss.NewRenderer(io.Discard), Exec: exec,
	})
}

func step(m Model, msg tea.Msg) (Model, tea.Cmd) {
	nm, cmd := m.Update(msg)
	return nm.(Model), cmd
}

func feed(m Model, now *time.Time) Model {
	m, _ = step(m, tea.WindowSizeMsg{Width: 130, Height: 60})
	for i := range 7 {
		*now = t0.Add(time.Duration(i) * 10 * time.Second)
		m, _ = step(m, SnapshotMsg{At: *now, Cells: []Cell{fakeCell(*now, int64(100*i))}})
	}
	return m
}

func TestViewGolden(t *testing.T) {
	now := t0
	m := feed(newTestModel(&now, nil), &now)
	golden(t, "view", m.View())

	// Redis goes down: the last good data stays, under a warning.
	now = now.Add(5 * time.Second)
	m, _ = step(m, SnapshotMsg{At: now, Cells: []Cell{{Name: "101", Err: "dial tcp 127.0.0.1:6379: connect: connection refused"}}})
	golden(t, "view_redis_down", m.View())

	m, _ = step(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?")})
	golden(t, "view_help", m.View())

	// Narrow terminal: the queue manager's columns stack.
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyEsc})
	m, _ = step(m, tea.WindowSizeMsg{Width: 80, Height: 30})
	golden(t, "view_narrow", m.View())
}

func TestPlainAndJSONGolden(t *testing.T) {
	now := t0
	m := feed(newTestModel(&now, nil), &now)
	golden(t, "plain", Plain(m.snap, m.hist, "101", 8))
	b, err := JSON(m.snap, m.hist)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "json", string(b)+"\n")
}

func keys(m Model, s string) Model {
	for _, r := range s {
		k := tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}}
		if r == ' ' {
			k = tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
		}
		m, _ = step(m, k)
	}
	return m
}

func isQuit(cmd tea.Cmd) bool {
	if cmd == nil {
		return false
	}
	_, ok := cmd().(tea.QuitMsg)
	return ok
}

func TestKeys(t *testing.T) {
	now := t0
	var sent []string
	m := feed(newTestModel(&now, func(l string) { sent = append(sent, l) }), &now)
	// Without trunks, tab skips the trunks pane (TestTrunksPane has them).
	for i, want := range []int{PaneBridges, PaneACD, PaneCommand, PaneCells} {
		m, _ = step(m, tea.KeyMsg{Type: tea.KeyTab})
		if m.Focus() != want {
			t.Fatalf("after %d tabs focus %d, want %d", i+1, m.Focus(), want)
		}
	}
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyShiftTab})
	if m.Focus() != PaneCommand {
		t.Fatalf("shift-tab: focus %d", m.Focus())
	}
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyEsc})
	m = keys(m, ":")
	if m.Focus() != PaneCommand {
		t.Fatal(": does not open the command line")
	}
	// q, ? and letters are text in the command line.
	m = keys(m, "call q?")
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyBackspace})
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyBackspace})
	m = keys(m, "7")
	m, cmd := step(m, tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatal("enter ran nothing")
	}
	cmd()
	if len(sent) != 1 || sent[0] != "call 7" {
		t.Fatalf("sent %q", sent)
	}
	m, _ = step(m, ConsoleMsg{Lines: []string{"Call 7 received", "Call 7 ringing for operator C"}})
	m, _ = step(m, ConsoleMsg{Lines: []string{"error: unknown call 9"}, Err: true})
	v := m.View()
	for _, want := range []string{"> call 7", "Call 7 ringing for operator C", "error: unknown call 9"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q", want)
		}
	}
	// ↑ recalls the line typed.
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyUp})
	if string(m.input) != "call 7" {
		t.Errorf("history: %q", string(m.input))
	}
	// Esc then ? typed fast arrives as alt+?: leaves the line, opens help.
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?"), Alt: true})
	if m.Focus() == PaneCommand || !m.help {
		t.Errorf("alt+? in the command line: focus %d help %v", m.Focus(), m.help)
	}
	if _, cmd := step(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")}); !isQuit(cmd) {
		t.Error("q does not quit")
	}
	m = keys(m, ":")
	if _, cmd := step(m, tea.KeyMsg{Type: tea.KeyCtrlC}); !isQuit(cmd) {
		t.Error("ctrl-c in the command line does not quit")
	}
}

func TestReadOnlyCommandLine(t *testing.T) {
	now := t0
	m := New(Options{Now: func() time.Time { return now }, Renderer: lipgloss.NewRenderer(io.Discard), ACDNote: "queue manager not hosted: lease held"})
	m = keys(m, ":status")
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyEnter})
	if v := m.View(); !strings.Contains(v, "error: queue manager not hosted: lease held") {
		t.Errorf("view:\n%s", v)
	}
}

func TestFetchPanicBecomesAnError(t *testing.T) {
	m := New(Options{Fetch: func(context.Context) Snapshot { panic("boom") }, Renderer: lipgloss.NewRenderer(io.Discard)})
	msg := m.Init()()
	s, ok := msg.(SnapshotMsg)
	if !ok || len(s.Cells) != 1 || !strings.Contains(s.Cells[0].Err, "boom") {
		t.Fatalf("got %#v", msg)
	}
	_, cmd := step(m, msg)
	if cmd == nil {
		t.Fatal("no next refresh scheduled")
	}
}

func TestRates(t *testing.T) {
	h := NewHistory(5)
	for i := range 13 {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		// 2 results/s for the first 30 s, then 10/s.
		n := int64(min(i, 6)*10 + max(0, i-6)*50)
		h.Add(at, &Cell{Dial: int64(i), Stats: map[string]int64{"results": n, "answered": n, "claimed": n}})
	}
	r := h.Rates()
	if r.Per10s != 10 || r.PerMin != 6 {
		t.Errorf("rates %v/s (10s) %v/s (1m), want 10 and 6", r.Per10s, r.PerMin)
	}
	if r.MixAll != 360 || r.Mix["answered"] != 360 {
		t.Errorf("mix %v of %d", r.Mix, r.MixAll)
	}
	if got := Sparkline(h.Spark(), 10); got != "▅▆▆▇█" {
		t.Errorf("sparkline %q", got)
	}
	// A cell that errs adds nothing.
	h.Add(t0.Add(time.Hour), &Cell{Err: "down"})
	if len(h.Spark()) != 5 {
		t.Error("an error was recorded")
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0.0s", 400 * time.Millisecond: "0.4s", 12 * time.Second: "12s",
		185 * time.Second: "3m05s", 2*time.Hour + 3*time.Minute: "2h03m",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
}

// countPipelines counts round trips (a pipeline, or a single command).
type countPipelines struct{ n atomic.Int64 }

func (c *countPipelines) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *countPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" { // a new connection's handshake
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *countPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() != "client" { // a new connection's CLIENT SETINFO
			c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

func TestCollectorOneRoundTripPerCell(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx := context.Background()
	k := redisq.NewKeys("dialbridge", "101")
	rdb.LPush(ctx, k.Dial(), "a", "b", "c")
	rdb.LPush(ctx, k.Ack(), "x")
	rdb.LPush(ctx, k.Dead(), "d1", "d2")
	rdb.HSet(ctx, k.Stats(), "results", 10, "answered", 7, "busy", 3)
	beat := t0.Add(-time.Second).Format("2006-01-02T15:04:05.000Z07:00")
	rdb.HSet(ctx, k.Instance("pbx1-1"), "host", "pbx1", "pid", 1, "version", "v1", "threads", 10, "in_flight", 4, "beat_at", beat, "started_at", beat)
	rdb.Expire(ctx, k.Instance("pbx1-1"), 10*time.Second)
	rdb.SAdd(ctx, k.InstanceSet(), "pbx1-1")
	rdb.LPush(ctx, k.Claimed("pbx1-1"), "c1", "c2")
	rdb.HSet(ctx, redisq.ACDKey("dialbridge", "101", "operators"),
		"A", `{"id":"A","tier":"operator","state":"busy","call":"7","since":"2026-11-23T10:29:00.000Z"}`,
		"B", `{"id":"B","tier":"operator","state":"available"}`,
		"X", `not json`)
	rdb.HSet(ctx, redisq.ACDKey("dialbridge", "101", "calls"), "7", `{"id":"7","state":"answered","operator":"A"}`, "8", `{"id":"8","state":"waiting"}`)
	rdb.RPush(ctx, redisq.ACDKey("dialbridge", "101", "queue"), "8")
	for _, msg := range []string{"Call 7 received", "Call 7 ringing for operator A", "Call 7 answered by operator A"} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: redisq.ACDKey("dialbridge", "101", "log"), Values: []any{"time", "2026-11-23T10:29:00.000Z", "message", msg}})
	}

	cnt := &countPipelines{}
	rdb.AddHook(cnt)
	c := NewCollector(rdb, "dialbridge", []string{"101"}, 2)
	c.SetClock(func() time.Time { return t0 })
	s := c.Collect(ctx)
	if cnt.n.Load() != 2 {
		t.Errorf("first refresh (new instance): %d round trips, want 2", cnt.n.Load())
	}
	cell := s.Cells[0]
	if cell.Err != "" || cell.Dial != 3 || cell.Ack != 1 || cell.Dead != 2 || cell.Claimed != 2 || cell.Stats["answered"] != 7 {
		t.Fatalf("cell %+v", cell)
	}
	if len(cell.Instances) != 1 || cell.Instances[0].InFlight != 4 || cell.Instances[0].Threads != 10 || !cell.Instances[0].BeatAt.Equal(t0.Add(-time.Second)) {
		t.Fatalf("instances %+v", cell.Instances)
	}
	if len(cell.ACD.Operators) != 2 || cell.ACD.Operators[0].State != acd.Busy || len(cell.ACD.Queue) != 1 || len(cell.ACD.Calls) != 2 {
		t.Fatalf("floor %+v", cell.ACD)
	}
	if len(cell.Log) != 2 || cell.Log[1].Message != "Call 7 answered by operator A" {
		t.Fatalf("log %+v", cell.Log)
	}
	cnt.n.Store(0)
	c.Collect(ctx)
	if cnt.n.Load() != 1 {
		t.Errorf("steady refresh: %d round trips, want 1", cnt.n.Load())
	}
	// The heartbeat expires with commands claimed: the instance is GONE.
	mr.FastForward(11 * time.Second)
	s = c.Collect(ctx)
	if in := s.Cells[0].Instances; len(in) != 1 || !in[0].Gone || in[0].Claimed != 2 {
		t.Errorf("after expiry: %+v", in)
	}

	mr.Close()
	s = c.Collect(ctx)
	if s.Cells[0].Err == "" {
		t.Error("Redis down, no error")
	}
}
