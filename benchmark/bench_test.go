package benchmark

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// testDaemon wires a cell like package main's startDaemon (without the
// heartbeat and the queue manager feed), for the tests of this package.
type testDaemon struct {
	rdb    *redis.Client
	amic   *ami.Client
	router *redisq.ConfirmRouter
	cell   *bridge.Cell
}

func startTestDaemon(ctx context.Context, t Target) (Daemon, error) {
	rdb := redis.NewClient(&redis.Options{Addr: t.RedisAddr, PoolSize: redisq.PoolSize(t.Threads, 1), DisableIdentity: true})
	amic := ami.New(ami.Options{Port: t.AMIPort, Username: "dialbridge", Secret: "secret", Connections: 2, Instance: "t1"}, zerolog.Nop())
	if err := amic.Start(ctx); err != nil {
		rdb.Close()
		return nil, err
	}
	q := redisq.NewQueue(rdb, t.Prefix, t.Cell, "t1")
	router := redisq.NewConfirmRouter(rdb, t.Prefix, t.Cell, "t1", zerolog.Nop())
	cell := bridge.NewCell(bridge.Options{Cell: t.Cell, Instance: "t1", Threads: t.Threads,
		ChannelTemplate: "PJSIP/{number}@trunk", Context: "agents", Exten: "s", ShutdownGrace: 2 * time.Second},
		q, router, amic, zerolog.Nop())
	return &testDaemon{rdb: rdb, amic: amic, router: router, cell: cell}, nil
}

func (d *testDaemon) Run(ctx context.Context) error {
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.router.Run(bg) }() //nolint:errcheck // ends with bg
	err := d.cell.Run(ctx)
	stop()
	wg.Wait()
	d.amic.Close()
	d.rdb.Close()
	return err
}
func (d *testDaemon) Ready() bool { return d.cell.Claiming() }

// TestRunSmall runs baseline, e2e and paced at tiny scale on miniredis and
// prints the table.
func TestRunSmall(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress strings.Builder
	rep, err := Run(ctx, Config{
		RedisAddr: mr.Addr(), N: 200, Rate: 500, PacedN: 100, Runs: 1, Threads: 50,
		Only: map[string]bool{"baseline": true, "e2e": true, "paced": true}, Start: startTestDaemon,
		Dir: t.TempDir(), Progress: &progress,
	})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	table := rep.Table()
	t.Log("\n" + table)
	for _, want := range []string{"baseline (raw go-redis", "e2e (daemon", "push → Originate", "paced 500/s"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if !strings.Contains(progress.String(), "answered 200") {
		t.Errorf("e2e did not get 200 answered results: %s", progress.String())
	}
	if md := rep.Markdown("dialbridge bench --n 200"); !strings.Contains(md, "## Results") || !strings.Contains(md, "CPUs (nproc)") {
		t.Errorf("markdown incomplete:\n%s", md)
	}
	// Every key of the runs was removed.
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("keys left behind: %v", keys[:min(len(keys), 5)])
	}
}

func TestACDSmall(t *testing.T) {
	ev, err := ACDEvents(50 * time.Millisecond)
	if err != nil || ev <= 0 {
		t.Fatalf("events/s %v, %v", ev, err)
	}
	tcp, err := ACDTCP(context.Background(), 5, 100*time.Millisecond)
	if err != nil || tcp <= 0 {
		t.Fatalf("commands/s %v, %v", tcp, err)
	}
}

func TestSummarise(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(100-i) * time.Millisecond
	}
	l := Summarise(d)
	if l.P50 != 50*time.Millisecond || l.P90 != 90*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Fatalf("%+v", l)
	}
	if Median([]float64{3, 1, 2}) != 2 || Median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Fatal("median")
	}
}

func BenchmarkCommand(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		_ = command(i)
	}
}

func BenchmarkOriginatedHook(b *testing.B) {
	d := newDriver(nil, redisq.NewKeys("p", "c"), 1<<20)
	for i := 0; b.Loop(); i++ {
		d.originated("amisim: originate %s (number %q, ActionID %q, ChannelId %q, async %v) -> %s (rule %s)",
			"PJSIP/x@trunk", cmdNumber(i&(1<<20-1)), "a", "c", true, "answer", "answer")
	}
}

// BenchmarkACDEvents: events/s of the queue manager's state machine with
// 1,000 operators and 100,000 waiting calls (the acdFloor workload).
func BenchmarkACDEvents(b *testing.B) {
	f, err := newACDFloor()
	if err != nil {
		b.Fatal(err)
	}
	start := f.i
	for b.Loop() {
		if err := f.step(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.checkSize(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(f.i-start)/b.Elapsed().Seconds(), "events/s")
}
