package redisq

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/internal/proc"
)

// TestAdoptOrphansOfAProcessGoneOnThisMachine is issue 16 part 4 on
// miniredis (whose keys never expire on the wall clock, so the TTL path
// cannot be what adopts): a heartbeat naming a process of this machine that
// no longer runs is taken for dead at once, and its list adopted; one
// naming a running process, a process of another machine or pid namespace,
// or a heartbeat without the process fields (an older version), is left
// alone until it expires.
func TestAdoptOrphansOfAProcessGoneOnThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	self := proc.Self()
	if !self.Complete() {
		t.Skip("/proc does not name this process fully")
	}
	// A process that stays up until killed (a test binary told to run no
	// test exits at once, and a zombie counts as gone).
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1) to run as the live process")
	}
	child := exec.Command(sleep, "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	childID, err := proc.Of(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys(rqPrefix, rqCell)
	beat := func(inst string, id proc.Identity, fields ...any) {
		args := append([]any{"instance", inst, "pid", strconv.Itoa(id.PID), "pstart", id.Start, "boot_id", id.Boot, "pid_ns", id.PidNS}, fields...)
		rdb.HSet(ctx, k.Instance(inst), args...)
		rdb.Expire(ctx, k.Instance(inst), time.Hour)
		rdb.SAdd(ctx, k.InstanceSet(), inst)
		rdb.LPush(ctx, k.Claimed(inst), `{"id":"`+inst+`-1","number":"1"}`)
	}
	other := self
	other.Boot = "another-machine"
	otherNS := childID
	otherNS.PidNS = "pid:[1]"
	beat("killed", childID)
	beat("running", self)
	beat("elsewhere", other)
	beat("other-ns", otherNS)
	rdb.HSet(ctx, k.Instance("old-version"), "instance", "old-version", "pid", strconv.Itoa(childID.PID))
	rdb.Expire(ctx, k.Instance("old-version"), time.Hour)
	rdb.SAdd(ctx, k.InstanceSet(), "old-version")
	rdb.LPush(ctx, k.Claimed("old-version"), `{"id":"old-1","number":"1"}`)

	q := NewQueue(rdb, rqPrefix, rqCell, "me")
	if o, err := q.AdoptOrphans(ctx); err != nil || len(o) != 0 {
		t.Fatalf("while the child runs: adopted %v, %v; want nothing", o, err)
	}
	if alive, err := q.Alive(ctx, "killed"); err != nil || !alive {
		t.Errorf("Alive(running child) = %v, %v", alive, err)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	o, err := q.AdoptOrphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(o) != 1 || o[0].Owner != "killed" || string(o[0].Raw) != `{"id":"killed-1","number":"1"}` {
		t.Fatalf("adopted %+v, want the killed process's one command", o)
	}
	if m.Exists(k.Instance("killed")) || m.Exists(k.Claimed("killed")) {
		t.Error("the killed process's heartbeat or list is left")
	}
	for _, inst := range []string{"running", "elsewhere", "other-ns", "old-version"} {
		if !m.Exists(k.Claimed(inst)) || !m.Exists(k.Instance(inst)) {
			t.Errorf("%s: its list or heartbeat was touched", inst)
		}
	}
	if alive, err := q.Alive(ctx, "running"); err != nil || !alive {
		t.Errorf("Alive(running) = %v, %v", alive, err)
	}
	rdb.HSet(ctx, k.Instance("killed"), "pid", strconv.Itoa(childID.PID), "pstart", childID.Start, "boot_id", childID.Boot, "pid_ns", childID.PidNS)
	if alive, err := q.Alive(ctx, "killed"); err != nil || alive {
		t.Errorf("Alive(killed, heartbeat present) = %v, %v; want dead", alive, err)
	}
	if alive, err := q.Alive(ctx, "never-was"); err != nil || alive {
		t.Errorf("Alive(no heartbeat) = %v, %v", alive, err)
	}
}

// TestAdoptScriptChecksTheProcess: the script takes a heartbeat for dead
// only when it still names the process found gone; a heartbeat rewritten
// in between (another process of the same instance name) keeps its list.
// On miniredis, and on a real Redis when DIALBRIDGE_TEST_REDIS is set.
func TestAdoptScriptChecksTheProcess(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) {
		_, rdb := rqRedis(t)
		testAdoptScriptChecksTheProcess(t, rdb, rqPrefix)
	})
	t.Run("redis-server", func(t *testing.T) {
		addr := os.Getenv("DIALBRIDGE_TEST_REDIS")
		if addr == "" {
			t.Skip("DIALBRIDGE_TEST_REDIS not set")
		}
		rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		t.Cleanup(func() { _ = rdb.Close() })
		prefix := "rqadopt" + strconv.FormatInt(time.Now().UnixNano(), 36)
		t.Cleanup(func() {
			keys, _ := scanKeys(context.Background(), rdb, globEscape(prefix)+"*")
			if len(keys) > 0 {
				rdb.Del(context.Background(), keys...)
			}
		})
		testAdoptScriptChecksTheProcess(t, rdb, prefix)
	})
}

func testAdoptScriptChecksTheProcess(t *testing.T, rdb *redis.Client, prefix string) {
	ctx := rqCtx(t)
	k := NewKeys(prefix, rqCell)
	rdb.HSet(ctx, k.Instance("x"), "pid", "41", "pstart", "900", "boot_id", "b")
	rdb.LPush(ctx, k.Claimed("x"), `{"id":"x-1","number":"1"}`)
	q := NewQueue(rdb, prefix, rqCell, "me")
	exists := func(key string) bool { return rdb.Exists(ctx, key).Val() == 1 }
	run := func(pid, start, boot string) []string {
		args := append(q.buryArgs(), pid, start, boot)
		items, err := adoptScript.Run(ctx, rdb,
			[]string{k.Instance("x"), k.Claimed("x"), q.claimed, k.Base() + "adopting:me", k.Dead(), k.Stats()}, args...).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		return items
	}
	for _, c := range [][3]string{{"", "", ""}, {"42", "900", "b"}, {"41", "901", "b"}, {"41", "900", "c"}} {
		if got := run(c[0], c[1], c[2]); len(got) != 0 {
			t.Errorf("expected %v: adopted %v from a heartbeat naming another process", c, got)
		}
	}
	if got := run("41", "900", "b"); len(got) != 1 || exists(k.Instance("x")) || exists(k.Claimed("x")) {
		t.Errorf("the very process: adopted %v, heartbeat left %v", got, exists(k.Instance("x")))
	}
}

// TestHeartbeatNamesItsProcess: a beat carries the AMI address and, on
// Linux, what tells this process from any other (internal/proc).
func TestHeartbeatNamesItsProcess(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	k := NewKeys(rqPrefix, rqCell)
	h := NewHeartbeat(rdb, k, "me", func() HeartbeatInfo { return HeartbeatInfo{AMI: "127.0.0.1:5038"} }, time.Minute, time.Second)
	if err := h.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.HGet(k.Instance("me"), "ami"); got != "127.0.0.1:5038" {
		t.Errorf("ami = %q", got)
	}
	self := proc.Self()
	if !self.Complete() {
		return
	}
	for f, want := range map[string]string{"pid": strconv.Itoa(os.Getpid()), "pstart": self.Start, "boot_id": self.Boot, "pid_ns": self.PidNS} {
		if got := m.HGet(k.Instance("me"), f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
}

// TestMarkDialingRecordsThePBX: with WithPBX the call hash says which
// Asterisk the Originate went to, the condition of adoption after a crash.
func TestMarkDialingRecordsThePBX(t *testing.T) {
	m, rdb := rqRedis(t)
	ctx := rqCtx(t)
	for _, pbx := range []string{"", "10.1.2.3:5038"} {
		q := NewQueue(rdb, rqPrefix, rqCell, rqInst, WithPBX(pbx))
		id := "p" + strconv.Itoa(len(pbx))
		c := rqCall(id, rqRaw(id), "tok")
		if _, err := q.Begin(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.Attempts, c.ChannelID = 1, "tok-1"
		if err := q.MarkDialing(ctx, c); err != nil {
			t.Fatal(err)
		}
		if got := m.HGet(q.Keys().Call(id), "pbx"); got != pbx {
			t.Errorf("pbx = %q, want %q", got, pbx)
		}
	}
}
