package retry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestNext(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, MinBackoff},
		{MinBackoff, 2 * MinBackoff},
		{time.Second, 2 * time.Second},
		{1500 * time.Millisecond, MaxBackoff},
		{MaxBackoff, MaxBackoff},
	}
	for _, tt := range tests {
		if got := Next(tt.in); got != tt.want {
			t.Errorf("Next(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep ran out on a cancelled context")
	}
	if Sleep(ctx, 0) {
		t.Fatal("Sleep(0) ran out on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) || !Sleep(context.Background(), -time.Second) {
		t.Fatal("Sleep did not run out")
	}
}

// An outage is logged once when it starts and once when it ends, whatever
// the number of failed tries.
func TestHealthLogsStateChangesOnly(t *testing.T) {
	var buf bytes.Buffer
	h := NewHealth("redis", zerolog.New(&buf))
	for i := 0; i < 100; i++ {
		h.Down(errors.New("connection refused"))
	}
	if !h.IsDown() || h.Outages() != 1 {
		t.Fatalf("IsDown=%v Outages=%d", h.IsDown(), h.Outages())
	}
	h.Up()
	h.Up()
	h.Down(errors.New("again"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "unavailable") || !strings.Contains(lines[1], `"failed_tries":100`) {
		t.Fatalf("log lines:\n%s", buf.String())
	}
	if h.Outages() != 2 {
		t.Fatalf("Outages=%d, want 2", h.Outages())
	}
}
