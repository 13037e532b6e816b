package dash

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// fakeTrunks are two trunks at time at: gw1 busy, its breakers in every
// state; gw2 without limits and unreadable.
func fakeTrunks(at time.Time) []Trunk {
	return []Trunk{
		{
			Name: "gw1", CPS: 5, Burst: 2, MaxChannels: 20, Failures: 10,
			Usage: redisq.TrunkUsage{At: at, Channels: 20, LastSecond: 5, ThisSecond: 2, Ahead: 1500 * time.Millisecond, Granted: 1200, NoToken: 40, NoChannel: 3},
			Breakers: []TrunkBreaker{
				{Host: "pbx1", State: bridge.BreakerState{Mode: bridge.BreakerClosed}},
				{Host: "pbx2", State: bridge.BreakerState{Mode: bridge.BreakerOpen, Failures: 10, OpenedAt: at.Add(-18 * time.Second), Until: at.Add(12 * time.Second)}},
				{Host: "pbx3", State: bridge.BreakerState{Mode: bridge.BreakerHalfOpen, Probe: "101:c-77", ProbeUntil: at.Add(5 * time.Minute)}},
				{Host: "pbx4", State: bridge.BreakerState{Mode: bridge.BreakerHalfOpen}},
				{Host: "pbx5", State: bridge.BreakerState{Mode: bridge.BreakerClosed, Failures: 3}},
				{Host: "pbx6\x1b[2J", Err: "breaker dialbridge:{trunk:gw1}:breaker:pbx6: state: i/o timeout\x07"},
			},
		},
		{Name: "budget", CPS: 0.5, Burst: 1, Failures: 10, Usage: redisq.TrunkUsage{At: at, LastSecond: 1, Channels: 2},
			Breakers: []TrunkBreaker{{Host: "pbx1", State: bridge.BreakerState{Mode: bridge.BreakerClosed}}}},
		{Name: "gw2", Err: "trunk gw2: usage: NOPERM\x1b]0;owned\x07"},
	}
}

// TestTrunksPane drives the model with a snapshot that has trunks: the pane
// shows every breaker state, escapes what Redis holds, and joins the tab
// order.
func TestTrunksPane(t *testing.T) {
	now := t0
	m := newTestModel(&now, nil)
	m, _ = step(m, tea.WindowSizeMsg{Width: 130, Height: 80})
	m, _ = step(m, SnapshotMsg{At: now, Cells: []Cell{fakeCell(now, 100)}, Trunks: fakeTrunks(now)})
	v := m.View()
	golden(t, "view_trunks", v)
	for _, want := range []string{
		"5/5", "20/20", "1.5s", "43", "1/0.5", "2 (∞)",
		"OPEN after 10 failures, 18s ago; retries in 12s (10:30:12)",
		"HALF-OPEN: one probe call out (101:c-77); another may probe in 5m00s",
		"HALF-OPEN: the next call is the probe", "closed, 3 of 10 failures in a row",
		"gw2          unreadable: trunk gw2: usage: NOPERM",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q", want)
		}
	}
	if strings.ContainsAny(v, "\x07") || strings.Contains(v, "\x1b[2J") || strings.Contains(v, "\x1b]0") {
		t.Errorf("control sequences from Redis reach the screen:\n%q", v)
	}
	for i, want := range []int{PaneBridges, PaneTrunks, PaneACD} {
		m, _ = step(m, tea.KeyMsg{Type: tea.KeyTab})
		if m.Focus() != want {
			t.Fatalf("after %d tabs focus %d, want %d", i+1, m.Focus(), want)
		}
	}
	m, _ = step(m, tea.KeyMsg{Type: tea.KeyShiftTab})
	if m.Focus() != PaneTrunks {
		t.Fatalf("shift-tab: focus %d", m.Focus())
	}
	// Scrolled in its pane: the header stays.
	for range 3 {
		m, _ = step(m, tea.KeyMsg{Type: tea.KeyDown})
	}
	if v := m.View(); !strings.Contains(v, "TRUNK ") || !strings.Contains(v, "▶ trunks") {
		t.Errorf("scrolled view:\n%s", v)
	}

	// The next refresh has no trunks: the pane goes, and tab skips it.
	m, _ = step(m, SnapshotMsg{At: now, Cells: []Cell{fakeCell(now, 100)}})
	if v := m.View(); strings.Contains(v, "TRUNK ") {
		t.Error("trunks pane shown without trunks")
	}

	s := Snapshot{At: now, Cells: []Cell{fakeCell(now, 100)}, Trunks: fakeTrunks(now)}
	golden(t, "plain_trunks", Plain(s, nil, "101", 4))
	b, err := JSON(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Trunks []Trunk `json:"trunks"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	// JSON keeps the data as Redis holds it (escaped on the wire only).
	if len(back.Trunks) != 3 || back.Trunks[0].Breakers[1].State.Mode != bridge.BreakerOpen || back.Trunks[0].Breakers[5].Host != "pbx6\x1b[2J" {
		t.Errorf("json trunks %+v", back.Trunks)
	}
	if strings.Contains(string(b), "\x1b") {
		t.Error("raw escape in --json")
	}
}

// TestCollectorTrunks reads a trunk's limiter and the breakers of the hosts
// the heartbeats name, from the keys the daemons write.
func TestCollectorTrunks(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(t0) // TIME, inside the limiter's scripts too
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DisableIdentity: true})
	defer rdb.Close()
	ctx := context.Background()
	const prefix = "dialbridge"
	beat := t0.Add(-time.Second).Format(bridge.TimeFormat)
	for _, c := range []struct{ cell, inst, host string }{{"101", "pbx1-1", "pbx1"}, {"101", "pbx2-1", "pbx2"}, {"102", "pbx2-2", "pbx2"}, {"103", "pbx9-1", "pbx9"}} {
		k := redisq.NewKeys(prefix, c.cell)
		rdb.HSet(ctx, k.Instance(c.inst), "host", c.host, "pid", 1, "threads", 10, "beat_at", beat, "started_at", beat)
		rdb.Expire(ctx, k.Instance(c.inst), 10*time.Second)
		rdb.SAdd(ctx, k.InstanceSet(), c.inst)
	}
	lim, err := redisq.NewTrunkLimiter(rdb, prefix, "gw1", redisq.TrunkLimits{CPS: 4, Burst: 2, MaxChannels: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, lease := range []string{"101:a", "101:b", "102:c"} {
		if g, err := lim.Acquire(ctx, lease); err != nil || !g.OK {
			t.Fatalf("acquire %s: %+v %v", lease, g, err)
		}
		mr.SetTime(t0.Add(300 * time.Millisecond))
	}
	cfg := bridge.BreakerConfig{Failures: 2, Cooldown: 30 * time.Second}
	br := redisq.NewBreakerStore(rdb, prefix, "gw1", "pbx2", cfg)
	br.SetClock(func() time.Time { return t0 })
	for _, id := range []string{"e1", "e2"} {
		if _, err := br.Record(ctx, bridge.BreakerEvent{Verdict: bridge.BreakerFailure, ID: id}); err != nil {
			t.Fatal(err)
		}
	}

	c := NewCollector(rdb, prefix, []string{"101", "102", "103"}, 2)
	now := t0.Add(10 * time.Second)
	c.SetClock(func() time.Time { return now })
	c.SetTrunks([]TrunkSpec{
		{Name: "gw1", CPS: 4, Burst: 2, MaxChannels: 10, Breaker: cfg, Cells: []string{"101", "102"}},
		{Name: "idle", CPS: 1, Burst: 1, Breaker: cfg, Cells: []string{"104"}},
	})
	mr.SetTime(now)
	s := c.Collect(ctx)
	if len(s.Trunks) != 2 {
		t.Fatalf("trunks %+v", s.Trunks)
	}
	gw := s.Trunks[0]
	if gw.Err != "" || gw.Usage.Channels != 3 || gw.Usage.Granted != 3 || gw.MaxChannels != 10 || gw.Failures != 2 {
		t.Fatalf("gw1 %+v", gw)
	}
	if len(gw.Breakers) != 2 || gw.Breakers[0].Host != "pbx1" || gw.Breakers[0].State.Mode != bridge.BreakerClosed ||
		gw.Breakers[1].Host != "pbx2" || gw.Breakers[1].State.Mode != bridge.BreakerOpen ||
		!gw.Breakers[1].State.RetryAt().Equal(t0.Add(30*time.Second)) {
		t.Fatalf("gw1 breakers %+v", gw.Breakers)
	}
	if idle := s.Trunks[1]; idle.Err != "" || idle.Usage.Channels != 0 || len(idle.Breakers) != 0 {
		t.Fatalf("idle %+v", idle)
	}

	// After the cooldown the monitor sees it half-open (its own clock),
	// and writes nothing doing so.
	now = t0.Add(31 * time.Second)
	mr.SetTime(now)
	s = c.Collect(ctx)
	if st := s.Trunks[0].Breakers[1].State; st.Mode != bridge.BreakerHalfOpen || st.Probe != "" {
		t.Fatalf("after the cooldown %+v", st)
	}
	if got := rdb.HGet(ctx, redisq.BreakerKey(prefix, "gw1", "pbx2"), "mode").Val(); got != "open" {
		t.Errorf("the monitor wrote the breaker: mode %q", got)
	}

	mr.Close()
	s = c.Collect(ctx)
	if len(s.Trunks) != 2 || s.Trunks[0].Err == "" {
		t.Errorf("Redis down: %+v", s.Trunks)
	}
}
