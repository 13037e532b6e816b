package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

type fakeCell struct {
	redisUp, claiming atomic.Bool
	inFlight          atomic.Int64
}

func (c *fakeCell) InFlight() int  { return int(c.inFlight.Load()) }
func (c *fakeCell) Threads() int   { return 10 }
func (c *fakeCell) RedisUp() bool  { return c.redisUp.Load() }
func (c *fakeCell) Claiming() bool { return c.claiming.Load() }

type fakeAMI struct{ ready atomic.Bool }

func (a *fakeAMI) Ready() bool { return a.ready.Load() }

// testToken is the fixture's http.token.
const testToken = "tok-0123456789abcdefXYZ"

type fixture struct {
	mr   *miniredis.Miniredis
	rdb  *redis.Client
	cell *fakeCell
	ami  *fakeAMI
	srv  *Server
	base string
	cl   *http.Client
	// token is sent as the bearer token by do ("": no Authorization).
	token string
	logs  *lockedBuffer // everything the handler and server logged
}

// lockedBuffer collects log lines written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newFixture(t *testing.T, cert, key string) *fixture { return newFixtureWith(t, cert, key, nil) }

// newFixtureWith serves cell 101 with testToken and pprof on, after opt
// has changed the options.
func newFixtureWith(t *testing.T, cert, key string, opt func(*Options)) *fixture {
	t.Helper()
	f := &fixture{mr: miniredis.RunT(t), cell: &fakeCell{}, ami: &fakeAMI{}, logs: &lockedBuffer{}}
	f.cell.redisUp.Store(true)
	f.cell.claiming.Store(true)
	f.ami.ready.Store(true)
	f.rdb = redis.NewClient(&redis.Options{Addr: f.mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { f.rdb.Close() })
	lg := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), f.logs)).Level(zerolog.DebugLevel)
	o := Options{
		RDB: f.rdb, Prefix: "P", Cell: "101", Token: testToken, Pprof: true,
		Health:  &Checker{Ping: func(ctx context.Context) error { return f.rdb.Ping(ctx).Err() }, Cell: f.cell, AMI: f.ami},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dialbridge_x 1\n") }),
		Log:     lg,
	}
	if opt != nil {
		opt(&o)
	}
	f.token = o.Token.Reveal()
	var err error
	f.srv, err = Start("127.0.0.1:0", cert, key, NewHandler(o), lg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	f.base = "http://" + f.srv.Addr()
	f.cl = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(f.cl.CloseIdleConnections)
	return f
}

// request is what a well-behaved client sends: the bearer token, and a
// JSON content type on a POST.
func (f *fixture) request(t *testing.T, method, path, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// send does req and returns the response (its body closed) and the body.
func (f *fixture) send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	resp, b := f.send(t, f.request(t, method, path, body))
	return resp.StatusCode, b
}

// dial is the dial list of cell.
func (f *fixture) dial(cell string) []string {
	l, _ := f.mr.List(redisq.NewKeys("P", cell).Dial())
	return l
}

func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return m
}

func TestSubmitAndStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	keys := redisq.NewKeys("P", "101")

	code, body := f.do(t, "POST", "/api/v1/cells/101/calls", `{"number": "5511999990000", "variables": {"A": "b"}}`)
	if code != 200 {
		t.Fatalf("POST: %d %s", code, body)
	}
	m := decode(t, body)
	id, _ := m["taskId"].(string)
	if m["code"] != 200.0 || !strings.HasPrefix(id, "h-") || !validID(id) {
		t.Fatalf("POST answer %v", m)
	}
	// The command is queued as sent, with the server's id first.
	want := `{"id":"` + id + `","number": "5511999990000", "variables": {"A": "b"}}`
	if got := f.dial("101"); len(got) != 1 || got[0] != want {
		t.Fatalf("dial list %q, want %q", got, want)
	}
	cmd, err := bridge.ParseCommand([]byte(want))
	if err != nil || cmd.ID != id || cmd.Number != "5511999990000" || len(cmd.Variables) != 1 {
		t.Fatalf("queued %+v %v", cmd, err)
	}

	// Queued, not claimed yet: in progress.
	if code, body := f.do(t, "GET", "/api/v1/cells/101/calls/"+id, ""); code != 204 || body != "" {
		t.Fatalf("queued: %d %q", code, body)
	}
	// Claimed: the call hash exists.
	f.mr.HSet(keys.Call(id), "state", "acked")
	if code, _ := f.do(t, "GET", "/api/v1/cells/101/calls/"+id, ""); code != 204 {
		t.Fatalf("in progress: %d", code)
	}
	res := `{"id":"` + id + `","cell":"101","status":"busy","attempts":1}`
	f.mr.HSet(keys.Call(id), "state", string(bridge.StateDone), "result", res)
	code, body = f.do(t, "GET", "/api/v1/cells/101/calls/"+id, "")
	if code != 200 || strings.TrimSpace(body) != res {
		t.Fatalf("done: %d %q", code, body)
	}
	// An empty object gets its id too (and is refused for its number).
	if code, body := f.do(t, "POST", "/api/v1/cells/101/calls", ` { } `); code != 400 || !strings.Contains(body, "number") {
		t.Fatalf("empty object: %d %s", code, body)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	for _, c := range []struct{ method, path, body, msg string }{
		{"GET", "/api/v1/cells/101/calls/nope", "", NotFoundMessage},
		{"GET", "/api/v1/cells/101/calls/bad%20id", "", NotFoundMessage},
		{"GET", "/api/v1/cells/999/calls/x", "", `this daemon serves cell "101" only`},
		{"POST", "/api/v1/cells/999/calls", `{"number":"1"}`, `this daemon serves cell "101" only`},
	} {
		code, body := f.do(t, c.method, c.path, c.body)
		if code != 404 {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
			continue
		}
		m := decode(t, body)
		if m["code"] != 404.0 || m["message"] != c.msg {
			t.Errorf("%s %s: %v", c.method, c.path, m)
		}
	}
	if n := f.dial("999"); len(n) != 0 {
		t.Fatal("unknown cell got a command")
	}
	if code, _ := f.do(t, "DELETE", "/api/v1/cells/101/calls/x", ""); code != 405 {
		t.Fatalf("DELETE: %d", code)
	}
	for _, path := range []string{"/nothing", "/api/v1/nothing"} {
		if code, _ := f.do(t, "GET", path, ""); code != 404 {
			t.Fatalf("unknown path %s: %d", path, code)
		}
	}
}

func TestBadBodies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	for _, c := range []struct{ name, body, want string }{
		{"empty", ``, "not a JSON object"},
		{"array", `[1]`, "not a JSON object"},
		{"malformed", `{"number": }`, "malformed JSON"},
		{"truncated", `{"number": "1"`, "malformed JSON"},
		{"trailing", `{"number": "1"} {}`, "after the object"},
		{"number type", `{"number": 5511}`, "number must be a string"},
		{"timeout type", `{"number": "1", "timeout_s": "30"}`, "timeout_s"},
		{"variables type", `{"number": "1", "variables": ["A=b"]}`, "variables"},
		{"bad number", `{"number": "55abc"}`, "number"},
		{"missing number", `{}`, "number is required"},
		{"CRLF caller_id", `{"number": "1", "caller_id": "x\r\nAction: Hangup"}`, "caller_id"},
		{"LF variable", `{"number": "1", "variables": {"A": "b\nAction: Hangup"}}`, "variable"},
		{"timeout range", `{"number": "1", "timeout_s": 301}`, "timeout_s"},
		{"reserved variable", `{"number": "1", "variables": {"DIALBRIDGE_X": "1"}}`, "DIALBRIDGE_"},
		{"bad UTF-8", "{\"number\": \"1\xff\"}", "UTF-8"},
	} {
		code, body := f.do(t, "POST", "/api/v1/cells/101/calls", c.body)
		if code != 400 {
			t.Errorf("%s: %d %s", c.name, code, body)
			continue
		}
		m := decode(t, body)
		msg, _ := m["message"].(string)
		if m["code"] != 400.0 || !strings.Contains(strings.ToLower(msg), strings.ToLower(c.want)) {
			t.Errorf("%s: %v, want a message with %q", c.name, m, c.want)
		}
	}
	if n := f.dial("101"); len(n) != 0 {
		t.Fatalf("bad bodies were queued: %q", n)
	}
}

func TestOversizedBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	// pad makes a body of exactly n bytes.
	pad := func(n int) string {
		head := `{"number": "1", "caller_id": "`
		return head + strings.Repeat("x", n-len(head)-2) + `"}`
	}
	// hidden hides the body's length, so it travels chunked.
	type hidden struct{ io.Reader }
	for _, c := range []struct {
		name    string
		body    io.Reader
		want    int
		message string
	}{
		{"64 KB + 1", strings.NewReader(pad(MaxBodyBytes + 1)), 413, "larger than 65536 bytes"},
		{"64 KB + 1, chunked", hidden{strings.NewReader(pad(MaxBodyBytes + 1))}, 413, "larger than 65536 bytes"},
		// Read whole, then judged as a dial command: too large once the
		// id is in.
		{"64 KB", strings.NewReader(pad(MaxBodyBytes)), 400, strconv.Itoa(bridge.MaxCommandBytes)},
		{"the command limit exactly, before the id", strings.NewReader(pad(bridge.MaxCommandBytes)), 400, strconv.Itoa(bridge.MaxCommandBytes)},
	} {
		req := f.request(t, "POST", "/api/v1/cells/101/calls", "")
		req.Body = io.NopCloser(c.body)
		if r, ok := c.body.(*strings.Reader); ok {
			req.ContentLength = int64(r.Len())
		} else {
			req.ContentLength = -1
		}
		resp, body := f.send(t, req)
		if resp.StatusCode != c.want || decode(t, body)["code"] != float64(c.want) || !strings.Contains(body, c.message) {
			t.Errorf("%s: %d %.300s", c.name, resp.StatusCode, body)
		}
	}
	if n := f.dial("101"); len(n) != 0 {
		t.Fatalf("oversized bodies were queued: %d", len(n))
	}
	// The largest command that fits once the server's id is in is queued.
	largest := pad(bridge.MaxCommandBytes - len(`"id":"`+NewID()+`",`))
	if code, body := f.do(t, "POST", "/api/v1/cells/101/calls", largest); code != 400 || !strings.Contains(body, "caller_id") {
		// caller_id is too long for its own rule: the size rule passed.
		t.Fatalf("largest command: %d %.300s", code, body)
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	check := func(want int, wantInBody ...string) {
		t.Helper()
		code, body := f.do(t, "GET", "/healthz", "")
		if code != want {
			t.Fatalf("healthz %d, want %d: %s", code, want, body)
		}
		for _, s := range wantInBody {
			if !strings.Contains(body, s) {
				t.Fatalf("healthz %s: no %q", body, s)
			}
		}
	}
	check(200, `"status":"ok"`, `"redis":"up"`, `"ami":"up"`, `"threads":10`)
	f.ami.ready.Store(false)
	check(503, `"status":"down"`, `"ami":"down`, `"redis":"up"`)
	f.ami.ready.Store(true)
	f.cell.claiming.Store(false)
	check(503, `not claiming`)
	f.cell.claiming.Store(true)
	f.cell.redisUp.Store(false)
	check(503, `"redis":"down`)
	f.cell.redisUp.Store(true)
	check(200)
	f.mr.Close() // PING fails; the API answers 503, not 404, for Redis work
	check(503, `"redis":"down: PING`)
	if code, _ := f.do(t, "POST", "/api/v1/cells/101/calls", `{"number":"1"}`); code != 503 {
		t.Fatalf("POST with Redis down: %d", code)
	}
	if code, _ := f.do(t, "GET", "/api/v1/cells/101/calls/a", ""); code != 503 {
		t.Fatalf("GET with Redis down: %d", code)
	}
	if err := f.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := f.do(t, "GET", "/healthz", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("healthz did not come back after Redis returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := f.do(t, "GET", "/metrics", ""); code != 200 || body != "dialbridge_x 1\n" {
		t.Fatalf("metrics: %d %q", code, body)
	}
}

// writeCert makes a self-signed certificate for 127.0.0.1 and returns the
// file names and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dialbridge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestHTTPS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeCert(t)
	f := newFixture(t, certFile, keyFile)
	if !f.srv.TLS() {
		t.Fatal("not TLS")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	f.cl = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	// Plain HTTP on the HTTPS address gets no API answer.
	if code, _ := f.do(t, "GET", "/healthz", ""); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP on the TLS address: %d", code)
	}

	f.base = "https://" + f.srv.Addr()
	if code, body := f.do(t, "POST", "/api/v1/cells/101/calls", `{"number":"1"}`); code != 200 {
		t.Fatalf("POST over HTTPS: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", f.base+"/healthz", nil)
	resp, err := f.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %+v", resp.TLS)
	}

	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", f.srv.Addr(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// TLS 1.2 works.
	conn, err = tls.Dial("tcp", f.srv.Addr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	conn.Close()
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	h := http.NotFoundHandler()
	lg := zerolog.Nop()
	if _, err := Start("127.0.0.1:0", filepath.Join(t.TempDir(), "none.pem"), "x", h, lg); err == nil || !strings.Contains(err.Error(), "tls_cert") {
		t.Fatalf("missing certificate: %v", err)
	}
	s, err := Start("127.0.0.1:0", "", "", h, lg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if _, err := Start(s.Addr(), "", "", h, lg); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("address in use: %v", err)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !validID(id) || seen[id] {
			t.Fatalf("id %q", id)
		}
		if _, err := bridge.ParseCommand([]byte(`{"id":"` + id + `","number":"1"}`)); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
	}
}

// TestPprof: the profiler is mounted only when http.pprof asks for it.
func TestPprof(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		f := newFixtureWith(t, "", "", func(o *Options) { o.Pprof = on })
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			if code, _ := f.do(t, "GET", path, ""); code != want {
				t.Errorf("pprof %v: GET %s: %d, want %d", on, path, code, want)
			}
		}
	}
}
