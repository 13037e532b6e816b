package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

// TestRedisACLUser runs the daemon as a Redis ACL user holding only
// redisq.DaemonCommands on its own keys (docs/OPERATIONS.md), through every
// path that touches Redis — claims and batch claims, every status, a
// duplicate, an invalid command, an ACK timeout, the recovery of a dead
// daemon's commands, a trunk's limiter and breaker — and checks that Redis
// refused nothing (ACL LOG).
// Real redis-server only: miniredis has no ACL.
func TestRedisACLUser(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set (the integration tier sets it)")
	}
	t.Parallel()
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	user := "dbacl" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const pass = "acl-test-password-0123"
	defer admin.Do(ctx, "ACL", "DELUSER", user)

	h := newHarness(t, harnessConfig{
		threads:   20,
		rules:     "prefix=105:busy;prefix=107:congestion;answer,ring=5ms,talk=20ms",
		redisAddr: addr,
		noDaemon:  true,
		mcOpt:     multcallsim.Options{Ignore: func(id string) bool { return id == "acl-ackto" }},
		tweak: func(s *config.Settings) {
			args := []any{"ACL", "SETUSER", user, ">" + pass}
			for _, r := range redisq.ACLSetUser(s.Redis.Prefix) {
				args = append(args, r)
			}
			if err := admin.Do(ctx, args...).Err(); err != nil {
				t.Fatalf("ACL SETUSER: %v", err)
			}
			s.Redis.Username, s.Redis.Password = user, pass
			// Through a trunk: its limiter and breaker scripts run as the
			// user too (congestion counts against the breaker, which must
			// not open here).
			trunkSettings(200, 10, 30, 1000, time.Minute)(s)
		},
	})
	k := h.mc.Keys()
	dead := "pbxacl-1"
	h.rdb.LPush(ctx, k.Claimed(dead), cmd("acl-orphan-1", "1001"), cmd("acl-orphan-2", "1002"))
	h.rdb.HSet(ctx, k.Call("acl-orphan-2"), "id", "acl-orphan-2", "instance", dead, "state", "originating", "attempts", 1)
	h.rdb.SAdd(ctx, k.InstanceSet(), dead)
	h.start()

	var cmds []string
	for i := 0; i < 60; i++ { // a backlog: batch claims
		cmds = append(cmds, cmd(fmt.Sprintf("acl-%d", i), fmt.Sprintf("10%d0%d", 5+2*(i%2), i)))
	}
	cmds = append(cmds, cmd("acl-dup", "1000"), cmd("acl-dup", "1000"), `{"id":"acl-bad","number":"x"}`, cmd("acl-ackto", "1000"))
	h.push(cmds...)
	got := h.results(60+2+1+1+2, 90*time.Second)
	if rs := got["acl-orphan-2"]; len(rs) != 1 || rs[0].Status != bridge.StatusUnknown {
		t.Errorf("orphan in doubt: %+v", rs)
	}
	if rs := got["acl-orphan-1"]; len(rs) != 1 || rs[0].Status != bridge.StatusAnswered {
		t.Errorf("orphan never dialed: %+v", rs)
	}
	if rs := got["acl-ackto"]; len(rs) != 1 || rs[0].Status != bridge.StatusAckTimeout {
		t.Errorf("ack timeout: %+v", rs)
	}
	if len(got["acl-dup"]) != 2 || len(got["acl-bad"]) != 1 {
		t.Errorf("duplicate %+v, invalid %+v", got["acl-dup"], got["acl-bad"])
	}
	if err := h.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	entries, err := admin.Do(ctx, "ACL", "LOG", "1000").Slice()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		m := aclEntry(e)
		// CONFIG GET is optional: refusing it only skips a start-up warning.
		if m["username"] == user && m["object"] != "config|get" {
			t.Errorf("Redis refused the daemon's user: %v", m)
		}
	}
}

// aclEntry reads one ACL LOG entry (RESP2 flat list or RESP3 map).
func aclEntry(e any) map[string]string {
	m := map[string]string{}
	switch v := e.(type) {
	case map[any]any:
		for k, x := range v {
			m[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			m[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	}
	return m
}
