package redisq

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/multcall/dialbridge/bridge"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	k := NewKeys("P", "C")
	tests := []struct{ got, want string }{
		{k.Dial(), "P:{C}:dial"},
		{k.Claimed("i1"), "P:{C}:claimed:i1"},
		{k.ClaimedPattern(), "P:{C}:claimed:*"},
		{k.Ack(), "P:{C}:ack"},
		{k.Confirm(), "P:{C}:confirm"},
		{k.ConfirmFor("i1"), "P:{C}:confirm:i1"},
		{k.Results(), "P:{C}:results"},
		{k.Call("c-1"), "P:{C}:call:c-1"},
		{k.Dead(), "P:{C}:dead"},
		{k.Stats(), "P:{C}:stats"},
		{k.Instance("i1"), "P:{C}:instance:i1"},
		{k.InstancePattern(), "P:{C}:instance:*"},
		{k.Settled("n"), "P:{C}:settled:n"},
		{k.Base(), "P:{C}:"},
		{NewKeys("a*b", "c?[d]").ClaimedPattern(), `a\*b:{c\?\[d\]}:claimed:*`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestClaimNext(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	// Multcall LPUSHes: c1 is the oldest, at the right.
	for _, id := range []string{"c1", "c2", "c3"} {
		if _, err := m.Lpush(k.Dial(), string(rqRaw(id))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Lpush(k.Dial(), ""); err != nil { // an empty element is a command too
		t.Fatal(err)
	}
	for i, want := range [][]byte{rqRaw("c1"), rqRaw("c2"), rqRaw("c3"), {}} {
		got, err := q.ClaimNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || !bytes.Equal(got, want) {
			t.Fatalf("claim %d: got %q, want %q", i, got, want)
		}
		claimed := rqList(t, m, k.Claimed(rqInst))
		if len(claimed) != i+1 || claimed[0] != string(want) {
			t.Fatalf("claim %d: claimed list %q", i, claimed)
		}
	}
	if m.Exists(k.Dial()) {
		t.Fatal("dial list should be empty")
	}
	start := time.Now()
	got, err := q.ClaimNext(ctx)
	if err != nil || got != nil {
		t.Fatalf("empty dial list: got %q, %v; want nil, nil", got, err)
	}
	if el := time.Since(start); el < 900*time.Millisecond || el > 5*time.Second {
		t.Fatalf("empty claim returned after %s, want about 1s", el)
	}
}

func TestBegin(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	raw := rqRaw("c-1")
	c := rqCall("c-1", raw, "tok-1")

	dup, err := q.Begin(ctx, c)
	if err != nil || dup {
		t.Fatalf("first Begin: dup=%v err=%v", dup, err)
	}
	want := map[string]string{
		"id": "c-1", "cell": rqCell, "instance": rqInst, "number": "5511999990000",
		"state": "acked", "received_at": "2025-03-01T12:00:00.123Z", "attempts": "0",
		"token": "tok-1", "raw": string(raw),
	}
	got, err := q.Call(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hash:\n got %v\nwant %v", got, want)
	}
	if ttl := m.TTL(k.Call("c-1")); ttl != DefaultCallTTL {
		t.Fatalf("hash TTL %s, want %s", ttl, DefaultCallTTL)
	}
	acks := rqList(t, m, k.Ack())
	wantAck := `{"id":"c-1","cell":"101","instance":"pbx1-4711","received_at":"2025-03-01T12:00:00.123Z"}`
	if len(acks) != 1 || acks[0] != wantAck {
		t.Fatalf("acks %q, want [%s]", acks, wantAck)
	}
	if s := rqStats(t, rdb); s["claimed"] != 1 {
		t.Fatalf("stats %v", s)
	}

	before := m.Dump()
	tests := []struct {
		name    string
		token   string
		wantDup bool
	}{
		{"another claim of the same id is a duplicate", "tok-2", true},
		{"a claim without token is a duplicate", "", true},
		{"a retry of the same claim is not", "tok-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c2 := rqCall("c-1", raw, tt.token)
			c2.ReceivedAt = rqT0.Add(time.Minute)
			dup, err := q.Begin(ctx, c2)
			if err != nil || dup != tt.wantDup {
				t.Fatalf("dup=%v err=%v, want dup=%v", dup, err, tt.wantDup)
			}
			if after := m.Dump(); after != before {
				t.Fatalf("Begin changed Redis:\nbefore %s\nafter %s", before, after)
			}
		})
	}
}

func TestBeginErrorNamesCall(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	m.Close()
	_, err := q.Begin(rqCtx(t), rqCall("c-9", rqRaw("c-9"), "t"))
	if err == nil || !strings.HasPrefix(err.Error(), "begin c-9: ") {
		t.Fatalf("err = %v, want it to start with \"begin c-9: \"", err)
	}
}

func TestMarkDialingAndAnswered(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	c := rqCall("c-2", rqRaw("c-2"), "tok")
	if _, err := q.Begin(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.CallCode = "987654"
	c.ConfirmedAt = rqT0.Add(time.Second)
	c.DialedAt = rqT0.Add(2 * time.Second)
	for attempt := 1; attempt <= 2; attempt++ {
		c.Attempts = attempt
		c.ChannelID = fmt.Sprintf("tok-%d", attempt)
		if err := q.MarkDialing(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	h := func(f string) string { return m.HGet(k.Call("c-2"), f) }
	for f, want := range map[string]string{
		"state": "originating", "call_code": "987654", "confirmed_at": "2025-03-01T12:00:01.123Z",
		"dialed_at": "2025-03-01T12:00:02.123Z", "attempts": "2", "channel_id": "tok-2",
	} {
		if got := h(f); got != want {
			t.Errorf("after MarkDialing %s = %q, want %q", f, got, want)
		}
	}
	if s := rqStats(t, rdb); s["dialed"] != 1 {
		t.Errorf("dialed = %d after two attempts of one call, want 1", s["dialed"])
	}

	c.AnsweredAt = rqT0.Add(5 * time.Second)
	c.Channel = "PJSIP/trunk-00000012"
	if err := q.MarkAnswered(ctx, c); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"state": "answered", "answered_at": "2025-03-01T12:00:05.123Z",
		"channel": "PJSIP/trunk-00000012", "uniqueid": "tok-2", "attempts": "2",
	} {
		if got := h(f); got != want {
			t.Errorf("after MarkAnswered %s = %q, want %q", f, got, want)
		}
	}
	if s := rqStats(t, rdb); s["answered"] != 0 {
		t.Errorf("MarkAnswered counted: %v", s)
	}

	// A hash already settled is left alone, and MarkDialing says the call
	// is no longer ours (so the bridge does not dial).
	m.HSet(k.Call("c-2"), "state", "done")
	before := m.Dump()
	if err := q.MarkDialing(ctx, c); !errors.Is(err, bridge.ErrNotOwner) {
		t.Fatalf("MarkDialing on a settled hash: %v, want ErrNotOwner", err)
	}
	if err := q.MarkAnswered(ctx, c); err != nil {
		t.Fatal(err)
	}
	if m.Dump() != before {
		t.Fatal("Mark* changed a settled hash")
	}

	// A hash that vanished (recovery requeued the command) or that another
	// claim owns is not recreated: dialing it could dial twice.
	m.Del(k.Call("c-2"))
	if err := q.MarkDialing(ctx, c); !errors.Is(err, bridge.ErrNotOwner) {
		t.Fatalf("MarkDialing on a missing hash: %v, want ErrNotOwner", err)
	}
	if m.Exists(k.Call("c-2")) {
		t.Fatal("MarkDialing recreated a missing hash")
	}
	m.HSet(k.Call("c-2"), "state", "acked", "token", "someone-else")
	if err := q.MarkDialing(ctx, c); !errors.Is(err, bridge.ErrNotOwner) {
		t.Fatalf("MarkDialing on another claim's hash: %v, want ErrNotOwner", err)
	}
	if m.HGet(k.Call("c-2"), "state") != "acked" {
		t.Fatal("MarkDialing changed another claim's hash")
	}
}

func rqResult(id string, status bridge.Status) *bridge.Result {
	return &bridge.Result{
		ID: id, CallCode: "987654", Cell: rqCell, Status: status, Reason: 4, Cause: 16,
		CauseText: "Normal Clearing", Uniqueid: "tok-1", Channel: "PJSIP/trunk-00000012",
		Attempts: 1, ReceivedAt: "2025-03-01T12:00:00.123Z", ConfirmedAt: "2025-03-01T12:00:01.123Z",
		DialedAt: "2025-03-01T12:00:02.123Z", AnsweredAt: "2025-03-01T12:00:05.123Z",
		EndedAt: "2025-03-01T12:01:05.123Z", TalkMS: 60000, Instance: rqInst,
	}
}

func TestFinish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   bridge.Status
		ownsHash bool
	}{
		{bridge.StatusAnswered, true},
		{bridge.StatusBusy, true},
		{bridge.StatusAckTimeout, true},
		{bridge.StatusUnknown, true},
		{bridge.StatusDuplicate, false},
		{bridge.StatusInvalid, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			m, rdb := rqRedis(t)
			ctx := rqCtx(t)
			q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
			k := q.Keys()
			raw := rqRaw("c-3")
			// The call's hash exists (this call's, or for a duplicate the
			// original's) with the 7-day safety TTL.
			if _, err := q.Begin(ctx, rqCall("c-3", raw, "orig")); err != nil {
				t.Fatal(err)
			}
			m.FastForward(time.Hour)
			rqClaim(t, m, rqInst, rqRaw("other"))
			rqClaim(t, m, rqInst, raw)
			hashBefore, _ := q.Call(ctx, "c-3")

			r := rqResult("c-3", tt.status)
			settled, err := q.Finish(ctx, raw, r)
			if err != nil || !settled {
				t.Fatalf("Finish: settled=%v err=%v", settled, err)
			}
			if res := rqList(t, m, k.Results()); len(res) != 1 || res[0] != string(r.JSON()) {
				t.Fatalf("results %q", res)
			}
			if cl := rqList(t, m, k.Claimed(rqInst)); len(cl) != 1 || cl[0] != string(rqRaw("other")) {
				t.Fatalf("claimed %q, want only the other command", cl)
			}
			hash, _ := q.Call(ctx, "c-3")
			if tt.ownsHash {
				for f, want := range map[string]string{
					"state": "done", "status": string(tt.status), "result": string(r.JSON()),
					"reason": "4", "cause": "16", "cause_txt": "Normal Clearing", "attempts": "1",
					"ended_at": r.EndedAt, "answered_at": r.AnsweredAt, "talk_ms": "60000",
					"uniqueid": "tok-1", "channel": "PJSIP/trunk-00000012", "call_code": "987654",
					"number": "5511999990000", "token": "orig",
				} {
					if hash[f] != want {
						t.Errorf("hash %s = %q, want %q", f, hash[f], want)
					}
				}
				if ttl := m.TTL(k.Call("c-3")); ttl != 24*time.Hour {
					t.Errorf("hash TTL %s, want 24h", ttl)
				}
			} else {
				if fmt.Sprint(hash) != fmt.Sprint(hashBefore) {
					t.Errorf("a %s result changed the call hash:\nbefore %v\nafter  %v", tt.status, hashBefore, hash)
				}
				if ttl := m.TTL(k.Call("c-3")); ttl != DefaultCallTTL-time.Hour {
					t.Errorf("hash TTL changed to %s", ttl)
				}
			}
			if s := rqStats(t, rdb); s[string(tt.status)] != 1 || s["results"] != 1 {
				t.Errorf("stats %v", s)
			}

			// Finish again (a retry, or a second settle): nothing changes.
			before := m.Dump()
			settled, err = q.Finish(ctx, raw, r)
			if err != nil || settled {
				t.Fatalf("second Finish: settled=%v err=%v, want false, nil", settled, err)
			}
			if m.Dump() != before {
				t.Fatal("second Finish changed Redis")
			}
		})
	}
}

// TestFinishIdenticalCopies: Multcall pushed the same bytes twice; the first
// copy is the call, the second its duplicate. However their Finish calls are
// repeated, each copy is settled by its own Finish, once.
func TestFinishIdenticalCopies(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	raw := rqRaw("c-4")
	rqClaim(t, m, rqInst, raw)
	rqClaim(t, m, rqInst, raw)
	if dup, err := q.Begin(ctx, rqCall("c-4", raw, "a")); err != nil || dup {
		t.Fatal(dup, err)
	}
	if dup, err := q.Begin(ctx, rqCall("c-4", raw, "b")); err != nil || !dup {
		t.Fatal(dup, err)
	}
	orig := rqResult("c-4", bridge.StatusAnswered)
	dupRes := rqResult("c-4", bridge.StatusDuplicate)

	// The duplicate settles; its reply is "lost" (simulated: the nonce of
	// the attempt is kept as after an error), and the retry must not take
	// the call's copy.
	if ok, err := q.Finish(ctx, raw, dupRes); err != nil || !ok {
		t.Fatal(ok, err)
	}
	q.mu.Lock()
	if len(q.pending) != 0 {
		t.Fatalf("pending nonces after success: %v", q.pending)
	}
	q.mu.Unlock()
	markers := 0
	for _, key := range m.Keys() {
		if strings.HasPrefix(key, k.Settled("")) {
			markers++
			q.mu.Lock()
			q.pending[dupRes] = strings.TrimPrefix(key, k.Settled(""))
			q.mu.Unlock()
		}
	}
	if markers != 1 {
		t.Fatalf("%d settle markers, want 1", markers)
	}
	if ok, err := q.Finish(ctx, raw, dupRes); err != nil || ok {
		t.Fatalf("retried duplicate Finish: ok=%v err=%v, want false", ok, err)
	}
	if cl := rqList(t, m, k.Claimed(rqInst)); len(cl) != 1 {
		t.Fatalf("the retry took the call's copy: claimed %q", cl)
	}

	// The call settles, then retries: the retry sees the hash done.
	if ok, err := q.Finish(ctx, raw, orig); err != nil || !ok {
		t.Fatal(ok, err)
	}
	rqClaim(t, m, rqInst, raw) // a third copy, claimed later, not yet settled
	if ok, err := q.Finish(ctx, raw, orig); err != nil || ok {
		t.Fatalf("retried Finish: ok=%v err=%v, want false", ok, err)
	}
	if cl := rqList(t, m, k.Claimed(rqInst)); len(cl) != 1 {
		t.Fatalf("retried Finish took another claim's copy: %q", cl)
	}
	res := rqList(t, m, k.Results())
	if len(res) != 2 || res[0] != string(orig.JSON()) || res[1] != string(dupRes.JSON()) {
		t.Fatalf("results %q", res)
	}
}

func TestFinishErrorKeepsNonce(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	r := rqResult("c-5", bridge.StatusDuplicate)
	m.Close()
	_, err := q.Finish(rqCtx(t), rqRaw("c-5"), r)
	if err == nil || !strings.HasPrefix(err.Error(), "finish c-5: ") {
		t.Fatalf("err = %v", err)
	}
	q.mu.Lock()
	nonce := q.pending[r]
	q.mu.Unlock()
	if nonce == "" {
		t.Fatal("no nonce kept after a failed Finish")
	}
	rqRestart(t, m)
	rqClaim(t, m, rqInst, rqRaw("c-5"))
	if ok, err := q.Finish(rqCtx(t), rqRaw("c-5"), r); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !m.Exists(q.Keys().Settled(nonce)) {
		t.Fatal("the retry did not use the kept nonce")
	}
	if ttl := m.TTL(q.Keys().Settled(nonce)); ttl != settledMarkerTTL {
		t.Fatalf("marker TTL %s", ttl)
	}
}

func TestBury(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 10<<20)
	notUTF8 := []byte("{\"id\":\"c-6\",\"number\":\"\xff\xfe\"}")
	// 4095 ASCII bytes then a 3-byte rune: the 4 KB cut splits the rune.
	cutRune := append(bytes.Repeat([]byte("a"), DeadRawMax-1), []byte("€€")...)
	tests := []struct {
		name      string
		raw       []byte
		result    bool
		wantRaw   string
		wantEnc   string
		wantTrunc bool
	}{
		{"invalid JSON without id", []byte("{not json"), false, "{not json", "", false},
		{"invalid with id and result", rqRaw("c-6"), true, string(rqRaw("c-6")), "", false},
		{"10 MB", big, false, strings.Repeat("x", DeadRawMax), "", true},
		{"10 MB with result", big, true, strings.Repeat("x", DeadRawMax), "", true},
		{"not UTF-8", notUTF8, true, base64.StdEncoding.EncodeToString(notUTF8), "base64", false},
		{"rune cut by the limit", cutRune, false, strings.Repeat("a", DeadRawMax-1), "", true},
		{"empty", []byte{}, false, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rdb := rqRedis(t)
			ctx := rqCtx(t)
			q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithClock(func() time.Time { return rqT0 }))
			k := q.Keys()
			rqClaim(t, m, rqInst, tt.raw)
			var r *bridge.Result
			if tt.result {
				r = &bridge.Result{ID: "c-6", Cell: rqCell, Status: bridge.StatusInvalid, Error: "bad number", Instance: rqInst}
			}
			cause := errors.New("invalid dial command: bad number")
			ok, err := q.Bury(ctx, tt.raw, cause, r)
			if err != nil || !ok {
				t.Fatalf("Bury: ok=%v err=%v", ok, err)
			}
			if m.Exists(k.Claimed(rqInst)) {
				t.Fatal("still claimed")
			}
			dead := rqList(t, m, k.Dead())
			if len(dead) != 1 {
				t.Fatalf("%d dead entries", len(dead))
			}
			if !utf8.ValidString(dead[0]) || len(dead[0]) > 2*DeadRawMax {
				t.Fatalf("dead entry is %d bytes", len(dead[0]))
			}
			var e map[string]any
			if err := json.Unmarshal([]byte(dead[0]), &e); err != nil {
				t.Fatalf("dead entry %q: %v", dead[0], err)
			}
			want := map[string]any{
				"error": cause.Error(), "raw": tt.wantRaw, "bytes": float64(len(tt.raw)),
				"at": "2025-03-01T12:00:00.123Z", "instance": rqInst,
			}
			if tt.wantEnc != "" {
				want["raw_encoding"] = tt.wantEnc
			}
			if tt.wantTrunc {
				want["truncated"] = true
			}
			if tt.result {
				want["id"] = "c-6"
			}
			if fmt.Sprint(e) != fmt.Sprint(want) {
				t.Fatalf("dead entry\n got %v\nwant %v", e, want)
			}
			res := rqList(t, m, k.Results())
			s := rqStats(t, rdb)
			if tt.result {
				if len(res) != 1 || res[0] != string(r.JSON()) {
					t.Fatalf("results %q", res)
				}
				if s["dead"] != 1 || s["invalid"] != 1 || s["results"] != 1 {
					t.Fatalf("stats %v", s)
				}
			} else {
				if len(res) != 0 {
					t.Fatalf("results %q", res)
				}
				if s["dead"] != 1 || s["invalid"] != 0 || s["results"] != 0 {
					t.Fatalf("stats %v", s)
				}
			}
			before := m.Dump()
			ok, err = q.Bury(ctx, tt.raw, cause, r)
			if err != nil || ok {
				t.Fatalf("second Bury: ok=%v err=%v, want false", ok, err)
			}
			if m.Dump() != before {
				t.Fatal("second Bury changed Redis")
			}
		})
	}
}

func TestCountStatsDepths(t *testing.T) {
	t.Parallel()
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	q := NewQueue(rdb, rqPrefix, rqCell, rqInst)
	k := q.Keys()
	if err := q.Count(ctx, "retries", 2); err != nil {
		t.Fatal(err)
	}
	if err := q.Count(ctx, "retries", 1); err != nil {
		t.Fatal(err)
	}
	m.HSet(k.Stats(), "note", "not a number")
	s, err := q.Stats(ctx)
	if err != nil || len(s) != 1 || s["retries"] != 3 {
		t.Fatalf("stats %v, %v", s, err)
	}

	push := func(key string, n int) {
		for i := 0; i < n; i++ {
			if _, err := m.Lpush(key, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(k.Dial(), 5)
	push(k.Ack(), 4)
	push(k.Confirm(), 3)
	push(k.Results(), 2)
	push(k.Dead(), 1)
	push(k.Claimed("a"), 2)
	push(k.Claimed("b"), 3)
	push(k.Claimed("unregistered"), 1)
	push(NewKeys(rqPrefix, "102").Claimed("a"), 7) // another cell
	m.SAdd(k.InstanceSet(), "a", "b", "c")         // c: registered, nothing claimed
	d, err := q.Depths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Dial != 5 || d.Ack != 4 || d.Confirm != 3 || d.Results != 2 || d.Dead != 1 || d.Claimed != 5 ||
		d.ClaimedBy["a"] != 2 || d.ClaimedBy["b"] != 3 || len(d.ClaimedBy) != 2 {
		t.Fatalf("depths %+v", d)
	}
	all, err := ScanClaimed(ctx, rdb, k)
	if err != nil || fmt.Sprint(all) != "[a b unregistered]" {
		t.Fatalf("ScanClaimed: %v %v", all, err)
	}
}
