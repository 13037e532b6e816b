package benchmark

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/retry"
	"github.com/multcall/dialbridge/redisq"
)

// InflightResult is the daemon (a subprocess: the built binary) holding n
// answered calls.
type InflightResult struct {
	Calls            int
	IdleRSS, RSS     int64 // bytes, VmRSS before the load and with n calls held
	HWM              int64 // VmHWM at the end
	Goroutines       int   // with n calls held (from the SIGQUIT dump)
	Threads          int   // OS threads
	RSSPerCall       float64
	GoroutinesPerCal float64
	// Go runtime figures of the daemon with n calls held, from its own
	// /metrics (go_memstats_*): where the RSS goes.
	HeapInuse, StackInuse, HeapIdle, HeapReleased, GoSys int64
	// Sampled every 50 ms while the calls ramp up.
	PeakGoroutines int
	PeakStackInuse int64
}

// runInflight starts bin as "bin run --config … <cell>", pushes n commands
// the simulator answers and never hangs up, waits until all n are live, and
// reads /proc/<pid>/status; the goroutines are counted in the stack dump
// the Go runtime writes on SIGQUIT (GOTRACEBACK=all), which also stops it.
func runInflight(ctx context.Context, bin, addr, prefix, cell, dir string, n, conns int, events, memProfile string, env []string) (InflightResult, error) {
	rules, _ := amisim.ParseRules("answer,talk=forever")
	side := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 8, DisableIdentity: true})
	defer side.Close()
	defer deleteKeys(context.WithoutCancel(ctx), side, prefix) //nolint:errcheck // best effort
	keys := redisq.NewKeys(prefix, cell)
	d := newDriver(side, keys, n)
	sim, err := amisim.New(simConfig(amisim.Config{Rules: rules, MaxRecords: -1, MaxQueue: -1, WriteTimeout: 5 * time.Second}, events))
	if err != nil {
		return InflightResult{}, err
	}
	defer sim.Close()

	// A long ACK timeout: 10,000 confirmations queue up while the calls
	// ramp up.
	p, err := startProc(bin, procSettings{Target: Target{RedisAddr: addr, AMIPort: sim.Port(), Prefix: prefix, Cell: cell,
		Threads: n + 100, AMIConnections: conns}, Dir: dir, Name: "inflight", CommandAck: 30 * time.Second}, append(env, "GOTRACEBACK=all")...)
	if err != nil {
		return InflightResult{}, err
	}
	defer p.kill()
	pid := p.pid()

	// Logged in: the event session and every action session.
	want := config.AMI{Connections: conns}.SessionsFor(n+100) + 1
	for deadline := time.Now().Add(20 * time.Second); sim.Stats().Logins < int64(want); {
		if time.Now().After(deadline) {
			return InflightResult{}, fmt.Errorf("daemon did not log in to AMI within 20s: %s", p.failure())
		}
		select {
		case <-p.exited:
			return InflightResult{}, errors.New(p.failure())
		case <-time.After(20 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond)
	var r InflightResult
	r.Calls = n
	st, err := procStatus(pid)
	if err != nil {
		return r, err
	}
	r.IdleRSS = st["VmRSS"]

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.confirm(cctx)                //nolint:errcheck // ends with cctx
	go d.pushFast(cctx, max(2000, n)) //nolint:errcheck // ends with cctx
	for deadline := time.Now().Add(3 * time.Minute); sim.Stats().InFlight < n; {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("only %d of %d calls live after 3 minutes", sim.Stats().InFlight, n)
		}
		if !retry.Sleep(ctx, 50*time.Millisecond) {
			return r, ctx.Err()
		}
		if m, err := scrapeGauges(ctx, p.url("/metrics")); err == nil {
			r.PeakGoroutines = max(r.PeakGoroutines, int(m["go_goroutines"]))
			r.PeakStackInuse = max(r.PeakStackInuse, int64(m["go_memstats_stack_inuse_bytes"]))
		}
	}
	time.Sleep(2 * time.Second) // MarkAnswered and the queue manager's events settle
	if st, err = procStatus(pid); err != nil {
		return r, err
	}
	r.RSS, r.HWM, r.Threads = st["VmRSS"], st["VmHWM"], int(st["Threads"])
	cancel()
	if m, err := scrapeGauges(ctx, p.url("/metrics")); err == nil {
		r.HeapInuse, r.StackInuse = int64(m["go_memstats_heap_inuse_bytes"]), int64(m["go_memstats_stack_inuse_bytes"])
		r.HeapIdle, r.HeapReleased = int64(m["go_memstats_heap_idle_bytes"]), int64(m["go_memstats_heap_released_bytes"])
		r.GoSys = int64(m["go_memstats_sys_bytes"])
	}
	if memProfile != "" {
		if err := fetchTo(ctx, p.url("/debug/pprof/heap"), memProfile); err != nil {
			return r, fmt.Errorf("heap profile: %w", err)
		}
	}

	p.cmd.Process.Signal(syscall.SIGQUIT) //nolint:errcheck // checked through the dump
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		return r, fmt.Errorf("daemon did not exit on SIGQUIT")
	}
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "goroutine ") && strings.HasSuffix(sc.Text(), ":") {
			r.Goroutines++
		}
	}
	r.RSSPerCall = float64(r.RSS-r.IdleRSS) / float64(n)
	r.GoroutinesPerCal = float64(r.Goroutines) / float64(n)
	return r, nil
}

// scrapeGauges reads the unlabelled samples of a Prometheus text page.
func scrapeGauges(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = x
		}
	}
	return out, sc.Err()
}

// fetchTo saves the body of a GET of url to path.
func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// freeLoopbackAddr is a loopback address with a port free a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procStatus reads /proc/<pid>/status: sizes in bytes, counts as is.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		x, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			x *= 1024
		}
		out[k] = x
	}
	return out, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// syncBuffer is a bytes.Buffer safe for the exec copier and the reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
