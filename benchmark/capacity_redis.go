package benchmark

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// cmdStat is one line of INFO commandstats: calls and microseconds of
// execution (Redis's own clock around the command, no network I/O).
type cmdStat struct {
	Calls int64
	Usec  int64
}

// measurementCommands are the bench's own (CONFIG RESETSTAT, INFO): left
// out of the per-call figures.
var measurementCommands = map[string]bool{"info": true, "config|resetstat": true, "monitor": true}

// parseCommandStats reads INFO commandstats ("cmdstat_hset:calls=3,usec=9,…").
func parseCommandStats(info string) (map[string]cmdStat, error) {
	out := map[string]cmdStat{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		var st cmdStat
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "calls":
				st.Calls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				st.Usec, err = strconv.ParseInt(v, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("commandstats line %q: %w", line, err)
			}
		}
		out[name] = st
	}
	return out, nil
}

// parseMainThreadCPU reads INFO cpu: the seconds of CPU (user + system) of
// Redis's main thread, the one that executes every command and, without
// io-threads, does the network I/O too: what one Redis core is spent on.
// Redis < 6.2 lacks the _main_thread fields: the whole process then.
func parseMainThreadCPU(info string) (float64, error) {
	fields := map[string]float64{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			fields[k] = x
		}
	}
	u, okU := fields["used_cpu_user_main_thread"]
	s, okS := fields["used_cpu_sys_main_thread"]
	if okU && okS {
		return u + s, nil
	}
	u, okU = fields["used_cpu_user"]
	s, okS = fields["used_cpu_sys"]
	if okU && okS {
		return u + s, nil
	}
	return 0, fmt.Errorf("INFO cpu has no used_cpu_user/used_cpu_sys: %q", info)
}

func redisMainThreadCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	return parseMainThreadCPU(info)
}

func redisCommandStats(ctx context.Context, rdb *redis.Client) (map[string]cmdStat, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// redisVersion is INFO server's redis_version.
func redisVersion(ctx context.Context, addr string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, DisableIdentity: true})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("INFO server: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "?", nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux build Go supports (sysconf is out of reach without cgo).
const clockTicks = 100

// procCPU is the CPU time (user + system, every thread, exited ones
// included) of process pid, from /proc/<pid>/stat, at 10 ms resolution.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line; the command name in parentheses may hold spaces.
func parseProcStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat without a command name: %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat too short: %q", stat)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat utime/stime %q %q: not numbers", f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// monitorCount counts the commands Redis executes, by name, split into
// those a client sent and those a Lua script called (MONITOR shows the
// latter with the client "lua"). INFO commandstats counts both, and a
// script's own usec includes its commands' time: the split keeps them
// from being counted twice.
type monitorCount struct {
	conn net.Conn
	done chan struct{}

	mu       sync.Mutex
	top, lua map[string]int64
}

// startMonitor opens its own connection and sends MONITOR. MONITOR costs
// Redis time: it only watches the warm-up, never the measured calls.
func startMonitor(ctx context.Context, addr string) (*monitorCount, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("MONITOR connection: %w", err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("MONITOR: %w", err)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		conn.Close()
		return nil, fmt.Errorf("MONITOR: %q %v", line, err)
	}
	m := &monitorCount{conn: conn, done: make(chan struct{}), top: map[string]int64{}, lua: map[string]int64{}}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if name, lua, ok := parseMonitorLine(line); ok {
				m.mu.Lock()
				if lua {
					m.lua[name]++
				} else {
					m.top[name]++
				}
				m.mu.Unlock()
			}
		}
	}()
	return m, nil
}

// stop closes the connection and returns the counts.
func (m *monitorCount) stop() (top, lua map[string]int64) {
	m.conn.Close()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.top, m.lua
}

// parseMonitorLine reads `+1700000000.123456 [0 127.0.0.1:5000] "hset" "k" …`
// (or `[0 lua]` for a script's command): the command's name, lower case.
// Subcommands are named as commandstats names them ("config|resetstat").
func parseMonitorLine(line string) (name string, lua, ok bool) {
	open := strings.IndexByte(line, '[')
	closeB := strings.Index(line, "] \"")
	if open < 0 || closeB < open {
		return "", false, false
	}
	client := strings.Fields(line[open+1 : closeB])
	lua = len(client) == 2 && client[1] == "lua"
	rest := line[closeB+3:]
	end := strings.IndexByte(rest, '"')
	if end <= 0 {
		return "", false, false
	}
	name = strings.ToLower(rest[:end])
	if name == "config" || name == "client" {
		sub := strings.TrimPrefix(rest[end+1:], " \"")
		if e := strings.IndexByte(sub, '"'); e > 0 {
			name += "|" + strings.ToLower(sub[:e])
		}
	}
	return name, lua, true
}
