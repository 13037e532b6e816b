package dash

import (
	"context"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
	"github.com/multcall/dialbridge/redisq"
)

// plantCell writes cell 101 into mr with attack in every text field the
// monitor reads: an instance's name, host and version, operator and call
// ids, the waiting queue, the lease, and every field of the log.
func plantCell(t *testing.T, mr *miniredis.Miniredis, attack string, at time.Time) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	ts := at.Add(-time.Second).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	k := redisq.NewKeys("dialbridge", "101")
	rdb.SAdd(ctx, k.InstanceSet(), attack)
	rdb.HSet(ctx, k.Instance(attack), "host", attack, "version", attack, "pid", 1, "threads", 10, "in_flight", 1, "beat_at", ts, "started_at", ts)
	rdb.HSet(ctx, k.Stats(), attack, 3, "results", 1)
	key := func(n string) string { return redisq.ACDKey("dialbridge", "101", n) }
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// encoding/json turns bytes that are not UTF-8 into U+FFFD: the hash
	// field must match the id as it decodes.
	var id string
	_ = json.Unmarshal([]byte(js(attack)), &id)
	rdb.HSet(ctx, key("operators"), id, js(acd.OperatorInfo{ID: id, State: acd.Busy, Call: attack, Since: at.Add(-time.Minute)}))
	rdb.HSet(ctx, key("calls"), id, js(acd.CallInfo{ID: id, State: acd.Waiting, Operator: attack, Since: at.Add(-time.Minute)}))
	rdb.RPush(ctx, key("queue"), attack, id)
	rdb.Set(ctx, key("lease"), attack, 0)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: key("log"), Values: []any{"time", ts, "message", "Call " + attack + " received", "kind", attack, "call", attack, "operator", attack}})
}

func collectPlanted(t *testing.T, attack string) Snapshot {
	t.Helper()
	mr := miniredis.RunT(t)
	plantCell(t, mr, attack, t0)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	c := NewCollector(rdb, "dialbridge", []string{"101"}, 12)
	c.SetClock(func() time.Time { return t0 })
	s := c.Collect(context.Background())
	if s.Cells[0].Err != "" || len(s.Cells[0].Instances) == 0 || len(s.Cells[0].Log) == 0 {
		t.Fatalf("planting did not work: %+v", s.Cells[0])
	}
	return s
}

// Escape sequences planted in Redis must reach neither the screen nor the
// --once and --json outputs (issue 13 item 6).
func TestInjectionFromRedis(t *testing.T) {
	for name, attack := range termsafetest.Attacks {
		t.Run(name, func(t *testing.T) {
			snap := collectPlanted(t, attack)
			now := t0
			m := New(Options{Title: "redis x", ACDCell: "101", Now: func() time.Time { return now }, Renderer: lipgloss.NewRenderer(io.Discard)})
			m, _ = step(m, tea.WindowSizeMsg{Width: 200, Height: 80})
			m, _ = step(m, SnapshotMsg(snap))
			for _, pane := range []int{PaneCells, PaneBridges, PaneACD} {
				m.focus = pane
				if bad := termsafetest.Unsafe(m.View()); bad != "" {
					t.Errorf("view (focus %d): %s", pane, bad)
				}
			}
			if bad := termsafetest.Unsafe(Plain(snap, nil, "101", 12)); bad != "" {
				t.Errorf("plain: %s", bad)
			}
			b, err := JSON(snap, nil)
			if err != nil {
				t.Fatal(err)
			}
			if bad := termsafetest.Unsafe(string(b)); bad != "" {
				t.Errorf("json: %s", bad)
			}
			// JSON is for programs: the data is kept.
			var back struct {
				Cells []Cell `json:"cells"`
			}
			want := snap.Cells[0].ACDLease
			if lb, _ := json.Marshal(want); json.Unmarshal(lb, &want) != nil {
				t.Fatal("lease")
			}
			if err := json.Unmarshal(b, &back); err != nil || back.Cells[0].ACDLease != want {
				t.Errorf("json lease %q, want %q (%v)", back.Cells[0].ACDLease, want, err)
			}
		})
	}
}

// The other ways text enters the model: a failed refresh's error, the
// queue manager's output and notes, typed or pasted runes.
func TestInjectionIntoTheModel(t *testing.T) {
	for name, attack := range termsafetest.Attacks {
		t.Run(name, func(t *testing.T) {
			now := t0
			m := New(Options{
				Title: attack, Banner: []string{attack}, ACDCell: "101", ACDMode: attack, ACDNote: attack,
				Now: func() time.Time { return now }, Renderer: lipgloss.NewRenderer(io.Discard),
			})
			m, _ = step(m, tea.WindowSizeMsg{Width: 200, Height: 80})
			m, _ = step(m, SnapshotMsg{At: now, Cells: []Cell{fakeCell(now, 10)}})
			m, _ = step(m, SnapshotMsg{At: now, Cells: []Cell{{Name: "101", Err: attack}}})
			m, _ = step(m, ConsoleMsg{Lines: []string{attack, "Call " + attack + " received"}})
			m, _ = step(m, ConsoleMsg{Lines: []string{"error: " + attack}, Err: true})
			if bad := termsafetest.Unsafe(m.View()); bad != "" {
				t.Errorf("view: %s", bad)
			}
			m = keys(m, ":")
			// A paste: the unsafe runes are dropped, not escaped.
			m, _ = step(m, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("call " + attack), Paste: true})
			if bad := termsafetest.Raw(m.View()); bad != "" {
				t.Errorf("view while typing: %s", bad)
			}
			m, _ = step(m, tea.KeyMsg{Type: tea.KeyEnter}) // read-only: the note is shown
			if bad := termsafetest.Raw(m.View()); bad != "" {
				t.Errorf("view after enter: %s", bad)
			}
		})
	}
}

// Every text field of a Snapshot, present and future, is escaped on its
// way into the model: a reflective walk plants an attack in each.
func TestSanitizeCoversEveryField(t *testing.T) {
	const attack = "a\x1b]0;x\x07\u202e"
	var s Snapshot
	s.Cells = []Cell{fakeCell(t0, 10)}
	s.Cells[0].Stats[attack] = 1
	plantStrings(reflect.ValueOf(&s).Elem(), attack)
	lease := s.Cells[0].ACDLease
	clean := sanitize(s)
	var found []string
	walkStrings(reflect.ValueOf(clean), "snapshot", func(path, v string) {
		if bad := termsafetest.Unsafe(v); bad != "" {
			found = append(found, path)
		}
	})
	if len(found) > 0 {
		t.Errorf("not escaped: %s", strings.Join(found, ", "))
	}
	// The snapshot given is not changed (the JSON output keeps the data).
	if s.Cells[0].ACDLease != lease || s.Cells[0].Stats[attack] != 1 {
		t.Error("sanitize changed its argument")
	}
}

func plantStrings(v reflect.Value, attack string) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(v.String() + attack)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				plantStrings(v.Field(i), attack)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			plantStrings(v.Index(i), attack)
		}
	}
}

func walkStrings(v reflect.Value, path string, fn func(path, v string)) {
	switch v.Kind() {
	case reflect.String:
		fn(path, v.String())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkStrings(v.Field(i), path+"."+v.Type().Field(i).Name, fn)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkStrings(v.Index(i), path+"[]", fn)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			walkStrings(k, path+"{key}", fn)
			walkStrings(v.MapIndex(k), path+"{}", fn)
		}
	}
}
