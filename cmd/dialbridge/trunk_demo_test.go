package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/redisq"
)

// amiCommand logs in to the simulator at addr and runs one CLI command
// (Action: Command), as the demo's help tells an operator to; it returns
// the Output lines.
func amiCommand(t *testing.T, addr, command string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "Action: Login\r\nUsername: dialbridge\r\nSecret: secret\r\nEvents: off\r\nActionID: l\r\n\r\n")
	fmt.Fprintf(c, "Action: Command\r\nCommand: %s\r\nActionID: c\r\n\r\n", command)
	r := bufio.NewReader(c)
	var msg []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("AMI: %v after %q", err, msg)
		}
		line = strings.TrimRight(line, "\r\n")
		if line != "" {
			msg = append(msg, line)
			continue
		}
		if slices.Contains(msg, "ActionID: c") {
			var out []string
			for _, l := range msg {
				if o, ok := strings.CutPrefix(l, "Output: "); ok {
					out = append(out, o)
				}
			}
			if !slices.Contains(msg, "Response: Success") {
				t.Fatalf("AMI Command %q: %q", command, msg)
			}
			return strings.Join(out, "\n")
		}
		msg = nil
	}
}

// TestDemoTrunkKillAndRevive runs the demo with its trunk (plain output),
// kills the trunk live the way its banner says (an AMI Command), sees the
// breaker open, revives it and sees the breaker close; the final snapshot
// has the trunks pane.
func TestDemoTrunkKillAndRevive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stats map[string]string
	o := demoOptions{
		cell: "101", threads: 50, rate: 30, operators: "3", ringTimeout: time.Second,
		rules: demoMix(200 * time.Millisecond),
		ops:   opsim.Options{AnswerMin: 20 * time.Millisecond, AnswerMax: 80 * time.Millisecond, Seed: 7},
		trunk: demoTrunk{cps: 20, burst: 2, channels: 20, cooldown: 2 * time.Second},
		inspect: func(rdb redis.UniversalClient) {
			stats, _ = rdb.HGetAll(context.Background(), redisq.NewTrunkKeys("dialbridge", demoTrunkName).Stats()).Result()
		},
	}
	d, out, done := startDemo(ctx, t, o)
	ami := fmt.Sprintf("127.0.0.1:%d", d.settings.AMI.Port)
	mode := func() bridge.BreakerMode { return d.trunk.BreakerState().Mode }

	if got := amiCommand(t, ami, "amisim kill gw1"); got != "trunk gw1 dead (congestion)" {
		t.Errorf("kill: %q", got)
	}
	waitFor(t, 30*time.Second, "the breaker to open on the dead trunk", func() bool { return mode() == bridge.BreakerOpen })
	if got := amiCommand(t, ami, "amisim revive gw1"); got != "trunk gw1 alive" {
		t.Errorf("revive: %q", got)
	}
	waitFor(t, 30*time.Second, "the probe to close the breaker", func() bool { return mode() == bridge.BreakerClosed })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	txt := out.String()
	for _, want := range []string{"trunk gw1: cps 20, burst 2, max_channels 20", "Command: amisim kill gw1", "TRUNKS", "gw1 "} {
		if !strings.Contains(txt, want) {
			t.Errorf("output lacks %q:\n%s", want, txt)
		}
	}
	if stats["granted"] == "" || stats["granted"] == "0" {
		t.Errorf("the trunk granted nothing: %v", stats)
	}
}
