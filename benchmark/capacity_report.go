package benchmark

import (
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
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s |\n", k.Kind.title(),
			fmtUS(redisUS), fmtUSs(redisRuns), fmtNum(perCore(redisUS)), cmds, fmtUS(exec),
			fmtUS(daemonUS), fmtUSs(daemonRuns), fmtNum(perCore(daemonUS)), fmtNum(rate))
	}
	return b.String()
}

// Breakdown is, per kind, the commands of the median run: how many per
// call, how many of those a script made, and their execution time.
func (r *CapacityReport) Breakdown() string {
	var b strings.Builder
	b.WriteString("| call kind | command | per call | of which from Lua | µs each | µs per call (own, without its Lua commands' share counted twice) |\n")
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
		slices.SortFunc(names, func(a, b string) int {
			return int(s.stats[b].Usec - s.stats[a].Usec)
		})
		for _, name := range names {
			st := s.stats[name]
			per := float64(st.Calls) / float64(s.calls)
			if per < 0.005 {
				continue // background (heartbeat, recovery scan): shown in the notes
			}
			each := float64(st.Usec) / float64(st.Calls)
			share := s.luaShare[name]
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.0f %% | %s | %s |\n", k.Kind.title(), strings.ToUpper(name), per, 100*share,
				fmtUS(each), fmtUS(per*each*(1-share)))
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
	b.WriteString("Reproduce:\n\n```sh\nscripts/bench.sh --only capacity --runs 5   # a scratch redis-server, the table below rewritten in place\n")
	b.WriteString("dialbridge bench --redis HOST:PORT --only capacity --capacity-n 20000 --runs 5   # any Redis nothing else uses: it runs CONFIG RESETSTAT\n```\n\n")
	b.WriteString("### Per call\n\n")
	b.WriteString(r.Table())
	b.WriteString("\n### What one Redis core and a Cluster carry\n\n")
	if redisUS > 0 {
		fmt.Fprintf(&b, "The most expensive kind for Redis is **%s**: %s µs of Redis's main thread per call, so one Redis core\n", name, fmtUS(redisUS))
		fmt.Fprintf(&b, "carries about **%s calls/s** of it at 100 %% (Redis executes every command on that one thread, so\n", fmtNum(perCore(redisUS)))
		b.WriteString("extra cores do not help a single server). Every key of a cell carries the hash tag `{cell}`, so a\n")
		b.WriteString("cell lives in one slot and therefore on one master: **the largest cell is bound to one master's core**,\n")
		fmt.Fprintf(&b, "about %s calls/s, whatever the size of the Cluster, and less if other cells share that master.\n", fmtNum(perCore(redisUS)))
		b.WriteString("N masters carry N times that only when the cells' slots are spread evenly (a master's load is the sum\n")
		b.WriteString("of its cells'; move slots with the standard resharding steps to balance them). The daemon of that\n")
		fmt.Fprintf(&b, "cell spends %s µs per call, about %s calls/s per core of the PBX host.\n\n", fmtUS(daemonUS), fmtNum(perCore(daemonUS)))
		b.WriteString(r.ClusterTable())
	}
	b.WriteString("\n### Where Redis's time goes (the median run of each kind)\n\n")
	b.WriteString(r.Breakdown())
	b.WriteString(`
### How it is measured

- One scratch redis-server that nothing else uses; for each kind and run a new daemon (the built
  binary in its own process, ` + "`dialbridge run`" + `, as deployed), a new AMI simulator (eventfilter on, as
  PROTOCOL.md §3 asks) and a new key prefix. The simulated Multcall pushes dial commands as fast as the
  daemon takes them (at most max(2,000, threads) without a result), reads the ACKs (BRPOP + RPOP
  count), confirms them in one LPUSH per batch (except ack_timeout and invalid, where nothing is
  confirmed) and reads the results the same way. ` + "`duplicate`" + `: every id was dialed once first
  (unmeasured), then pushed again. ` + "`invalid`" + `: a letter in the number, a usable id.
  ` + "`ack_timeout`" + `: ` + "`timeouts.command_ack`" + ` 200 ms (Redis does the same work for any timeout).
- Warm-up (not measured): the first calls of each run, under MONITOR, which tells which commands Lua
  scripts called (INFO commandstats counts those again under their own names while the script's own
  usec already includes them; the "commands per call" and "command time" columns count each once).
- Measured: CONFIG RESETSTAT, the calls, INFO commandstats. **Redis main thread CPU** is the
  difference of ` + "`used_cpu_user_main_thread + used_cpu_sys_main_thread`" + ` (INFO cpu) over the calls: command
  execution plus reading and writing the sockets, the figure that fills a core. **Command time** is
  commandstats' usec alone (no network I/O). **Daemon CPU** is utime + stime of its process
  (/proc/<pid>/stat, 10 ms ticks) over the same calls. Calls/s per core = 10^6 / µs per call.
- Both sides of the protocol are in the Redis figures: the daemon's commands and the simulated
  Multcall's (push, ACK read, confirm, result read). The simulated Multcall batches (256 commands per
  LPUSH, up to 1,000 per RPOP), so a Multcall that pushes and reads one message per round trip
  costs Redis more per call than measured here. Background work (the heartbeat, the recovery scan
  every 2 s, the expiry of done hashes 24 h later) is per daemon, not per call; over a run of
  seconds it is in the figures but small.
- Not measured here: replication to replicas (a master also writes every command to each replica's
  link), AOF (` + "`appendonly`" + ` adds a write per command batch), ` + "`wait_replicas`" + ` (WAIT per
  dialing decision). Each of them costs the master's core more per call; the 50 % column leaves room
  for them and for latency (a Redis core near 100 % queues every command).
- The machine is shared (2 cores: Redis, the daemon and the harness on the same two, other engineers'
  tests beside them): each figure is the median of the runs, and the per-run figures show the spread.
  The daemon's µs per call includes its wait for a core it shares; on a quiet PBX host it is less.
`)
	return b.String()
}
