package benchmark

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// CapacityReport is the outcome of RunCapacity.
type CapacityReport struct {
	Config       CapacityConfig
	Started      time.Time
	RedisVersion string
	Kinds        []CapacityKindResult
	Idle         []capacityIdle
}

// Capacity section markers in docs/PERFORMANCE.md: "--only capacity --out
// FILE" replaces what is between them (or appends the section), and leaves
// the rest of the file alone; they sit below the analysis marker, which a
// full bench run keeps.
const (
	CapacityBegin = "<!-- capacity: begin (written by dialbridge bench --only capacity --out) -->"
	CapacityEnd   = "<!-- capacity: end -->"
)

// ReplaceCapacitySection puts section (with its markers) in place of the
// old one in doc, or at its end.
func ReplaceCapacitySection(doc, section string) string {
	section = CapacityBegin + "\n" + strings.TrimSpace(section) + "\n" + CapacityEnd + "\n"
	i := strings.Index(doc, CapacityBegin)
	j := strings.Index(doc, CapacityEnd)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return doc[:i] + section + strings.TrimLeft(doc[j+len(CapacityEnd):], "\n")
}

// WriteCapacitySection rewrites the capacity section of the file at path.
func WriteCapacitySection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(ReplaceCapacitySection(string(old), section)), 0o644)
}

// perCore is the calls per second one fully busy core carries at us µs
// per call.
func perCore(us float64) float64 {
	if us <= 0 {
		return 0
	}
	return 1e6 / us
}

func fmtUS(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.1f", x)
}

func fmtUSs(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtUS(x)
	}
	return strings.Join(s, "; ")
}

// Table is the per-call table.
func (r *CapacityReport) Table() string {
	var b strings.Builder
	b.WriteString("| call kind | Redis main thread CPU µs/call (median) | runs | calls/s per Redis core | Redis commands per call | Redis command time µs/call | daemon CPU µs/call (median) | runs | calls/s per daemon core | measured calls/s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range r.Kinds {
		if len(k.Samples) == 0 {
			continue
		}
		redisUS, redisRuns := k.medianOf(func(s capacitySample) float64 { return s.perCall(s.redisCPU) })
		daemonUS, daemonRuns := k.medianOf(func(s capacitySample) float64 { return s.perCall(s.daemon) })
		cmds, _ := k.medianOf(func(s capacitySample) float64 { c, _ := s.topLevel(); return c })
		exec, _ := k.medianOf(func(s capacitySample) float64 { _, u := s.topLevel(); return u })
		rate, _ := k.medianOf(func(s capacitySample) float64 { return float64(s.calls) / s.wall.Seconds() })
		redisCore, daemonCore := fmtNum(perCore(redisUS)), fmtNum(perCore(daemonUS))
		if k.Kind.rate > 0 {
			// Not a capacity: the cost per call falls as the load rises.
			// What this load takes of a core instead.
			redisCore = fmt.Sprintf("(%.1f %% of a core at %s/s)", k.Kind.rate*redisUS/1e4, fmtNum(k.Kind.rate))
			daemonCore = fmt.Sprintf("(%.1f %% of a core)", k.Kind.rate*daemonUS/1e4)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s |\n", k.Kind.title(),
			fmtUS(redisUS), fmtUSs(redisRuns), redisCore, cmds, fmtUS(exec),
			fmtUS(daemonUS), fmtUSs(daemonRuns), daemonCore, fmtNum(rate))
	}
	if redisMS, daemonMS, runs := r.idle(); len(runs) > 0 {
		fmt.Fprintf(&b, "| idle daemon (no calls), per second | %s ms/s (%.2f %% of a core) | %s | | | | %s | | | |\n",
			fmtUS(redisMS), redisMS/10, fmtUSs(runs), fmtIdleDaemon(daemonMS))
	}
	return b.String()
}

// fmtIdleDaemon: the daemon's CPU is read in 10 ms ticks, so over the 5 s
// watched anything under 2 ms/s may read 0.
func fmtIdleDaemon(ms float64) string {
	if ms < 2 {
		return "< 2 ms/s"
	}
	return fmtUS(ms) + " ms/s"
}

// idle is the median idle cost, ms of CPU per second, and Redis's per run.
func (r *CapacityReport) idle() (redisMS, daemonMS float64, redisRuns []float64) {
	var d []float64
	for _, i := range r.Idle {
		redisRuns = append(redisRuns, float64(i.redisPerSec.Microseconds())/1000)
		d = append(d, float64(i.daemonPerSec.Microseconds())/1000)
	}
	if len(redisRuns) == 0 {
		return 0, 0, nil
	}
	return Median(redisRuns), Median(d), redisRuns
}

// Breakdown is, per kind, the commands of the median run: how many per
// call, how many of those a script made, and their execution time (each
// script's row includes the commands it called, which have rows of their
// own). Rows under 0.5 µs per call are left out.
func (r *CapacityReport) Breakdown() string {
	var b strings.Builder
	b.WriteString("| call kind | command | per call | of which from Lua | µs each (commandstats) | µs per call |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, k := range r.Kinds {
		if len(k.Samples) == 0 {
			continue
		}
		s := k.medianSample()
		names := make([]string, 0, len(s.stats))
		for name := range s.stats {
			if !measurementCommands[name] {
				names = append(names, name)
			}
		}
		slices.SortFunc(names, func(a, b string) int { return cmp.Compare(s.stats[b].Usec, s.stats[a].Usec) })
		for _, name := range names {
			st := s.stats[name]
			per := float64(st.Calls) / float64(s.calls)
			total := float64(st.Usec) / float64(s.calls)
			if total < 0.5 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.0f %% | %s | %s |\n", k.Kind.title(), strings.ToUpper(name), per, 100*s.luaShare[name],
				fmtUS(float64(st.Usec)/float64(st.Calls)), fmtUS(total))
		}
	}
	return b.String()
}

// worst is the kind (as fast as taken) with the largest Redis CPU per call.
func (r *CapacityReport) worst() (name string, redisUS, daemonUS float64) {
	for _, k := range r.Kinds {
		if len(k.Samples) == 0 || k.Kind.rate > 0 {
			continue
		}
		us, _ := k.medianOf(func(s capacitySample) float64 { return s.perCall(s.redisCPU) })
		if us > redisUS {
			name, redisUS = k.Kind.title(), us
			daemonUS, _ = k.medianOf(func(s capacitySample) float64 { return s.perCall(s.daemon) })
		}
	}
	return name, redisUS, daemonUS
}

// ClusterTable is what N masters carry at the worst kind's Redis CPU per
// call, when the cells' slots are spread evenly over them.
func (r *CapacityReport) ClusterTable() string {
	name, us, _ := r.worst()
	if us <= 0 {
		return ""
	}
	c := perCore(us)
	var b strings.Builder
	fmt.Fprintf(&b, "| masters | calls/s at 100 %% of each master's core (all %s) | at 50 %% (planning figure) | largest cell |\n|---|---|---|---|\n", name)
	for _, n := range []int{1, 3, 6, 12} {
		fmt.Fprintf(&b, "| %d | %s | %s | %s (one slot, one master) |\n", n, fmtNum(float64(n)*c), fmtNum(float64(n)*c/2), fmtNum(c))
	}
	return b.String()
}

// kindUS is the median Redis and daemon µs per call of kind k, and the
// median µs of one command name in its median run (0 when absent).
func kindUS(k CapacityKindResult, command string) (redisUS, daemonUS, cmdUS float64) {
	redisUS, _ = k.medianOf(func(s capacitySample) float64 { return s.perCall(s.redisCPU) })
	daemonUS, _ = k.medianOf(func(s capacitySample) float64 { return s.perCall(s.daemon) })
	if st, ok := k.medianSample().stats[command]; ok && st.Calls > 0 {
		cmdUS = float64(st.Usec) / float64(st.Calls)
	}
	return redisUS, daemonUS, cmdUS
}

// Markdown is the capacity section of docs/PERFORMANCE.md.
func (r *CapacityReport) Markdown(cmdline string) string {
	c := r.Config
	name, redisUS, daemonUS := r.worst()
	var b strings.Builder
	b.WriteString("## Capacity: Redis's and the daemon's CPU per call (issue 16)\n\n")
	fmt.Fprintf(&b, "- **Date**: %s\n", r.Started.UTC().Format(time.RFC1123))
	fmt.Fprintf(&b, "- **Machine**: %s; Redis %s, no io-threads, no persistence (the scratch server of scripts/scratch-redis.sh)\n", Machine(), r.RedisVersion)
	fmt.Fprintf(&b, "- **Parameters**: %d measured calls per kind and run (after %d warm-up calls), threads %d, runs %d\n", c.N, c.WarmUp, c.Threads, c.Runs)
	fmt.Fprintf(&b, "- **Command**: `%s`\n\n", cmdline)
	b.WriteString("Reproduce:\n\n```sh\nscripts/bench.sh --only capacity --runs 5   # a scratch redis-server; this section rewritten in place, the rest of the file kept\n")
	b.WriteString("dialbridge bench --redis HOST:PORT --only capacity --capacity-n 20000 --capacity-rates 100,1000 --runs 5   # a Redis nothing else uses: it runs CONFIG RESETSTAT\n```\n\n")
	b.WriteString("### Per call\n\n")
	b.WriteString(r.Table())
	b.WriteString("\n### What one Redis core and a Cluster carry\n\n")
	if redisUS > 0 {
		fmt.Fprintf(&b, "- **One core.** Redis executes every command on its main thread, so one server is one core however many\n")
		fmt.Fprintf(&b, "  the machine has. The most expensive kind pushed as fast as the daemon takes it is **%s**: %s µs of that\n", name, fmtUS(redisUS))
		fmt.Fprintf(&b, "  thread per call, so one Redis core carries about **%s calls/s** of it at 100 %% (the table's other kinds cost\n", fmtNum(perCore(redisUS)))
		b.WriteString("  less: a mix of outcomes carries more). That is a ceiling reached under load, when the event loop reads and\n")
		b.WriteString("  writes many commands per wake-up; see the paced rows for what a lighter load costs per call.\n")
	}
	var pacedNote []string
	var plain, held *CapacityKindResult
	for i := range r.Kinds {
		k := &r.Kinds[i]
		if k.Kind.rate <= 0 || len(k.Samples) == 0 {
			continue
		}
		if k.Kind.hold > 0 {
			held = k
			continue
		}
		if k.Kind.rate == r.Kinds[len(r.Kinds)-1].Kind.rate {
			plain = k
		}
		us, _, _ := kindUS(*k, "")
		pacedNote = append(pacedNote, fmt.Sprintf("at %s calls/s a cell costs %s µs per call, %.1f %% of a Redis core", fmtNum(k.Kind.rate), fmtUS(us), k.Kind.rate*us/1e4))
	}
	if len(pacedNote) > 0 {
		b.WriteString("- **Lighter loads cost more per call**: " + strings.Join(pacedNote, "; ") + ". At a\n")
		b.WriteString("  low rate nearly every message is a round trip of its own (a read and a write system call each), and the\n")
		b.WriteString("  per-daemon background (below) is shared by fewer calls; the cost per call falls as the load rises.\n")
	}
	if redisMS, daemonMS, runs := r.idle(); len(runs) > 0 {
		fmt.Fprintf(&b, "- **An idle cell** (daemon running, no calls: its claim loop, heartbeat and recovery scan) costs Redis\n")
		fmt.Fprintf(&b, "  %s ms of CPU per second (%.2f %% of a core) and its daemon %s: a hundred idle cells on one master\n", fmtUS(redisMS), redisMS/10, fmtIdleDaemon(daemonMS))
		fmt.Fprintf(&b, "  take %.0f %% of its core before any call.\n", redisMS*10)
	}
	if held != nil && plain != nil {
		hUS, _, hLREM := kindUS(*held, "lrem")
		pUS, _, pLREM := kindUS(*plain, "lrem")
		fmt.Fprintf(&b, "- **Calls in flight cost every result.** With answered calls held %s (≈ %s in flight) a call costs Redis\n", held.Kind.hold, fmtNum(held.Kind.rate*held.Kind.hold.Seconds()))
		fmt.Fprintf(&b, "  %s µs of CPU against %s µs at the same rate with calls ending at once (compare with the runs' spread).\n", fmtUS(hUS), fmtUS(pUS))
		b.WriteString("  Each result's LREM (in the Finish script) walks the daemon's `claimed:<instance>` list from its newest\n")
		b.WriteString("  end, while the finishing call, claimed long ago, is near the other end: commandstats timed that LREM at\n")
		fmt.Fprintf(&b, "  %s µs here against %s µs with calls ending at once. The walk grows linearly with the calls a daemon\n", fmtUS(hLREM), fmtUS(pLREM))
		b.WriteString("  holds, so at tens of thousands in flight it would be the largest cost of a result.\n")
	}
	if redisUS > 0 {
		b.WriteString("- **A Cluster.** Every key of a cell carries the hash tag `{cell}`: a cell lives in one slot, so on one\n")
		b.WriteString("  master. **The largest cell is bound to one master's core** whatever the size of the Cluster, and gets\n")
		b.WriteString("  less if other cells share that master. N masters carry N times one core only when the cells' slots are\n")
		b.WriteString("  spread evenly (a master's load is the sum of its cells'; move slots with the standard resharding steps\n")
		b.WriteString("  to even them out); more masters never make one cell faster.\n")
		fmt.Fprintf(&b, "- **The daemon** of that cell spends %s µs per call (%s): about %s calls/s per core of the PBX\n", fmtUS(daemonUS), name, fmtNum(perCore(daemonUS)))
		b.WriteString("  host, not the bound (Asterisk's own Originate rate is far lower).\n\n")
		b.WriteString(r.ClusterTable())
	}
	b.WriteString("\n### Where Redis's time goes (the median run of each kind)\n\n")
	b.WriteString(r.Breakdown())
	b.WriteString(`
### How it is measured

- One scratch redis-server that nothing else uses; for each kind and run a new daemon (the built
  binary in its own process, ` + "`dialbridge run`" + `, as deployed), a new AMI simulator (eventfilter on, as
  PROTOCOL.md §3 asks) and a new key prefix. The simulated Multcall pushes dial commands as fast as the
  daemon takes them (at most max(2,000, threads) without a result; the paced rows at a fixed rate, each
  command at its due time), reads the ACKs (BRPOP + RPOP count), confirms them in one LPUSH per batch
  (except ack_timeout and invalid, where nothing is confirmed) and reads the results the same way.
  ` + "`busy`" + `: Reason 5; ` + "`no_answer`" + `: the network's cause 19 at once (Reason 3 after a 30 s ring makes the
  same Redis writes, minutes later); ` + "`duplicate`" + `: every id dialed once first (unmeasured), then pushed
  again; ` + "`invalid`" + `: a letter in the number, a usable id; ` + "`ack_timeout`" + `: ` + "`timeouts.command_ack`" + ` 200 ms
  (Redis does the same work for any timeout). The held row: threads raised to hold every call.
- Warm-up (not measured): the first calls of each run, under MONITOR, which tells which commands Lua
  scripts called (INFO commandstats counts those again under their own names while the script's own
  usec already includes them; "commands per call" and "command time" count each once).
- Measured: CONFIG RESETSTAT, the calls, INFO commandstats. **Redis main thread CPU** is the
  difference of ` + "`used_cpu_user_main_thread + used_cpu_sys_main_thread`" + ` (INFO cpu) over the calls: command
  execution plus reading and writing the sockets, the figure that fills a core and the one the
  capacity is computed from. **Command time** is commandstats' usec: wall-clock time around each
  command, so on this loaded machine it includes the moments Redis's thread was preempted in the middle
  of a script (it can exceed the CPU time); read it for where the time goes, not for how much. **Daemon
  CPU** is utime + stime of its process (/proc/<pid>/stat, 10 ms ticks) over the same calls. Calls/s per
  core = 10^6 / µs per call. **Idle**: a daemon started and left 5 s without calls.
- Both sides of the protocol are in the Redis figures: the daemon's commands and the simulated
  Multcall's (push, ACK read, confirm, result read). The simulated Multcall batches (256 commands per
  LPUSH, up to 1,000 per RPOP), so a Multcall that pushes and reads one message per round trip
  costs Redis more per call than measured here.
- Not measured here: replication (a master also writes every command to each replica's link), AOF
  (` + "`appendonly`" + `), ` + "`wait_replicas`" + ` (a WAIT per dialing decision), TLS. Each costs the master's core
  more per call; the 50 % column leaves room for them and for latency (a core near 100 % queues every
  command).
- The machine is shared: 2 cores for Redis, the daemon and the harness together, and other engineers'
  tests beside them (load averages of 5–10 during these runs). Each figure is the median of the runs and
  the per-run figures show the spread; the daemon's and Redis's CPU per call include cache and
  scheduler effects of that crowding, so a quiet dedicated Redis core does at least as well.
`)
	return b.String()
}
