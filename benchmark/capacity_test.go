package benchmark

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=3,usec=105,usec_per_call=35.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_config|resetstat:calls=1,usec=92,usec_per_call=92.00,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	if got["evalsha"] != (cmdStat{Calls: 3, Usec: 105}) || got["config|resetstat"] != (cmdStat{Calls: 1, Usec: 92}) || len(got) != 2 {
		t.Errorf("got %+v", got)
	}
	if _, err := parseCommandStats("cmdstat_get:calls=x,usec=1\r\n"); err == nil {
		t.Error("a bad number was accepted")
	}
}

func TestParseMainThreadCPU(t *testing.T) {
	tests := []struct {
		name, info string
		want       float64
		err        bool
	}{
		{"main thread fields", "used_cpu_sys:9\r\nused_cpu_user:9\r\nused_cpu_sys_main_thread:0.25\r\nused_cpu_user_main_thread:1.5\r\n", 1.75, false},
		{"older Redis: the process", "used_cpu_sys:0.5\r\nused_cpu_user:1\r\n", 1.5, false},
		{"no CPU fields", "redis_version:7.0.15\r\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMainThreadCPU(tt.info)
			if (err != nil) != tt.err || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, %v; want %v (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses: fields count from
	// the last ")". utime 150, stime 50 ticks → 2 s.
	stat := "4242 (dial (bridge) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 12 0 1000 1000000 2000 18446744073709551615"
	got, err := parseProcStatCPU(stat)
	if err != nil || got != 2*time.Second {
		t.Errorf("got %v, %v; want 2s", got, err)
	}
	for _, bad := range []string{"no parenthesis", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 a b"} {
		if _, err := parseProcStatCPU(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseMonitorLine(t *testing.T) {
	tests := []struct {
		line, name string
		lua, ok    bool
	}{
		{`+1700000000.123456 [0 127.0.0.1:5000] "evalsha" "abc" "5" "k"` + "\r\n", "evalsha", false, true},
		{`+1700000000.123457 [0 lua] "LREM" "k" "1" "{\"id\":\"a\"}"` + "\r\n", "lrem", true, true},
		{`+1700000000.123458 [0 unix:/tmp/r.sock] "CONFIG" "RESETSTAT"` + "\r\n", "config|resetstat", false, true},
		{`+1700000000.123459 [0 [::1]:6000] "get" "k"` + "\r\n", "get", false, true},
		{"+OK\r\n", "", false, false},
	}
	for _, tt := range tests {
		name, lua, ok := parseMonitorLine(tt.line)
		if name != tt.name || lua != tt.lua || ok != tt.ok {
			t.Errorf("%q: got %q %v %v, want %q %v %v", tt.line, name, lua, ok, tt.name, tt.lua, tt.ok)
		}
	}
}

// TestTopLevel: a script's commands are counted once (in the script's own
// usec), the bench's INFO and CONFIG RESETSTAT not at all.
func TestTopLevel(t *testing.T) {
	s := capacitySample{calls: 10,
		stats: map[string]cmdStat{
			"evalsha": {Calls: 20, Usec: 600}, // includes the HSETs below
			"hset":    {Calls: 40, Usec: 200}, // 30 from Lua, 10 sent by a client
			"blmove":  {Calls: 10, Usec: 50},
			"info":    {Calls: 2, Usec: 999},
		},
		luaShare: map[string]float64{"hset": 0.75},
	}
	cmds, usec := s.topLevel()
	if math.Abs(cmds-4) > 1e-9 || math.Abs(usec-70) > 1e-9 {
		t.Errorf("got %v commands, %v µs per call; want 4 and 70", cmds, usec)
	}
}

func TestReplaceCapacitySection(t *testing.T) {
	doc := "# Performance\n\ntable\n\n<!-- analysis: kept -->\nnotes\n"
	once := ReplaceCapacitySection(doc, "## Capacity\n\nfirst\n")
	if !strings.HasPrefix(once, doc[:len(doc)-1]) || !strings.Contains(once, CapacityBegin+"\n## Capacity\n\nfirst\n"+CapacityEnd+"\n") {
		t.Fatalf("appended:\n%s", once)
	}
	twice := ReplaceCapacitySection(once+"\n## Later\n", "## Capacity\n\nsecond")
	if strings.Contains(twice, "first") || !strings.Contains(twice, "second") || !strings.Contains(twice, "notes") ||
		!strings.HasSuffix(twice, CapacityEnd+"\n## Later\n") || strings.Count(twice, CapacityBegin) != 1 {
		t.Errorf("replaced:\n%s", twice)
	}
}

func TestCapacityCommand(t *testing.T) {
	ok := capacityKind{name: "answered"}.command("k7", 7)
	bad := capacityKind{name: "invalid", invalid: true}.command("k7", 7)
	if string(ok) != `{"id":"k7","number":"55000000007"}` || string(bad) != `{"id":"k7","number":"55x00000007"}` {
		t.Errorf("got %s and %s", ok, bad)
	}
}

// TestCapacityReport: per-core figures from the medians, the paced rows as
// a share of a core (not a capacity), the Cluster table from the most
// expensive kind pushed at full speed, and the held row compared with the
// paced row of the same rate.
func TestCapacityReport(t *testing.T) {
	sample := func(redisUS, daemonUS, lremUS int64) capacitySample {
		return capacitySample{calls: 1000, wall: time.Second,
			redisCPU: time.Duration(redisUS*1000) * time.Microsecond, daemon: time.Duration(daemonUS*1000) * time.Microsecond,
			stats: map[string]cmdStat{"evalsha": {Calls: 3000, Usec: 3000 * 20}, "lrem": {Calls: 1000, Usec: 1000 * lremUS}}}
	}
	kinds := capacityKinds([]float64{1000})
	r := &CapacityReport{Config: CapacityConfig{N: 1000, Runs: 3, Threads: 1000, WarmUp: 200}, Started: time.Now(), RedisVersion: "7.0.15",
		Idle: []capacityIdle{{redisPerSec: 1500 * time.Microsecond}}}
	for _, k := range kinds {
		res := CapacityKindResult{Kind: k}
		switch {
		case k.hold > 0:
			res.Samples = []capacitySample{sample(300, 400, 100), sample(320, 400, 100), sample(310, 400, 100)}
		case k.rate > 0:
			res.Samples = []capacitySample{sample(200, 300, 2), sample(210, 300, 2), sample(190, 300, 2)}
		case k.name == "answered":
			res.Samples = []capacitySample{sample(90, 150, 10), sample(80, 140, 10), sample(70, 130, 10)} // median 80 µs
		default:
			res.Samples = []capacitySample{sample(50, 100, 10)}
		}
		r.Kinds = append(r.Kinds, res)
	}
	md := r.Markdown("dialbridge bench --only capacity")
	for _, want := range []string{
		"| answered | 80.0 | 90.0; 80.0; 70.0 | 12,500 |", // 10^6 / 80 µs
		"| answered, paced 1000/s | 200.0 | 200.0; 210.0; 190.0 | (20.0 % of a core at 1,000/s) |",
		"| 3 | 37,500 | 18,750 | 12,500 (one slot, one master) |", // the Cluster table, from answered
		"costs Redis\n  1.50 ms of CPU per second",
		"310.0 µs of CPU against 200.0 µs",
		"100.0 µs here against 2.00 µs",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
}
