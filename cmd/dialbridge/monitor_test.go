package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/creack/pty"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/multcall/dialbridge/monitor/dash"
	"github.com/multcall/dialbridge/monitor/termsafe/termsafetest"
	"github.com/multcall/dialbridge/redisq"
)

// monSeed writes a known cell 101 into a fresh miniredis: lists, counters,
// one live bridge, and a queue manager's floor and log.
func monSeed(t *testing.T, mr *miniredis.Miniredis, beat time.Time) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	k := redisq.NewKeys("dialbridge", "101")
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
	rdb.LPush(ctx, k.Dial(), "d1", "d2", "d3", "d4")
	rdb.LPush(ctx, k.Ack(), "a1")
	rdb.LPush(ctx, k.Results(), "r1", "r2")
	rdb.LPush(ctx, k.Dead(), "x1")
	rdb.HSet(ctx, k.Stats(), "claimed", 120, "results", 100, "answered", 60, "busy", 25, "no_answer", 15)
	rdb.HSet(ctx, k.Instance("pbx1-4711"), "instance", "pbx1-4711", "cell", "101", "host", "pbx1", "pid", 4711, "version", "v1.0.0",
		"threads", 30, "in_flight", 7, "started_at", ts(beat.Add(-time.Hour)), "beat_at", ts(beat))
	rdb.PExpire(ctx, k.Instance("pbx1-4711"), 10*time.Second)
	rdb.SAdd(ctx, k.InstanceSet(), "pbx1-4711")
	rdb.LPush(ctx, k.Claimed("pbx1-4711"), "c1", "c2", "c3")
	key := func(n string) string { return redisq.ACDKey("dialbridge", "101", n) }
	rdb.HSet(ctx, key("operators"),
		"A", `{"id":"A","tier":"operator","state":"busy","call":"c-9","since":"`+ts(beat.Add(-30*time.Second))+`"}`,
		"B", `{"id":"B","tier":"operator","state":"available","since":"`+ts(beat.Add(-5*time.Second))+`"}`)
	rdb.HSet(ctx, key("calls"),
		"c-9", `{"id":"c-9","state":"answered","operator":"A","since":"`+ts(beat.Add(-30*time.Second))+`"}`)
	for _, m := range []string{"Call c-9 received", "Call c-9 ringing for operator A", "Call c-9 answered by operator A"} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: key("log"), Values: []any{"time", ts(beat.Add(-30 * time.Second)), "message", m}})
	}
}

func TestMonitorOnce(t *testing.T) {
	mr := miniredis.RunT(t)
	at := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	monSeed(t, mr, at.Add(-1500*time.Millisecond))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	coll := dash.NewCollector(rdb, "dialbridge", []string{"101"}, 12)
	coll.SetClock(func() time.Time { return at })

	var out, errOut bytes.Buffer
	if code := monitorOnce(context.Background(), coll, "101", false, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	path := filepath.Join("testdata", "monitor_once.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 go test -run TestMonitorOnce ./cmd/dialbridge writes it)", err)
	}
	if out.String() != string(want) {
		t.Errorf("--once output:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if code := monitorOnce(context.Background(), coll, "101", true, &out, &errOut); code != exitOK {
		t.Fatalf("--json: exit %d", code)
	}
	var doc struct {
		Cells []struct {
			Cell      string           `json:"cell"`
			Dial      int64            `json:"dial"`
			Claimed   int64            `json:"claimed"`
			Stats     map[string]int64 `json:"stats"`
			Instances []struct {
				Host     string `json:"host"`
				InFlight int    `json:"in_flight"`
			} `json:"instances"`
			ACD struct {
				Operators []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"operators"`
			} `json:"acd"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	c := doc.Cells[0]
	if c.Cell != "101" || c.Dial != 4 || c.Claimed != 3 || c.Stats["answered"] != 60 || len(c.Instances) != 1 ||
		c.Instances[0].InFlight != 7 || len(c.ACD.Operators) != 2 || c.ACD.Operators[0].State != "busy" {
		t.Errorf("--json: %+v", c)
	}

	// Redis down: one line per cell saying so, exit status 1.
	mr.Close()
	out.Reset()
	if code := monitorOnce(context.Background(), coll, "101", false, &out, &errOut); code != exitFailure {
		t.Errorf("Redis down: exit %d", code)
	}
	if !strings.Contains(out.String(), "cell 101: unreadable:") {
		t.Errorf("Redis down:\n%s", out.String())
	}
}

// --once and --json print what Redis holds without letting it drive the
// terminal (issue 13 item 6): planted host names, lease holders and log
// messages come out escaped.
func TestMonitorOnceEscapes(t *testing.T) {
	for name, attack := range termsafetest.Attacks {
		mr := miniredis.RunT(t)
		at := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
		monSeed(t, mr, at.Add(-time.Second))
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
		ctx := context.Background()
		k := redisq.NewKeys("dialbridge", "101")
		rdb.HSet(ctx, k.Instance("pbx1-4711"), "host", attack, "version", attack)
		rdb.Set(ctx, redisq.ACDKey("dialbridge", "101", "lease"), attack, 0)
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: redisq.ACDKey("dialbridge", "101", "log"), Values: []any{"time", "x", "message", attack}})
		coll := dash.NewCollector(rdb, "dialbridge", []string{"101"}, 12)
		for _, asJSON := range []bool{false, true} {
			var out, errOut bytes.Buffer
			if code := monitorOnce(ctx, coll, "101", asJSON, &out, &errOut); code != exitOK {
				t.Fatalf("%s: exit %d: %s", name, code, errOut.String())
			}
			if bad := termsafetest.Unsafe(out.String() + errOut.String()); bad != "" {
				t.Errorf("%s (json %v): %s", name, asJSON, bad)
			}
		}
		rdb.Close()
	}
}

func TestMonitorFlags(t *testing.T) {
	var sink bytes.Buffer
	f, err := parseMonitorFlags([]string{"--cell", "101,102", "--cell", "103", "--interval", "500ms", "--once"}, &sink)
	if err != nil || strings.Join(f.cells, " ") != "101 102 103" || f.interval != 500*time.Millisecond || !f.once {
		t.Fatalf("%+v %v", f, err)
	}
	for _, bad := range [][]string{{"--interval", "1ms"}, {"--cell", "a{b"}, {"extra"}, {"--attach", "x:1", "--no-acd"}} {
		if _, err := parseMonitorFlags(bad, &sink); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestMonitorHelperProcess is the dialbridge binary when the terminal test
// runs this test binary as a child.
func TestMonitorHelperProcess(t *testing.T) {
	if os.Getenv("DIALBRIDGE_MONITOR_HELPER") != "1" {
		t.Skip("helper process of TestMonitorInTerminal")
	}
	os.Exit(dispatch(strings.Split(os.Getenv("DIALBRIDGE_MONITOR_ARGS"), "\x1f")))
}

var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHMc])`)

// monScreen collects what the child writes to the terminal.
type monScreen struct {
	mu  sync.Mutex
	raw bytes.Buffer
}

func (s *monScreen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansiRE.ReplaceAllString(s.raw.String(), "")
}

func (s *monScreen) rawString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// TestMonitorInTerminal runs the real monitor in a pseudo-terminal against
// a miniredis: the screen shows the cell, the bridge and the operators of
// the queue manager it hosts, a typed command works, q quits, and the
// terminal is left as it was found.
func TestMonitorInTerminal(t *testing.T) {
	mr := miniredis.RunT(t)
	monSeed(t, mr, time.Now())

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 130}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}

	args := []string{"monitor", "--redis", mr.Addr(), "--cell", "101", "--operators", "A,B", "--interval", "200ms"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMonitorHelperProcess$")
	cmd.Dir = t.TempDir() // no configs/settings.yaml: the built-in defaults
	cmd.Env = append(os.Environ(), "DIALBRIDGE_MONITOR_HELPER=1", "DIALBRIDGE_MONITOR_ARGS="+strings.Join(args, "\x1f"),
		"TERM=xterm-256color", "DIALBRIDGE_CONFIG=")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	scr := &monScreen{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			scr.mu.Lock()
			scr.raw.Write(buf[:n])
			scr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitScreen := func(what ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			txt := scr.text()
			missing := ""
			for _, w := range what {
				if !strings.Contains(txt, w) {
					missing = w
					break
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the screen never showed %q; it shows:\n%s", missing, txt)
			}
			select {
			case err := <-exited:
				t.Fatalf("the monitor exited (%v); screen:\n%s", err, txt)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitScreen("dialbridge monitor", "queue manager — cell 101 (hosted", "pbx1-4711",
		"A          operator   busy       c-9", "B          operator   available")

	// A command typed on the command line reaches the hosted queue manager.
	if _, err := ptmx.Write([]byte(":")); err != nil {
		t.Fatal(err)
	}
	waitScreen("▶ command")
	if _, err := ptmx.Write([]byte("call 7\r")); err != nil {
		t.Fatal(err)
	}
	waitScreen("Call 7 ringing for operator B")

	if _, err := ptmx.Write([]byte("\x1b")); err != nil { // esc: leave the command line
		t.Fatal(err)
	}
	waitScreen("▶ cells")
	if _, err := ptmx.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("monitor: %v; screen:\n%s", err, scr.text())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("q did not quit; screen:\n%s", scr.text())
	}

	// The terminal is restored: alternate screen left, cursor shown, and
	// the line discipline as before (canonical mode, echo).
	raw := scr.rawString()
	if i, j := strings.LastIndex(raw, "\x1b[?1049h"), strings.LastIndex(raw, "\x1b[?1049l"); i < 0 || j < i {
		t.Errorf("alternate screen not left (enter at %d, leave at %d)", i, j)
	}
	if !strings.Contains(raw[strings.LastIndex(raw, "\x1b[?1049h")+1:], "\x1b[?25h") {
		t.Error("cursor not shown again")
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	const mask = unix.ICANON | unix.ECHO | unix.ISIG
	if before.Lflag&mask != after.Lflag&mask || before.Iflag != after.Iflag || before.Oflag != after.Oflag {
		t.Errorf("terminal modes not restored: lflag %#x → %#x, iflag %#x → %#x", before.Lflag, after.Lflag, before.Iflag, after.Iflag)
	}
	// The hosted queue manager released its lease and kept its floor.
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	if v, _ := rdb.Get(context.Background(), redisq.ACDKey("dialbridge", "101", "lease")).Result(); v != "" {
		t.Errorf("lease still held by %q", v)
	}
	if v, _ := rdb.HGet(context.Background(), redisq.ACDKey("dialbridge", "101", "calls"), "7").Result(); !strings.Contains(v, `"ringing"`) {
		t.Errorf("call 7 not saved: %q", v)
	}
}
