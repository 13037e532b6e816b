package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/dash"
	"github.com/multcall/dialbridge/redisq"
)

const monTrunkSettings = `
ami: {username: u, secret: topsecret}
originate: {channel: "PJSIP/{number}@default", context: agents, exten: s}
trunks:
  - {name: gw1, channel: "PJSIP/{number}@gw1", cps: 5, burst: 2, max_channels: 20, breaker: {failures: 3, cooldown: 10s}}
  - {name: gw2, channel: "PJSIP/{number}@gw2"}
queues:
  - {name: "101", threads: 10, trunk: gw1}
  - {name: "102", threads: 10}
  - {name: "103", threads: 10, trunk: gw1}
`

// The monitor is given every trunk of the settings with the cells on it,
// and --once prints their pane.
func TestMonitorTrunksFromSettings(t *testing.T) {
	s, err := config.Parse([]byte(monTrunkSettings))
	if err != nil {
		t.Fatal(err)
	}
	specs := monitorTrunks(s)
	if len(specs) != 2 {
		t.Fatalf("specs %+v", specs)
	}
	gw1 := specs[0]
	if gw1.Name != "gw1" || gw1.CPS != 5 || gw1.Burst != 2 || gw1.MaxChannels != 20 ||
		gw1.Breaker != (bridge.BreakerConfig{Failures: 3, Cooldown: 10 * time.Second}) || strings.Join(gw1.Cells, ",") != "101,103" {
		t.Errorf("gw1 %+v", gw1)
	}
	if gw2 := specs[1]; gw2.Name != "gw2" || gw2.Burst != 1 || gw2.Breaker.Failures != config.DefaultBreakerFailures || len(gw2.Cells) != 0 {
		t.Errorf("gw2 %+v", gw2)
	}

	mr := miniredis.RunT(t)
	at := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	monSeed(t, mr, at.Add(-1500*time.Millisecond))
	mr.SetTime(at)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	br := redisq.NewBreakerStore(rdb, "dialbridge", "gw1", "pbx1", gw1.Breaker)
	br.SetClock(func() time.Time { return at.Add(-4 * time.Second) })
	for _, id := range []string{"a", "b", "c"} {
		if _, err := br.Record(context.Background(), bridge.BreakerEvent{Verdict: bridge.BreakerFailure, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	coll := dash.NewCollector(rdb, "dialbridge", []string{"101"}, 12)
	coll.SetClock(func() time.Time { return at })
	coll.SetTrunks(specs)
	var out, errOut bytes.Buffer
	if code := monitorOnce(context.Background(), coll, "101", false, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	for _, want := range []string{"TRUNKS", "gw1          0/5         0/20", "1 OPEN", "host pbx1             OPEN after 3 failures, 4.0s ago; retries in 6.0s", "gw2          0/s (∞)     0 (∞)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--once lacks %q:\n%s", want, out.String())
		}
	}
}
