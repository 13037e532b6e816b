package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/redisq"
)

// TestPacedDemo runs the real daemon, the AMI simulator and simulated
// operators on the queue manager in real time, once per mode: no call
// starts while the cell's dialing is at its budget, the budget the pacer
// writes is the mode's formula of the operators it saw, results carry the
// operator fields, and the pacing hash moves.
func TestPacedDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	modes := []struct {
		mode config.PacingMode
		run  time.Duration
		// budget is the mode's formula of one published state (-1: not
		// checked, the controller decides).
		budget func(avail, busy, ringing, waiting int) int
	}{
		{config.PacingProgressive, 12 * time.Second, func(a, b, r, w int) int { return min(a-w, 3*(a+b+r)) }},
		{config.PacingRatio, 12 * time.Second, func(a, b, r, w int) int { return min(int(2*float64(a))-w, 3*(a+b+r)) }},
		{config.PacingPredictive, 35 * time.Second, nil},
	}
	for _, m := range modes {
		t.Run(string(m.mode), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), m.run)
			defer cancel()
			var mu sync.Mutex
			var starts, over int
			var overMsg string
			var states []map[string]string
			var answered, withOp, abandoned int
			var resultErr string
			p := config.DefaultPacing()
			p.Mode = m.mode
			if m.mode == config.PacingRatio {
				p.Ratio = 2
			}
			o := demoOptions{
				cell: "101", threads: 40, rate: 30, operators: "4", ringTimeout: 2 * time.Second,
				rules:  demoMix(1500 * time.Millisecond),
				ops:    opsim.Options{AnswerMin: 100 * time.Millisecond, AnswerMax: 600 * time.Millisecond, Reject: 0.03, Ignore: 0.02, Seed: 11},
				pacing: p,
				onDaemon: func(d *daemon) {
					d.pacing.adm.OnAdmit(func(n int, st redisq.PacingStatus) {
						mu.Lock()
						defer mu.Unlock()
						if n > 0 {
							starts += n
							if st.Dialing > st.Budget {
								over++
								overMsg = fmt.Sprintf("dialing %d > budget %d", st.Dialing, st.Budget)
							}
						}
					})
					go func() {
						k := redisq.NewKeys("dialbridge", "101")
						rdb := redis.NewClient(&redis.Options{Addr: d.settings.Redis.Addr()})
						defer rdb.Close()
						tk := time.NewTicker(100 * time.Millisecond)
						defer tk.Stop()
						for {
							select {
							case <-ctx.Done():
								return
							case <-tk.C:
							}
							st, err := redisq.PacingState(context.Background(), rdb, k)
							if err == nil && len(st) > 0 {
								mu.Lock()
								states = append(states, st)
								mu.Unlock()
							}
						}
					}()
				},
				inspect: func(rdb redis.UniversalClient) {
					c := context.Background()
					k := redisq.NewKeys("dialbridge", "101")
					iter := rdb.Scan(c, 0, k.Base()+"call:*", 1000).Iterator()
					for iter.Next(c) {
						res, _ := rdb.HGet(c, iter.Val(), "result").Result()
						if res == "" {
							continue
						}
						var r map[string]any
						if err := json.Unmarshal([]byte(res), &r); err != nil {
							resultErr = err.Error()
							continue
						}
						for _, f := range []string{"operator", "connected_at", "wait_ms", "abandoned"} {
							if _, ok := r[f]; !ok {
								resultErr = "result without " + f + ": " + res
							}
						}
						if r["status"] == "answered" {
							answered++
							if op, _ := r["operator"].(string); op != "" {
								withOp++
							}
							if ab, _ := r["abandoned"].(bool); ab {
								abandoned++
							}
						}
					}
				},
			}
			var out bytes.Buffer
			if err := demo(ctx, &out, o); err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%s: %d calls started, %d answered (%d by an operator, %d abandoned), %d pacing states read", m.mode, starts, answered, withOp, abandoned, len(states))
			if over > 0 {
				t.Errorf("%d starts over the budget, e.g. %s", over, overMsg)
			}
			if starts == 0 || answered == 0 || withOp == 0 {
				t.Errorf("nothing happened: %d starts, %d answered, %d with an operator\n%s", starts, answered, withOp, out.String())
			}
			if resultErr != "" {
				t.Errorf("results: %s", resultErr)
			}
			upd := map[string]bool{}
			bad := 0
			for _, st := range states {
				upd[st["updated_at"]] = true
				if st["mode"] != string(m.mode) {
					t.Fatalf("pacing mode %q, want %s", st["mode"], m.mode)
				}
				if m.budget == nil || st["nothing"] != "" {
					continue
				}
				n := func(f string) int { v, _ := strconv.Atoi(st[f]); return v }
				want := max(m.budget(n("available"), n("busy"), n("ringing"), n("waiting")), 0)
				if n("budget") != want {
					bad++
					if bad < 4 {
						t.Errorf("budget %d for %v, want %d", n("budget"), st, want)
					}
				}
			}
			// The default mix answers half the calls: the measured answer
			// rate must see the others (busy, no answer, …) too.
			if len(states) > 0 && states[len(states)-1]["answer_rate"] == "1.0000" {
				t.Errorf("answer rate 1: the attempts not answered are not measured")
			}
			if len(upd) < int(m.run/time.Second)/2 {
				t.Errorf("the pacing hash moved %d times in %s", len(upd), m.run)
			}
			if !strings.Contains(out.String(), "pacing "+string(m.mode)) {
				t.Errorf("the demo's status line does not show pacing:\n%s", out.String())
			}
		})
	}
}

// TestPacingLiveBench: the bench mode's harness runs and reports a row per
// mode (a short run: the figures are PACING.md's).
func TestPacingLiveBench(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	var out, progress bytes.Buffer
	res, err := runPacingLiveBench(context.Background(), &out, &progress, 8*time.Second, 4, []string{"progressive"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].PacingUpdates < 3 || res[0].OverBudget != 0 || res[0].Started == 0 {
		t.Errorf("results %+v", res)
	}
	if !strings.Contains(out.String(), "| progressive | ") {
		t.Errorf("table:\n%s", out.String())
	}
}
