package dash

import (
	"strings"
	"testing"
	"time"
)

// TestHoldShown: a daemon that claims nothing because its replicas do not
// acknowledge says so under its line, in the plain output too, and the
// text from Redis is escaped on the way.
func TestHoldShown(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	c := fakeCell(at, 100)
	c.Instances[0].Hold = "redis replicas: no replica acknowledged the dialing decision (WAIT 1: 0 acknowledged within 100ms)\x1b[2J"
	out := Plain(sanitize(Snapshot{At: at, Cells: []Cell{c}}), nil, "", 5)
	if !strings.Contains(out, "NOT CLAIMING: redis replicas: no replica acknowledged the dialing decision") {
		t.Fatalf("hold not shown:\n%s", out)
	}
	if strings.Contains(out, "\x1b") {
		t.Fatal("the hold text reached the terminal unescaped")
	}
	if strings.Count(out, "NOT CLAIMING") != 1 {
		t.Fatalf("hold shown for instances that claim:\n%s", out)
	}
}
