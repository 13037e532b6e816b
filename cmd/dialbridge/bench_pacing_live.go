package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/monitor/acd"
	"github.com/multcall/dialbridge/monitor/opsim"
	"github.com/multcall/dialbridge/redisq"
)

// "dialbridge bench --only pacing-live": the pacer through the real daemon
// in real time — the demo's daemon, AMI simulator with customer behaviour
// and simulated operators on the queue manager — once per mode, for
// --duration each. It reports what the call-center simulation reports
// (occupancy, abandon rate) plus what only the real path shows: every call
// started against the budget in Redis, results with operator fields.

// pacingLiveRules: customers as docs/PACING.md's live run describes them —
// 30 % answer after 2–6 s and talk 8–15 s, the rest ring out, are busy or
// fail.
const pacingLiveRules = "suffix=0:answer,ring=2s,talk=8s;suffix=1:answer,ring=4s,talk=12s;suffix=2:answer,ring=6s,talk=15s;" +
	"suffix=3:noanswer;suffix=4:noanswer;suffix=5:busy,ring=1s;suffix=6:noanswer;suffix=7:congestion,ring=500ms;suffix=8:noanswer;suffix=9:hangup,cause=1,ring=200ms"

// pacingLiveResult is one mode's run.
type pacingLiveResult struct {
	Mode                 string
	Started, OverBudget  int
	Results, Answered    int
	Connected, Abandoned int
	Occupancy            float64 // mean share of logged-in operators busy
	MeanWait             time.Duration
	PacingUpdates        int
}

// runPacingLiveBench runs each mode for d with ops operators.
func runPacingLiveBench(ctx context.Context, out, progress io.Writer, d time.Duration, ops int, modes []string) ([]pacingLiveResult, error) {
	rules, err := amisim.ParseRules(pacingLiveRules)
	if err != nil {
		return nil, err
	}
	var res []pacingLiveResult
	for _, m := range modes {
		fmt.Fprintf(progress, "dialbridge bench: pacing-live %s for %s…\n", m, d)
		r, err := runPacingLive(ctx, d, ops, config.PacingMode(m), rules)
		if err != nil {
			return res, fmt.Errorf("pacing-live %s: %w", m, err)
		}
		res = append(res, r)
	}
	fmt.Fprint(out, pacingLiveTable(res, d, ops))
	return res, nil
}

func runPacingLive(ctx context.Context, d time.Duration, ops int, mode config.PacingMode, rules []amisim.Rule) (pacingLiveResult, error) {
	r := pacingLiveResult{Mode: string(mode)}
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	p := config.DefaultPacing()
	p.Mode = mode
	if mode == config.PacingRatio {
		p.Ratio = 2
	}
	var mu sync.Mutex
	var occSum float64
	var occN int
	updates := map[string]bool{}
	var sampler sync.WaitGroup
	defer sampler.Wait()
	o := demoOptions{
		cell: "101", threads: 4 * ops, rate: 30, operators: fmt.Sprint(ops), ringTimeout: 8 * time.Second,
		rules: rules,
		// Operators who rarely reject (2 %) or let a call ring out (1 %):
		// each of those is an abandon no pacing removes.
		ops:    opsim.Options{AnswerMin: 500 * time.Millisecond, AnswerMax: 1500 * time.Millisecond, Reject: 0.02, Ignore: 0.01, Seed: 1},
		pacing: p,
		onDaemon: func(dm *daemon) {
			if dm.pacing != nil {
				dm.pacing.adm.OnAdmit(func(n int, st redisq.PacingStatus) {
					if n > 0 {
						mu.Lock()
						r.Started += n
						if st.Dialing > st.Budget {
							r.OverBudget++
						}
						mu.Unlock()
					}
				})
			}
			sampler.Add(1)
			go func() {
				defer sampler.Done()
				t := time.NewTicker(250 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-rctx.Done():
						return
					case <-t.C:
					}
					snap, _, err := redisq.ACDLoad(rctx, dm.rdb, dm.settings.Redis.Prefix, "101")
					st, _ := redisq.PacingState(rctx, dm.rdb, dm.keys)
					if err != nil {
						continue
					}
					in, busy := 0, 0
					for _, op := range snap.Operators {
						if op.State != acd.LoggedOut {
							in++
						}
						if op.State == acd.Busy {
							busy++
						}
					}
					mu.Lock()
					if in > 0 {
						occSum += float64(busy) / float64(in)
						occN++
					}
					if u := st["updated_at"]; u != "" {
						updates[u] = true
					}
					mu.Unlock()
				}
			}()
		},
		inspect: func(rdb redis.UniversalClient) {
			c := context.Background()
			k := redisq.NewKeys("dialbridge", "101")
			var waitSum time.Duration
			iter := rdb.Scan(c, 0, k.Base()+"call:*", 1000).Iterator()
			for iter.Next(c) {
				body, _ := rdb.HGet(c, iter.Val(), "result").Result()
				if body == "" {
					continue
				}
				var res struct {
					Status    string `json:"status"`
					Operator  string `json:"operator"`
					WaitMS    int64  `json:"wait_ms"`
					Abandoned bool   `json:"abandoned"`
				}
				if json.Unmarshal([]byte(body), &res) != nil {
					continue
				}
				mu.Lock()
				r.Results++
				if res.Status == "answered" {
					r.Answered++
					if res.Operator != "" {
						r.Connected++
						waitSum += time.Duration(res.WaitMS) * time.Millisecond
					}
					if res.Abandoned {
						r.Abandoned++
					}
				}
				mu.Unlock()
			}
			if r.Connected > 0 {
				r.MeanWait = waitSum / time.Duration(r.Connected)
			}
		},
	}
	var buf bytes.Buffer
	if err := demo(rctx, &buf, o); err != nil {
		return r, fmt.Errorf("%w\n%s", err, buf.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if occN > 0 {
		r.Occupancy = occSum / float64(occN)
	}
	r.PacingUpdates = len(updates)
	return r, nil
}

func pacingLiveTable(res []pacingLiveResult, d time.Duration, ops int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\npacing through the real daemon: %d operators, %s per mode, customers %q\n\n", ops, d, pacingLiveRules)
	fmt.Fprintln(&b, "| mode | calls started | over budget | results | answered | by an operator | abandoned | abandon rate | occupancy | mean wait | pacing hash updates |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range res {
		rate := 0.0
		if r.Answered > 0 {
			rate = float64(r.Abandoned) / float64(r.Answered)
		}
		started, over := fmt.Sprint(r.Started), fmt.Sprint(r.OverBudget)
		if r.Mode == string(config.PacingNone) {
			started, over = "-", "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %.1f %% | %.0f %% | %s | %d |\n", r.Mode, started, over, r.Results, r.Answered,
			r.Connected, r.Abandoned, 100*rate, 100*r.Occupancy, r.MeanWait.Round(10*time.Millisecond), r.PacingUpdates)
	}
	return b.String()
}
