package dash

import (
	"strings"
	"testing"
	"time"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
)

func TestPacingPane(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC)
	fresh := map[string]string{
		"mode": "predictive", "level": "1.5000", "budget": "6", "available": "2", "busy": "3", "ringing": "1",
		"waiting": "0", "dialing": "5", "answer_rate": "0.3500", "abandon_rate_window": "0.0120",
		"abandon_rate_day": "0.0200", "updated_at": bridge.FormatTime(now.Add(-time.Second)), "reason": "predictive", "leader": "pbx1",
	}
	cases := []struct {
		name string
		p    map[string]string
		want []string
	}{
		{"fresh", fresh, []string{"predictive", "35.0%", "1.2%", "2.0%", "1.0s ago", "predictive · pacer pbx1"}},
		{"dials nothing", with(fresh, "nothing", "no operator logged in: dialing nothing"), []string{"no operator logged in"}},
		{"hard limit", with(fresh, "hard_limit", "1"), []string{"hard limit"}},
		{"stale", with(fresh, "updated_at", bridge.FormatTime(now.Add(-time.Minute))), []string{"no pacer", "dials nothing"}},
		{"hostile", with(fresh, "nothing", "x\x1b]0;owned\x07\u202e"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{At: now, Cells: []Cell{{Name: "101", Pacing: tc.p}}}
			out := Plain(snap, nil, "101", 8)
			if !strings.Contains(out, "PACING — cell 101") {
				t.Fatalf("no pacing pane:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("pane lacks %q:\n%s", w, out)
				}
			}
			if bad := termsafetest.Unsafe(out); bad != "" {
				t.Errorf("unsafe text reached the terminal: %q", bad)
			}
		})
	}
	if out := Plain(Snapshot{At: now, Cells: []Cell{{Name: "101"}}}, nil, "101", 8); strings.Contains(out, "PACING") {
		t.Error("an unpaced cell shows a pacing pane")
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}
