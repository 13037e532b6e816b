package benchmark

import (
	"fmt"
	"strings"
	"time"
)

// Markdown is docs/PERFORMANCE.md: machine, date, how to reproduce, the
// table and what each scenario measures.
func (r *Report) Markdown(cmdline string) string {
	var b strings.Builder
	c := r.Config
	b.WriteString("# Performance\n\n")
	b.WriteString("Figures of `dialbridge bench` (issue 6). Redis, the AMI simulator, the simulated Multcall and the\n")
	b.WriteString("daemon share the machine; neighbours may be running tests, so every figure is the median of\n")
	b.WriteString("several runs and the end-to-end throughput is compared with a baseline measured in the same runs.\n\n")
	fmt.Fprintf(&b, "- **Date**: %s\n", r.Started.UTC().Format(time.RFC1123))
	fmt.Fprintf(&b, "- **Machine**: %s\n", Machine())
	fmt.Fprintf(&b, "- **Redis**: %s\n", c.RedisAddr)
	fmt.Fprintf(&b, "- **Parameters**: n %d per run, threads %d, paced %.0f calls/s × %d calls, in flight %d, runs %d, simulator outcome `%s`, AMI events `%s`\n",
		c.N, c.Threads, c.Rate, c.PacedN, c.Inflight, c.Runs, c.Outcome, c.AMIEvents)
	fmt.Fprintf(&b, "- **Command**: `%s`\n\n", cmdline)
	b.WriteString("## Reproduce\n\n```sh\nscripts/bench.sh               # redis-server on a free port, dialbridge bench, stop (make bench-load, see Makefile)\n")
	b.WriteString("scripts/bench.sh --n 20000 --runs 5 --only baseline,e2e   # any dialbridge bench flags\n")
	b.WriteString("scripts/bench.sh --only capacity --runs 5   # Redis's and the daemon's CPU per call: rewrites only its section (below)\n")
	b.WriteString("go test -run '^$' -bench . -benchmem ./benchmark ./bridge ./redisq ./monitor/acd   # hot functions\n```\n\n")
	b.WriteString("## Results\n\n")
	b.WriteString(r.Table())
	b.WriteString(`
## What is measured

- **baseline**: a plain go-redis client with the bridge's concurrency (threads workers, the daemon's
  pool size) doing the round trips of an answered call and nothing else: BLMOVE dial → claimed;
  HSET + LPUSH ack (one pipeline, for Begin's Lua step); HSET (MarkDialing); HSET (MarkAnswered);
  LREM claimed + LPUSH results + HSET (one pipeline, for Finish). The simulated Multcall pushes,
  confirms (BRPOP + RPOP count on ack, one LPUSH of the confirmations) and collects results exactly
  as in e2e, and one reader drains the confirm list (BRPOP + RPOP count, like the router).
  Calls/s from the first push to the last result.
- **e2e**: the real daemon for one cell, as deployed: the built binary in its own process
  (` + "`dialbridge run`" + `, Go's runtime defaults and the daemon's 32 MiB heap floor, docs/OPERATIONS.md; ` + "`--in-process`" + `
  runs startDaemon inside the bench process instead, sharing its heap and collector with the
  simulators). The AMI simulator answers at once
  and hanging up at once, the same simulated Multcall pushing as fast as the daemon takes commands
  (at most max(2,000, threads) commands pushed and not yet acknowledged). Latencies per command:
  push = just before the LPUSH that carried it; Originate = when the simulator received the
  Originate action (its per-originate log hook, taken right after OriginateRecord.At); result = when
  the simulated Multcall read the result. Under saturation push → Originate includes the wait in the
  dial list. AMI events ` + "`filtered`" + ` (the first of the default ` + "`filtered,all`" + `, the one the bars and
  inflight use): the simulator sends only what passes the manager.conf eventfilter of PROTOCOL.md §3;
  ` + "`all`" + `: every call-class event a real Asterisk 22 sends (21 for an answered call, of which
  dialbridge routes 7).
- **paced**: the same at a fixed offered load (each command pushed at its due time).
- **The harness** (simulated Multcall, AMI simulator, clocks) is one process with a 512 MiB heap
  floor, so that its own collections, which in production belong to other programs, are not billed
  to the daemon. Profiles (` + "`--cpuprofile`, `--allocprofile`, `--trace`" + `) are the daemon's own, read from
  its ` + "`/debug/pprof`" + ` endpoints.
- **inflight**: the built binary as a subprocess (` + "`dialbridge run`" + `), threads = calls + 100, the simulator
  answering and never hanging up; RSS from /proc/<pid>/status once every call is live (+2 s),
  goroutines counted in the stack dump of SIGQUIT (GOTRACEBACK=all). Per call = (RSS − idle RSS) / calls.
- **ACD core**: the acdFloor workload of benchmark/acd.go, also run by "go test -bench ACDEvents ./benchmark" (1,000 busy operators, 100,000 waiting,
  rounds of six events) for 2 s. **ACD TCP**: the "queue serve" server (in memory, 1,000
  operators) on a free port, 50 clients each sending windows of 32 call/hangup pairs followed by a
  status line marking the window's end; call and hangup commands counted.
`)
	return b.String()
}
