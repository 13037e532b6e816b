package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/ami/amisim"
)

// TestWarnAMIRights: a manager user that may not list channels is told at
// start (adoption after a crash needs it); one that may is not.
func TestWarnAMIRights(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		denied []string
		warn   bool
	}{
		{"reporting granted", nil, false},
		{"no reporting", []string{"CoreShowChannels"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, err := amisim.New(amisim.Config{AuthDelay: 10 * time.Millisecond, Denied: tt.denied})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c := ami.New(ami.Options{Host: "127.0.0.1", Port: sim.Port(), Username: "dialbridge", Secret: "secret",
				CommandResponse: 10 * time.Second, Instance: "t"}, zerolog.Nop())
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out queueBuffer
			warnAMIRights(ctx, zerolog.New(&out), c)
			got := strings.Contains(out.String(), "cannot list channels")
			if got != tt.warn {
				t.Errorf("warned %v, want %v: %s", got, tt.warn, out.String())
			}
			if tt.warn && !strings.Contains(out.String(), "Permission denied") {
				t.Errorf("the warning does not say what Asterisk said: %s", out.String())
			}
		})
	}
}
