package main

// Tests of the operations surface on the real daemon: HTTP API, /metrics,
// /healthz and sd_notify, against miniredis and the AMI simulator.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/ami/amisim"
	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/internal/testport"
	"github.com/multcall/dialbridge/redisq"
	"github.com/multcall/dialbridge/redisq/multcallsim"
)

type opsHarness struct {
	t      *testing.T
	mr     *miniredis.Miniredis
	sim    *amisim.Server
	simCfg amisim.Config
	s      *config.Settings
	rdb    *redis.Client
	d      *daemon
	ops    *ops
	cancel context.CancelFunc
	done   chan error
	base   string
	cl     *http.Client
	// token is sent as the bearer token by do ("": no Authorization).
	token string
}

// opsToken is the harness's http.token.
const opsToken = "ops-token-0123456789abcdef"

// newOpsHarness starts Redis, the AMI simulator and a simulated Multcall;
// the daemon is started by start.
func newOpsHarness(t *testing.T, rules string) *opsHarness {
	t.Helper()
	h := &opsHarness{t: t, mr: miniredis.RunT(t)}
	r, err := amisim.ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	// On a reserved port: tests close the simulator and start it again
	// there (restartSim).
	h.simCfg = amisim.Config{Addr: "127.0.0.1:" + strconv.Itoa(testport.Reserve(t)), Rules: r, AuthDelay: 50 * time.Millisecond}
	if h.sim, err = amisim.New(h.simCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.sim.Close() })
	h.s = testSettings(t, h.mr.Addr(), h.sim.Port(), 20)
	h.s.Queues = append(h.s.Queues, config.Queue{Name: "202", Threads: 5})
	h.s.HTTP.Listen = "127.0.0.1:1" // overridden for the cell below
	h.s.Queues[0].HTTPListen = "127.0.0.1:0"
	h.s.HTTP.Token, h.token = opsToken, opsToken
	h.rdb = redis.NewClient(&redis.Options{Addr: h.mr.Addr()})
	t.Cleanup(func() { h.rdb.Close() })
	mc := multcallsim.New(h.rdb, h.s.Redis.Prefix, testCell, multcallsim.Options{})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mc.RunConfirmer(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	h.cl = &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(h.cl.CloseIdleConnections)
	return h
}

// start runs startDaemon, startOps and daemon.Run, as runDaemon does.
func (h *opsHarness) start(oo opsOptions) {
	h.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(h.t)).Level(zerolog.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	d, err := startDaemon(ctx, h.s, testCell, log)
	if err != nil {
		cancel()
		h.t.Fatalf("startDaemon: %v", err)
	}
	o, err := startOpsWith(ctx, d, oo)
	if err != nil {
		cancel()
		h.t.Fatalf("startOps: %v", err)
	}
	h.d, h.ops, h.cancel, h.done = d, o, cancel, make(chan error, 1)
	h.base = "http://" + o.Addr()
	go func() { h.done <- d.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
}

func (h *opsHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("daemon did not stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.ops.stop(ctx); err != nil {
		h.t.Errorf("stop ops: %v", err)
	}
}

func (h *opsHarness) do(method, path, body string) (int, string) {
	h.t.Helper()
	resp, b := h.send(h.request(method, path, body))
	return resp.StatusCode, b
}

// request is what an API client sends: the bearer token, and a JSON
// content type on a POST.
func (h *opsHarness) request(method, path, body string) *http.Request {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// send does req and returns the response (its body closed) and the body.
func (h *opsHarness) send(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.cl.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (h *opsHarness) submit(cell, body string) string {
	h.t.Helper()
	code, resp := h.do("POST", "/api/v1/cells/"+cell+"/calls", body)
	if code != 200 {
		h.t.Fatalf("POST %s: %d %s", body, code, resp)
	}
	var m struct {
		Code   int    `json:"code"`
		TaskID string `json:"taskId"`
	}
	if err := json.Unmarshal([]byte(resp), &m); err != nil || m.Code != 200 || m.TaskID == "" {
		h.t.Fatalf("POST answer %s: %v", resp, err)
	}
	return m.TaskID
}

// result polls the status of id until it is 200.
func (h *opsHarness) result(id string, within time.Duration) bridge.Result {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := h.do("GET", "/api/v1/cells/"+testCell+"/calls/"+id, "")
		switch code {
		case 200:
			var r bridge.Result
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				h.t.Fatalf("result %s: %v", body, err)
			}
			return r
		case 204:
		default:
			h.t.Fatalf("GET %s: %d %s", id, code, body)
		}
		if time.Now().After(deadline) {
			ctx := context.Background()
			k := h.d.keys
			h.t.Fatalf("no result for %s within %s (dial %q, call %v, claimed %v, ami %+v, claiming %v)", id, within,
				h.rdb.LRange(ctx, k.Dial(), 0, -1).Val(), h.rdb.HGetAll(ctx, k.Call(id)).Val(),
				h.rdb.Keys(ctx, "*claimed*").Val(), h.d.amic.State(), h.d.cell.Claiming())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHealth polls /healthz until it answers want.
func (h *opsHarness) waitHealth(want int, within time.Duration) string {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := h.do("GET", "/healthz", "")
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("healthz stayed %d (%s), want %d", code, body, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestOpsAPIEndToEnd(t *testing.T) {
	t.Parallel()
	h := newOpsHarness(t, "suffix=1:busy;suffix=2:answer,ring=700ms,talk=100ms;suffix=3:refuse;answer")
	h.start(opsOptions{notify: func(string) (bool, error) { return false, nil }})
	h.waitHealth(200, 10*time.Second)

	// One ringing call: in progress first, then its result.
	id := h.submit(testCell, `{"number": "5511999990002"}`)
	if code, body := h.do("GET", "/api/v1/cells/"+testCell+"/calls/"+id, ""); code != 204 {
		t.Fatalf("right after submit: %d %s", code, body)
	}
	r := h.result(id, 10*time.Second)
	if r.ID != id || !strings.HasPrefix(id, "h-") || r.Status != bridge.StatusAnswered || r.Cell != testCell || r.CallCode == "" {
		t.Fatalf("result %+v", r)
	}

	// A batch: answered at once, busy, refused (failed after all retries);
	// ids generated by the API.
	var ids []string
	want := map[bridge.Status]int{bridge.StatusAnswered: 1}
	for i, n := range []string{"100", "110", "120", "130", "101", "111", "113", "123"} {
		ids = append(ids, h.submit(testCell, `{"number": "`+n+`", "variables": {"N": "`+string(rune('a'+i))+`"}}`))
		switch n[len(n)-1] {
		case '0':
			want[bridge.StatusAnswered]++
		case '1':
			want[bridge.StatusBusy]++
		case '3':
			want[bridge.StatusFailed]++
		}
	}
	got := map[bridge.Status]int{bridge.StatusAnswered: 1}
	for _, id := range ids {
		r := h.result(id, 15*time.Second)
		if r.ID != id {
			t.Fatalf("result of %s is %+v", id, r)
		}
		got[r.Status]++
	}
	for s, n := range want {
		if got[s] != n {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}

	// Unknown id, unknown cell; another cell of the settings is not served
	// either: its calls belong to its own daemon.
	if code, body := h.do("GET", "/api/v1/cells/"+testCell+"/calls/nope", ""); code != 404 ||
		!strings.Contains(body, `"The requested call is not found"`) || !strings.Contains(body, `"code":404`) {
		t.Fatalf("unknown id: %d %s", code, body)
	}
	for _, cell := range []string{"999", "202"} {
		if code, _ := h.do("GET", "/api/v1/cells/"+cell+"/calls/x", ""); code != 404 {
			t.Fatalf("cell %s: %d", cell, code)
		}
		if code, _ := h.do("POST", "/api/v1/cells/"+cell+"/calls", `{"number":"1"}`); code != 404 {
			t.Fatalf("cell %s POST: %d", cell, code)
		}
	}
	if n := h.rdb.LLen(context.Background(), redisq.NewKeys(h.s.Redis.Prefix, "202").Dial()).Val(); n != 0 {
		t.Fatalf("cell 202 got %d commands", n)
	}
	if code, body := h.do("POST", "/api/v1/cells/"+testCell+"/calls", `{"number": "1", "caller_id": "x\r\nAction: Hangup"}`); code != 400 {
		t.Fatalf("CR/LF: %d %s", code, body)
	}

	// Metrics after the batch.
	retries := want[bridge.StatusFailed] * (h.s.Retries - 1) // every attempt refused
	fams := scrape(t, h)
	originated := float64(want[bridge.StatusAnswered] + want[bridge.StatusBusy])
	for _, c := range []struct {
		name   string
		status string
		want   float64
	}{
		{"dialbridge_commands_claimed_total", "", 9},
		{"dialbridge_results_total", "answered", float64(want[bridge.StatusAnswered])},
		{"dialbridge_results_total", "busy", float64(want[bridge.StatusBusy])},
		{"dialbridge_results_total", "failed", float64(want[bridge.StatusFailed])},
		{"dialbridge_results_total", "unknown", 0},
		{"dialbridge_originate_retries_total", "", float64(retries)},
		{"dialbridge_ack_timeouts_total", "", 0},
		{"dialbridge_claim_to_originate_seconds", "", originated},
		{"dialbridge_originate_to_outcome_seconds", "", originated},
		{"dialbridge_calls_in_progress", "", 0},
		{"dialbridge_threads", "", 20},
		{"dialbridge_redis_up", "", 1},
		{"dialbridge_ami_up", "", 1},
		{"dialbridge_claiming", "", 1},
		{"dialbridge_ami_reconnects_total", "", 0},
	} {
		v, ok := metricValue(fams, c.name, c.status)
		if !ok || v != c.want {
			t.Errorf("%s{status=%q} = %v (present %v), want %v", c.name, c.status, v, ok, c.want)
		}
	}
}

// TestOpsHTTPAccess: the daemon's listener applies http.token and
// http.allow_unauthenticated_loopback (contract section 4, "Access (v2)").
func TestOpsHTTPAccess(t *testing.T) {
	t.Parallel()
	calls := "/api/v1/cells/" + testCell + "/calls"
	for _, c := range []struct {
		name  string
		token config.Secret
		allow bool
		send  string // bearer token sent
		want  int    // answer to an API request
	}{
		{"token, none sent", opsToken, false, "", 401},
		{"token, a wrong one sent", opsToken, false, "wrong-0123456789abcdef", 401},
		{"token, sent", opsToken, false, opsToken, 200},
		{"no token, loopback", "", false, "", 401},
		{"no token, loopback allowed", "", true, "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newOpsHarness(t, "answer")
			h.s.HTTP.Token, h.s.HTTP.AllowUnauthenticatedLoopback, h.s.HTTP.Pprof = c.token, c.allow, true
			h.start(opsOptions{notify: func(string) (bool, error) { return false, nil }})
			h.token = c.send

			resp, body := h.send(h.request("POST", calls, `{"number": "1"}`))
			if resp.StatusCode != c.want {
				t.Fatalf("POST: %d %s, want %d", resp.StatusCode, body, c.want)
			}
			if code, _ := h.do("GET", "/debug/pprof/cmdline", ""); code != c.want {
				t.Fatalf("pprof: %d, want %d", code, c.want)
			}
			for _, path := range []string{"/healthz", "/metrics"} {
				if code, body := h.do("GET", path, ""); code == 401 || code == 403 {
					t.Fatalf("%s is closed: %d %s", path, code, body)
				}
			}
			if c.want == 401 {
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
					t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
				// Nothing was done: no command, no marker, no call.
				if keys := h.mr.Keys(); slices.ContainsFunc(keys, func(k string) bool {
					return strings.Contains(k, ":dial") || strings.Contains(k, ":submitted:") || strings.Contains(k, ":call:")
				}) {
					t.Fatalf("keys after a refused POST: %q", keys)
				}
				return
			}
			// Let in: the daemon's rules apply, and its own cell only.
			for _, r := range []struct {
				method, path, ctype, body string
				want                      int
			}{
				{"POST", calls, "text/plain", `{"number": "1"}`, 415},
				{"POST", calls, "application/json", `{"id": "c-000124", "number": "1"}`, 400},
				{"POST", "/api/v1/cells/202/calls", "application/json", `{"number": "1"}`, 404},
				{"POST", calls, "application/json", `{"number": "1", "caller_id": "` + strings.Repeat("x", 64<<10) + `"}`, 413},
			} {
				req := h.request(r.method, r.path, r.body)
				req.Header.Set("Content-Type", r.ctype)
				if resp, body := h.send(req); resp.StatusCode != r.want {
					t.Errorf("%s %s (%s, %.40s): %d %.200s, want %d", r.method, r.path, r.ctype, r.body, resp.StatusCode, body, r.want)
				}
			}
		})
	}
}

func scrape(t *testing.T, h *opsHarness) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := h.cl.Get(h.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue is the value (histograms: the count) of the series of name
// for the test cell, with label status when status is set.
func metricValue(fams map[string]*dto.MetricFamily, name, status string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["cell"] != testCell || labels["status"] != status {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestOpsHealthzFlips(t *testing.T) {
	t.Parallel()
	h := newOpsHarness(t, "answer")
	h.start(opsOptions{notify: func(string) (bool, error) { return false, nil }})
	body := h.waitHealth(200, 10*time.Second)
	if !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthy body %s", body)
	}

	// AMI goes away and comes back on the same address.
	h.sim.Close()
	body = h.waitHealth(503, 10*time.Second)
	if !strings.Contains(body, `"ami":"down`) || !strings.Contains(body, `"redis":"up"`) {
		t.Fatalf("AMI down: %s", body)
	}
	sim, err := restartSim(t, h.simCfg)
	if err != nil {
		t.Fatalf("restart the AMI simulator on %s: %v", h.simCfg.Addr, err)
	}
	h.sim = sim
	h.waitHealth(200, 15*time.Second)

	// A dropped connection is noticed and repaired too.
	h.sim.DropConnections()
	h.waitHealth(200, 15*time.Second)
	if v, ok := metricValue(scrape(t, h), "dialbridge_ami_reconnects_total", ""); !ok || v < 1 {
		t.Fatalf("ami reconnects %v %v", v, ok)
	}
	// A call still goes through.
	id := h.submit(testCell, `{"number": "5"}`)
	if r := h.result(id, 10*time.Second); r.Status != bridge.StatusAnswered {
		t.Fatalf("after the AMI outages: %+v", r)
	}

	// Redis goes away and comes back. Last: after miniredis's Restart a
	// blocking BLMOVE in flight is not always answered, so no call is
	// checked after it (TestRedisRestartMidLoad covers that on a real
	// redis-server).
	h.mr.Close()
	body = h.waitHealth(503, 10*time.Second)
	if !strings.Contains(body, `"status":"down"`) || !strings.Contains(body, `"redis":"down`) {
		t.Fatalf("Redis down: %s", body)
	}
	if err := h.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	h.waitHealth(200, 15*time.Second)
}

// TestOpsNotifyReady: READY=1 reaches $NOTIFY_SOCKET only once Redis and
// AMI are both up; WATCHDOG=1 is fed meanwhile; STOPPING=1 on shutdown.
func TestOpsNotifyReady(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")

	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// expect reads datagrams for d; it fails on a READY=1 unless allowed,
	// and returns everything read.
	expect := func(d time.Duration, until string) []string {
		t.Helper()
		var got []string
		timer := time.NewTimer(d)
		defer timer.Stop()
		for {
			select {
			case m := <-msgs:
				got = append(got, m)
				if until != "" && strings.Contains(m, until) {
					return got
				}
				if until != "READY=1" && strings.Contains(m, "READY=1") {
					t.Fatalf("READY=1 too early: %q", got)
				}
			case <-timer.C:
				if until != "" {
					t.Fatalf("no %s within %s; got %q", until, d, got)
				}
				return got
			}
		}
	}

	h := newOpsHarness(t, "answer")
	h.sim.Close() // AMI down at start: the daemon starts and waits for it
	h.start(opsOptions{readyPoll: 50 * time.Millisecond})
	h.mr.Close() // and Redis goes away too

	// Both down is seen once the daemon notices Redis gone: read until
	// both messages came (expect fails on any READY=1 meanwhile), not for
	// a fixed second a loaded machine may spend elsewhere.
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		got = append(got, expect(100*time.Millisecond, "")...)
		joined := strings.Join(got, "|")
		if strings.Contains(joined, "WATCHDOG=1") && strings.Contains(joined, "STATUS=waiting for Redis and AMI") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("before ready: %q", got)
		}
	}
	// AMI back, Redis still down: not ready.
	sim, err := restartSim(t, h.simCfg)
	if err != nil {
		t.Fatalf("restart the AMI simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	h.sim = sim
	deadline := time.Now().Add(30 * time.Second)
	for !h.d.amic.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("AMI did not reconnect")
		}
		expect(50*time.Millisecond, "")
	}
	expect(500*time.Millisecond, "")
	// Redis back: READY=1.
	if err := h.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	got = expect(30*time.Second, "READY=1")
	if last := got[len(got)-1]; !strings.Contains(last, "STATUS=") {
		t.Fatalf("READY=1 without STATUS=: %q", last)
	}
	// The watchdog keeps being fed.
	expect(10*time.Second, "WATCHDOG=1")
	// Shutdown: STOPPING=1.
	h.cancel()
	expect(30*time.Second, "STOPPING=1")
	h.cancel = func() {}
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop")
	}
	h.cancel = nil
	if err := h.ops.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestUnitFile checks scripts/dialbridge@.service with systemd-analyze.
func TestUnitFile(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile("../../scripts/dialbridge@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78", "MemoryMax=",
		"User=dialbridge", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/log/dialbridge"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	// verify wants ExecStart to exist: point it at an executable we have.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/dialbridge", self)
	if err := os.WriteFile(filepath.Join(dir, "dialbridge@.service"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", filepath.Join(dir, "dialbridge@101.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
