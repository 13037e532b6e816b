package httpapi

import (
	"context"
	"strings"
	"testing"
)

// TestHealthHold: a cell held back (replicas that do not acknowledge) is
// down and says why; nothing held back changes nothing.
func TestHealthHold(t *testing.T) {
	for _, tt := range []struct {
		name, hold string
		ok         bool
	}{
		{"nothing held", "", true},
		{"replicas", "redis replicas: no replica acknowledged the dialing decision (WAIT 1: 0 acknowledged within 100ms)", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Checker{Hold: func() string { return tt.hold }}
			rep := c.Check(context.Background())
			if rep.OK() != tt.ok || rep.Hold != tt.hold {
				t.Fatalf("%+v", rep)
			}
			if !tt.ok && (len(rep.Reasons) != 1 || !strings.Contains(rep.Reasons[0], "not claiming: redis replicas: no replica acknowledged")) {
				t.Fatalf("reasons %q", rep.Reasons)
			}
			if !rep.Ready() {
				t.Fatal("a held cell is still ready (Redis and AMI up)")
			}
		})
	}
}
