package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// The daemon behind Sentinel ($DIALBRIDGE_TEST_REDIS_SENTINEL, integration
// tier): settings with redis.sentinel only (no host/port), every command
// answered once. The failover itself is the durability tests' (they kill
// the master).
func TestDaemonThroughSentinel(t *testing.T) {
	spec := os.Getenv("DIALBRIDGE_TEST_REDIS_SENTINEL")
	if spec == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS_SENTINEL not set")
	}
	master, addrs, _ := strings.Cut(spec, "@")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, err := amisim.New(amisim.Config{Rules: mustRules(t, "prefix=1:answer,ring=10ms,talk=50ms"), AuthDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	prefix, cell := testPrefix(t), "s1"
	s, err := config.Parse([]byte(fmt.Sprintf(`
log: {level: warn, format: console}
redis: {host: 192.0.2.1, port: 1, sentinel: {master: %s, addrs: ["%s"]}, prefix: %s}
ami: {host: 127.0.0.1, port: %d, username: dialbridge, secret: secret}
timeouts: {command_response: 10s, command_ack: 20s, shutdown_grace: 5s}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s, timeout: 5s}
queues: [{name: "%s", threads: 20}]
`, master, strings.ReplaceAll(addrs, ",", `", "`), prefix, sim.Port(), cell)))
	if err != nil {
		t.Fatal(err)
	}
	// host/port name a black hole: only the sentinels lead to Redis.
	rdb, err := redisq.Dial(ctx, redisq.DialOptions{SentinelMaster: master, SentinelAddrs: strings.Split(addrs, ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	mc := multcallsim.New(rdb, prefix, cell, multcallsim.Options{})
	bg, stopBG := context.WithCancel(ctx)
	confirmerDone := make(chan struct{})
	go func() { defer close(confirmerDone); _ = mc.RunConfirmer(bg) }()
	defer func() { stopBG(); <-confirmerDone }()
	dctx, dstop := context.WithCancel(ctx)
	d, err := startDaemon(dctx, s, cell, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		dstop()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	defer func() { dstop(); <-done }()
	const n = 100
	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = multcallsim.Command("c"+strconv.Itoa(i), "1"+strconv.Itoa(1000+i))
	}
	if err := mc.Push(ctx, cmds...); err != nil {
		t.Fatal(err)
	}
	rs, err := mc.CollectResults(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rs {
		seen[r.ID]++
		if r.Status != bridge.StatusAnswered {
			t.Errorf("%s: %s %s", r.ID, r.Status, r.Error)
		}
	}
	for i := 0; i < n; i++ {
		if id := "c" + strconv.Itoa(i); seen[id] != 1 {
			t.Errorf("%s: %d results", id, seen[id])
		}
	}
	if got := sim.OriginateCount(); got != n {
		t.Errorf("%d originates, want %d", got, n)
	}
}
