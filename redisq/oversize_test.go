package redisq

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rqGuarded is a client made by Dial (so with the reply guard) on m's addr.
func rqGuarded(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	rdb, err := Dial(rqCtx(t), DialOptions{Host: host, Port: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// The RESP scanner sees every bulk header, whatever the read sizes.
func TestRespScanner(t *testing.T) {
	big := "$70000\r\n"
	tests := []struct {
		name   string
		stream string
		trips  bool
	}{
		{"small bulk", "$5\r\nhello\r\n", false},
		{"null bulk", "$-1\r\n_\r\n", false},
		{"array of bulks", "*2\r\n$3\r\nabc\r\n$65536\r\n" + strings.Repeat("x", 65536) + "\r\n", false},
		{"bulk header past max", big, true},
		{"dollar inside a body is data", "$10\r\n$999999999\r\n", false},
		{"simple string with digits", "+OK 99999999\r\n:99999999\r\n", false},
		{"verbatim too big", "=70000\r\n", true},
		{"blob error too big", "!70000\r\n", true},
		{"map then big", "%1\r\n$1\r\na\r\n" + big, true},
		{"push frame small", ">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n", false},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, 7, 4096} {
			s := respScanner{max: MaxItemBytes}
			var err error
			for i := 0; i < len(tt.stream) && err == nil; i += chunk {
				err = s.feed([]byte(tt.stream[i:min(i+chunk, len(tt.stream))]))
			}
			if (err != nil) != tt.trips || (err != nil && !errors.Is(err, ErrItemTooBig)) {
				t.Errorf("%s, chunks of %d: err %v, want trip=%v", tt.name, chunk, err, tt.trips)
			}
		}
	}
}

// A peer that answers with a 512 MB string (Redis's own maximum) is
// refused after its header: the client allocates nothing near that size.
// A fake server, not miniredis: miniredis runs in this process and would
// allocate the item itself.
func TestGuardRefusesHugeReplyUnread(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				c.Write([]byte("$536870912\r\n"))
				chunk := bytes.Repeat([]byte("A"), 1<<20)
				for i := 0; i < 512; i++ {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	o := &redis.Options{Addr: ln.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1}
	o.Dialer = guardDialer(redis.NewDialer(o), MaxItemBytes)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = rdb.Get(rqCtx(t), "k").Err()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrItemTooBig) {
		t.Fatalf("err %v, want ErrItemTooBig", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("the refused reply cost %d MB of allocations", grew>>20)
	}
}

// A 16 MB dial item (256 times the limit) is never read by the daemon: the blocking claim is
// refused by the connection and the item settled inside Redis (dead, cut to
// 1 KB, base64), and the next command is claimed normally.
func TestOversizedDialItemIsNeverRead(t *testing.T) {
	m, plain := rqRedis(t)
	ctx := rqCtx(t)
	rdb := rqGuarded(t, m.Addr())
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	huge := bytes.Repeat([]byte("A"), 16<<20)
	copy(huge, `{"id":"big","number":"1"`)
	if err := plain.LPush(ctx, k.Dial(), huge).Err(); err != nil {
		t.Fatal(err)
	}
	huge = nil

	got, err := q.ClaimNext(ctx)
	if err != nil || got != nil {
		t.Fatalf("claim of an oversized item: %q, %v; want nothing and no error", got, err)
	}
	if l, _ := m.List(k.Claimed(rqInst)); len(l) != 0 {
		t.Errorf("claimed list still holds %d items", len(l))
	}
	dead, _ := m.List(k.Dead())
	if len(dead) != 1 {
		t.Fatalf("dead list: %d entries, want 1", len(dead))
	}
	var e struct {
		Error, Raw, RawEncoding string
		Bytes                   int
		Truncated               bool
	}
	if err := json.Unmarshal([]byte(dead[0]), &e); err != nil {
		t.Fatalf("dead entry %q: %v", dead[0][:min(200, len(dead[0]))], err)
	}
	raw, err := base64.StdEncoding.DecodeString(e.Raw)
	if err != nil || len(raw) != OversizeKeep || !bytes.HasPrefix(raw, []byte(`{"id":"big"`)) || e.Bytes != 16<<20 || !e.Truncated || !strings.Contains(e.Error, "bytes") {
		t.Errorf("dead entry: error %q bytes %d truncated %v raw %d bytes (%v)", e.Error, e.Bytes, e.Truncated, len(raw), err)
	}
	if v := m.HGet(k.Stats(), "oversize"); v != "1" {
		t.Errorf("oversize counter %q", v)
	}
	// The connection that refused the item is gone; the next claim works.
	plain.LPush(ctx, k.Dial(), rqRaw("next"))
	if got, err := q.ClaimNext(ctx); err != nil || !bytes.Equal(got, rqRaw("next")) {
		t.Fatalf("next claim: %q, %v", got, err)
	}
}

// Batch claims look at each item's size inside Redis: an oversized item in
// a backlog is buried and the ones around it are claimed in order.
func TestClaimMoreBuriesOversizedItems(t *testing.T) {
	m, plain := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rqGuarded(t, m.Addr()), rqPrefix, rqCell, rqInst)
	k := q.Keys()
	plain.LPush(ctx, k.Dial(), rqRaw("a"), bytes.Repeat([]byte("x"), MaxItemBytes+1), rqRaw("b"), bytes.Repeat([]byte("y"), MaxItemBytes))
	got, err := q.ClaimMore(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly MaxItemBytes is allowed (the parser refuses it later).
	if len(got) != 3 || !bytes.Equal(got[0], rqRaw("a")) || !bytes.Equal(got[1], rqRaw("b")) || len(got[2]) != MaxItemBytes {
		t.Fatalf("claimed %d items", len(got))
	}
	if dead, _ := m.List(k.Dead()); len(dead) != 1 {
		t.Fatalf("dead: %d entries", len(dead))
	}
	if l, _ := m.List(k.Claimed(rqInst)); len(l) != 3 {
		t.Fatalf("claimed list %d items, want 3", len(l))
	}
}

// A dead daemon's claimed list with an oversized item: adoption buries it
// and adopts the rest.
func TestAdoptionBuriesOversizedItems(t *testing.T) {
	m, plain := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rqGuarded(t, m.Addr()), rqPrefix, rqCell, rqInst)
	k := q.Keys()
	plain.LPush(ctx, k.Claimed("gone-1"), rqRaw("o1"), bytes.Repeat([]byte("z"), 1<<20), rqRaw("o2"))
	plain.SAdd(ctx, k.InstanceSet(), "gone-1")
	o, err := q.AdoptOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(o) != 2 || !bytes.Equal(o[0].Raw, rqRaw("o2")) || !bytes.Equal(o[1].Raw, rqRaw("o1")) {
		t.Fatalf("adopted %d: %q", len(o), o)
	}
	if dead, _ := m.List(k.Dead()); len(dead) != 1 {
		t.Fatalf("dead: %d entries", len(dead))
	}
}

// The dead list keeps the newest DeadCap entries.
func TestDeadListIsCapped(t *testing.T) {
	m, plain := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(plain, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	for i := 0; i < DeadCap+5; i++ {
		plain.LPush(ctx, k.Dead(), "old")
	}
	raw := []byte("not json")
	plain.LPush(ctx, k.Claimed(rqInst), raw)
	if ok, err := q.Bury(ctx, raw, errors.New("malformed"), nil); !ok || err != nil {
		t.Fatalf("bury: %v %v", ok, err)
	}
	l, _ := m.List(k.Dead())
	if len(l) != DeadCap || !strings.Contains(l[0], "malformed") {
		t.Fatalf("dead list %d entries, newest %q", len(l), l[0])
	}
}

// Confirmations over the size limit are dropped inside Redis and counted;
// the others drained with them are delivered.
func TestConfirmDrainDropsOversized(t *testing.T) {
	m, plain := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys(rqPrefix, rqCell)
	plain.LPush(ctx, k.Confirm(), `{"id":"c1","call_code":"1"}`, strings.Repeat("q", 2*MaxItemBytes), `{"id":"c2","call_code":"2"}`)
	out, err := confirmDrainScript.Run(ctx, plain, []string{k.ConfirmFor(rqInst), k.Confirm(), k.Stats()}, 10, MaxConfirmBytes).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[0] != "0" || !strings.Contains(out[1], "c1") || !strings.Contains(out[2], "c2") {
		t.Fatalf("drained %q", out)
	}
	if v := m.HGet(k.Stats(), "confirm_invalid"); v != "1" {
		t.Fatalf("confirm_invalid %q", v)
	}
}

// TestOversizeOnRealRedis runs the size screening on a real redis-server
// (DIALBRIDGE_TEST_REDIS; the integration tier): Redis's own Lua (cjson,
// string.byte) and the guard against its RESP3 replies.
func TestOversizeOnRealRedis(t *testing.T) {
	addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
	if addr == "" {
		t.Skip("DIALBRIDGE_TEST_REDIS not set")
	}
	ctx := rqCtx(t)
	rdb := rqGuarded(t, addr)
	prefix := "rqbig" + strconv.FormatInt(time.Now().UnixNano(), 36)
	q := NewQueue(rdb, prefix, rqCell, rqInst)
	k := q.Keys()
	plain := redis.NewClient(&redis.Options{Addr: addr})
	defer plain.Close()
	defer func() {
		plain.Del(context.Background(), k.Dial(), k.Claimed(rqInst), k.Dead(), k.Stats(), k.Claimed("gone-2"), k.InstanceSet())
	}()
	big := bytes.Repeat([]byte{0xff, 'B', 0x00}, 400000) // not UTF-8, with NULs
	plain.LPush(ctx, k.Dial(), big)
	if got, err := q.ClaimNext(ctx); err != nil || got != nil {
		t.Fatalf("blocking claim: %d bytes, %v", len(got), err)
	}
	plain.LPush(ctx, k.Dial(), rqRaw("a"), big, rqRaw("b"))
	got, err := q.ClaimMore(ctx, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("batch claim: %d, %v", len(got), err)
	}
	plain.LPush(ctx, k.Claimed("gone-2"), big, rqRaw("c"))
	plain.SAdd(ctx, k.InstanceSet(), "gone-2")
	if o, err := q.AdoptOrphans(ctx); err != nil || len(o) != 1 {
		t.Fatalf("adopt: %d, %v", len(o), err)
	}
	dead, err := plain.LRange(ctx, k.Dead(), 0, -1).Result()
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead: %d entries, %v", len(dead), err)
	}
	for _, d := range dead {
		var full map[string]any
		if err := json.Unmarshal([]byte(d), &full); err != nil {
			t.Fatalf("dead entry is not JSON: %v", err)
		}
		raw, err := base64.StdEncoding.DecodeString(full["raw"].(string))
		if err != nil || !bytes.Equal(raw, big[:OversizeKeep]) || int(full["bytes"].(float64)) != len(big) || full["raw_encoding"] != "base64" {
			t.Errorf("dead entry: %v (raw %d bytes, %v)", full["error"], len(raw), err)
		}
	}
}
