package httpapi

// Tests of who may use the API and how much (contract section 4, "Access
// (v2)"), over real HTTP against miniredis.

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
)

const calls = "/api/v1/cells/101/calls"

func TestBearerToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	const wrong = "wrong-token-0123456789"
	for _, c := range []struct {
		name, method, path, auth string
		want                     int
		challenge                string // WWW-Authenticate of a 401
	}{
		{"submit, no header", "POST", calls, "", 401, `Bearer realm="dialbridge"`},
		{"submit, wrong token", "POST", calls, "Bearer " + wrong, 401, `Bearer realm="dialbridge", error="invalid_token"`},
		{"submit, the token but one", "POST", calls, "Bearer " + testToken[:len(testToken)-1], 401, `error="invalid_token"`},
		{"submit, the token and more", "POST", calls, "Bearer " + testToken + "x", 401, `error="invalid_token"`},
		{"submit, the token twice", "POST", calls, "Bearer " + testToken + " " + testToken, 401, `error="invalid_token"`},
		{"submit, empty bearer", "POST", calls, "Bearer ", 401, `error="invalid_token"`},
		{"submit, the token without scheme", "POST", calls, testToken, 401, `Bearer realm="dialbridge"`},
		{"submit, basic scheme", "POST", calls, "Basic " + testToken, 401, `Bearer realm="dialbridge"`},
		{"status, no header", "GET", calls + "/x", "", 401, `Bearer realm="dialbridge"`},
		{"status, wrong token", "GET", calls + "/x", "Bearer " + wrong, 401, `error="invalid_token"`},
		{"unknown API path, no header", "GET", "/api/v2/anything", "", 401, `Bearer`},
		{"pprof, no header", "GET", "/debug/pprof/cmdline", "", 401, `Bearer realm="dialbridge"`},
		{"pprof, wrong token", "GET", "/debug/pprof/goroutine?debug=1", "Bearer " + wrong, 401, `error="invalid_token"`},
		{"submit, right token", "POST", calls, "Bearer " + testToken, 200, ""},
		{"submit, scheme in lower case", "POST", calls, "bearer " + testToken, 200, ""},
		{"status, right token", "GET", calls + "/nope", "Bearer " + testToken, 404, ""},
		{"pprof, right token", "GET", "/debug/pprof/cmdline", "Bearer " + testToken, 200, ""},
		{"healthz, no header", "GET", "/healthz", "", 200, ""},
		{"healthz, wrong token", "GET", "/healthz", "Bearer " + wrong, 200, ""},
		{"metrics, no header", "GET", "/metrics", "", 200, ""},
	} {
		req := f.request(t, c.method, c.path, `{"number": "1"}`)
		req.Header.Del("Authorization")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, body := f.send(t, req)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
			continue
		}
		got := resp.Header.Get("WWW-Authenticate")
		if c.want != 401 {
			if got != "" {
				t.Errorf("%s: WWW-Authenticate %q on a %d", c.name, got, c.want)
			}
			continue
		}
		if !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, c.challenge) {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, c.challenge)
		}
		if c.auth == "" && strings.Contains(got, "error=") {
			t.Errorf("%s: an error code without credentials (RFC 6750 §3.1): %q", c.name, got)
		}
		if m := decode(t, body); m["code"] != 401.0 || m["message"] == "" {
			t.Errorf("%s: body %s", c.name, body)
		}
	}
	// Nothing was done for a refused request: the two accepted submits
	// are all there is.
	if got := f.dial("101"); len(got) != 2 {
		t.Fatalf("dial list %q: want the two authorised commands only", got)
	}
	if keys := f.mr.Keys(); len(keys) != 3 { // the dial list and the two commands' submitted markers
		t.Fatalf("keys %q", keys)
	}
	// Neither the token nor a guess reaches the log.
	logs := f.logs.String()
	for _, secret := range []string{testToken, wrong, "Authorization"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
}

// TestNoTokenClosed: without http.token the API and the profiler answer
// 401 to everyone, loopback included, unless allow_unauthenticated_loopback
// is set and the connection is a loopback one.
func TestNoTokenClosed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		token    string
		allow    bool
		send     string // bearer token sent
		wantAPI  int
		wantProf int
	}{
		{"no token", "", false, "", 401, 401},
		{"no token, a bearer sent anyway", "", false, "anything-0123456789", 401, 401},
		{"no token, loopback allowed", "", true, "", 200, 200},
		{"token and loopback allowed: the token still rules", testToken, true, "", 401, 401},
		{"token and loopback allowed, token sent", testToken, true, testToken, 200, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWith(t, "", "", func(o *Options) { o.Token, o.AllowUnauthenticatedLoopback = config.Secret(c.token), c.allow })
			f.token = c.send
			code, body := f.do(t, "POST", calls, `{"number": "1"}`)
			if code != c.wantAPI {
				t.Fatalf("POST: %d %s, want %d", code, body, c.wantAPI)
			}
			if code, body := f.do(t, "GET", calls+"/nope", ""); code != c.wantAPI && !(c.wantAPI == 200 && code == 404) {
				t.Fatalf("GET: %d %s", code, body)
			}
			if code, _ := f.do(t, "GET", "/debug/pprof/cmdline", ""); code != c.wantProf {
				t.Fatalf("pprof: %d, want %d", code, c.wantProf)
			}
			if code, _ := f.do(t, "GET", "/healthz", ""); code != 200 {
				t.Fatalf("healthz: %d", code)
			}
			if n := len(f.dial("101")); (n == 1) != (c.wantAPI == 200) {
				t.Fatalf("%d commands queued", n)
			}
		})
	}
}

// TestLoopbackIsTheConnections: allow_unauthenticated_loopback opens the
// API only on a connection whose both ends are loopback, never on the
// settings' word alone.
func TestLoopbackIsTheConnections(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	h := NewHandler(Options{RDB: rdb, Prefix: "P", Cell: "101", AllowUnauthenticatedLoopback: true, Log: zerolog.Nop()})
	for _, c := range []struct {
		name, local, remote string
		want                int
	}{
		{"both loopback", "127.0.0.1:8080", "127.0.0.1:5555", 204},
		{"IPv6 loopback", "[::1]:8080", "[::1]:5555", 204},
		{"listener on every interface", "192.0.2.10:8080", "192.0.2.20:5555", 401},
		{"remote not loopback", "127.0.0.1:8080", "192.0.2.20:5555", 401},
		{"no connection known", "", "127.0.0.1:5555", 401},
	} {
		req := httptest.NewRequest("GET", calls+"/x", nil)
		req.RemoteAddr = c.remote
		if c.local != "" {
			la, err := net.ResolveTCPAddr("tcp", c.local)
			if err != nil {
				t.Fatal(err)
			}
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, la))
		}
		mr.Set("P:{101}:submitted:x", "1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, rec.Code, rec.Body, c.want)
		}
	}
}

func TestContentType(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	for _, c := range []struct {
		ctype string
		want  int
	}{
		{"", 415},
		{"text/plain", 415},
		{"text/plain; charset=utf-8", 415},
		{"application/x-www-form-urlencoded", 415},
		{"multipart/form-data; boundary=x", 415},
		{"application/jsonx", 415},
		{"application/json; charset=latin1", 415},
		{"application/json; charset", 415},
		{"application/json, text/plain", 415},
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{"Application/JSON; Charset=UTF-8", 200},
	} {
		req := f.request(t, "POST", calls, `{"number": "1"}`)
		req.Header.Del("Content-Type")
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, body := f.send(t, req)
		if resp.StatusCode != c.want {
			t.Errorf("Content-Type %q: %d %s, want %d", c.ctype, resp.StatusCode, body, c.want)
		} else if c.want == 415 && decode(t, body)["code"] != 415.0 {
			t.Errorf("Content-Type %q: body %s", c.ctype, body)
		}
	}
	if n := len(f.dial("101")); n != 3 {
		t.Fatalf("%d commands queued, want the 3 sent as JSON", n)
	}
}

// TestBrowsersRefused: a browser marks its requests (Origin,
// Sec-Fetch-Site); the API is for programs, so such a request is refused
// even with the token, and a CORS preflight never succeeds.
func TestBrowsersRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	for _, c := range []struct {
		name, method, path, header, value string
	}{
		{"cross-site POST", "POST", calls, "Origin", "https://evil.example"},
		{"same-origin POST (DNS rebinding)", "POST", calls, "Origin", "http://" + f.srv.Addr()},
		{"opaque origin", "POST", calls, "Origin", "null"},
		{"GET from a page", "GET", calls + "/x", "Sec-Fetch-Site", "cross-site"},
		{"typed in the address bar", "GET", "/debug/pprof/", "Sec-Fetch-Site", "none"},
		{"preflight", "OPTIONS", calls, "Origin", "https://evil.example"},
	} {
		req := f.request(t, c.method, c.path, `{"number": "1"}`)
		req.Header.Set(c.header, c.value)
		if c.method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		}
		resp, body := f.send(t, req)
		if resp.StatusCode != 403 || decode(t, body)["code"] != 403.0 {
			t.Errorf("%s: %d %s, want 403", c.name, resp.StatusCode, body)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: CORS header %s", c.name, k)
			}
		}
	}
	if n := len(f.dial("101")); n != 0 {
		t.Fatalf("%d commands queued from a browser", n)
	}
	// /healthz and /metrics stay open to anyone.
	req := f.request(t, "GET", "/healthz", "")
	req.Header.Set("Origin", "https://dashboard.example")
	if resp, body := f.send(t, req); resp.StatusCode != 200 {
		t.Fatalf("healthz from a page: %d %s", resp.StatusCode, body)
	}
}

// TestServerMakesTheID: a client never chooses a command's id (it could
// take Multcall's next one).
func TestServerMakesTheID(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, "", "", func(o *Options) { o.Limits = Limits{ClientRate: rate.Inf, GlobalRate: rate.Inf} })
	for _, body := range []string{
		`{"id": "c-000124", "number": "1"}`,
		`{"number": "1", "id": "c-000124"}`,
		`{"id": null, "number": "1"}`,
		`{"id": "", "number": "1"}`,
		`{"ID": "c-000124", "number": "1"}`,
		`{"Id": "c-000124", "number": "1"}`,
		`{"\u0069d": "c-000124", "number": "1"}`,
		`{"number": "1", "iD": 7}`,
	} {
		code, resp := f.do(t, "POST", calls, body)
		if code != 400 || !strings.Contains(decode(t, resp)["message"].(string), "id") {
			t.Errorf("%s: %d %s, want 400", body, code, resp)
		}
	}
	if got := f.dial("101"); len(got) != 0 {
		t.Fatalf("queued %q", got)
	}

	// Made ids: unique, h- prefixed, valid, and the queued command's.
	const workers, each = 4, 25
	var (
		mu  sync.Mutex
		ids = map[string]bool{}
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range each {
				code, resp := f.do(t, "POST", calls, `{"number": "1"}`)
				if code != 200 {
					t.Errorf("POST: %d %s", code, resp)
					return
				}
				id, _ := decode(t, resp)["taskId"].(string)
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(ids) != workers*each {
		t.Fatalf("%d distinct ids for %d commands", len(ids), workers*each)
	}
	queued := f.dial("101")
	for _, raw := range queued {
		cmd, err := bridge.ParseCommand([]byte(raw))
		if err != nil || !ids[cmd.ID] || !strings.HasPrefix(cmd.ID, "h-") || !validID(cmd.ID) || len(cmd.ID) < 2+20 {
			t.Fatalf("queued %q: %v", raw, err)
		}
		delete(ids, cmd.ID)
	}
	if len(ids) != 0 {
		t.Fatalf("answered ids never queued: %v", ids)
	}
}

// TestOwnCellOnly: a daemon takes calls for its own cell alone, even when
// the settings list others.
func TestOwnCellOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	f.mr.Set("P:{202}:submitted:x", "1")
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/cells/202/calls"},
		{"GET", "/api/v1/cells/202/calls/x"},
		{"POST", "/api/v1/cells/%1b%5b2J/calls"},
	} {
		code, body := f.do(t, c.method, c.path, `{"number": "1"}`)
		if code != 404 || decode(t, body)["code"] != 404.0 {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	if got := f.dial("202"); len(got) != 0 {
		t.Fatalf("cell 202 got %q", got)
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	// An hour per token: nothing refills while the test runs, however slow
	// the machine.
	slow := rate.Every(time.Hour)
	retryAfter := func(t *testing.T, f *fixture, req *http.Request) {
		t.Helper()
		resp, body := f.send(t, req)
		s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != 429 || err != nil || s < 1 || decode(t, body)["code"] != 429.0 {
			t.Fatalf("%d Retry-After %q %s, want 429 with a Retry-After in seconds", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}

	t.Run("per client", func(t *testing.T) {
		t.Parallel()
		f := newFixtureWith(t, "", "", func(o *Options) { o.Limits = Limits{ClientRate: slow, ClientBurst: 3} })
		for range 3 {
			if code, body := f.do(t, "POST", calls, `{"number": "1"}`); code != 200 {
				t.Fatalf("within the burst: %d %s", code, body)
			}
		}
		retryAfter(t, f, f.request(t, "POST", calls, `{"number": "1"}`))
		retryAfter(t, f, f.request(t, "GET", calls+"/x", ""))
		retryAfter(t, f, f.request(t, "GET", "/healthz", ""))
		retryAfter(t, f, f.request(t, "GET", "/metrics", ""))
		if n := len(f.dial("101")); n != 3 {
			t.Fatalf("%d commands queued, want 3", n)
		}
	})

	t.Run("global, authorised requests only", func(t *testing.T) {
		t.Parallel()
		f := newFixtureWith(t, "", "", func(o *Options) { o.Limits = Limits{GlobalRate: slow, GlobalBurst: 2} })
		token := f.token
		f.token = "guess-0123456789abcdef"
		for range 10 { // refused callers do not use up the others' share
			if code, _ := f.do(t, "POST", calls, `{"number": "1"}`); code != 401 {
				t.Fatalf("unauthorised: %d", code)
			}
		}
		f.token = token
		for range 2 {
			if code, body := f.do(t, "POST", calls, `{"number": "1"}`); code != 200 {
				t.Fatalf("within the global burst: %d %s", code, body)
			}
		}
		retryAfter(t, f, f.request(t, "POST", calls, `{"number": "1"}`))
		if code, _ := f.do(t, "GET", "/healthz", ""); code != 200 {
			t.Fatalf("healthz under the global cap: %d", code)
		}
	})
}

func TestClientLimitersBounded(t *testing.T) {
	t.Parallel()
	c := newClientLimiters(rate.Every(time.Hour), 1, 3)
	exhaust := func(key string) {
		if !c.get(key).Allow() {
			t.Fatalf("%s: a fresh limiter refused", key)
		}
	}
	exhaust("a")
	exhaust("b")
	exhaust("c")
	if c.get("a").Allow() { // a is used: now the most recent
		t.Fatal("a's limiter was replaced")
	}
	exhaust("d") // evicts b, the least recently seen
	if n := c.len(); n != 3 {
		t.Fatalf("%d limiters kept, want 3", n)
	}
	if c.get("a").Allow() || c.get("d").Allow() {
		t.Fatal("a recent client's limiter was evicted")
	}
	exhaust("b") // back as a new client
	for i := range 10000 {
		c.get(strconv.Itoa(i))
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d limiters after 10,000 clients, want 3", n)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ a, b string }{
		{"192.0.2.1:1000", "192.0.2.1:2000"},
		{"[::ffff:192.0.2.1]:1000", "192.0.2.1:2000"},
		// One host usually owns a whole IPv6 /64.
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:2000"},
	} {
		if clientKey(c.a) != clientKey(c.b) {
			t.Errorf("%s and %s are different clients: %q %q", c.a, c.b, clientKey(c.a), clientKey(c.b))
		}
	}
	for _, c := range []struct{ a, b string }{
		{"192.0.2.1:1000", "192.0.2.2:1000"},
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:3::1]:1000"},
	} {
		if clientKey(c.a) == clientKey(c.b) {
			t.Errorf("%s and %s are one client: %q", c.a, c.b, clientKey(c.a))
		}
	}
}

// TestErrorsNeverEchoControls: a message can be shown on a terminal or in
// a log viewer; input planted in it must not carry escape sequences.
func TestErrorsNeverEchoControls(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "")
	for _, c := range []struct{ method, path, body string }{
		{"POST", calls, "{\"number\": \"1\x1b]0;pwned\x07\"}"},
		{"POST", calls, "{\"caller_id\": \"a\u202eb\"}"},
		{"POST", calls, "{\x1b[2J"},
		{"POST", calls, "\x1b[2J"},
		{"POST", calls, `{"number": "1", "variables": {"A\u001b[2J": "x"}}`},
		{"POST", calls, `{"number": "1", "variables": {"A": "x\u001b[2J\r"}}`},
		{"POST", calls, "{\"number\": \"1\", \"variables\": {\"A\": \"x\x9b2J\"}}"},
		{"GET", "/api/v1/cells/%1b%5b2J/calls/x", ""},
		{"GET", calls + "/%1b%5b2J", ""},
	} {
		code, body := f.do(t, c.method, c.path, c.body)
		if code < 400 {
			t.Errorf("%q: %d", c.body, code)
			continue
		}
		msg, _ := decode(t, body)["message"].(string)
		if msg == "" || len(msg) > maxMessageBytes {
			t.Errorf("%q: message %q", c.body, msg)
		}
		for _, r := range msg {
			if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
				t.Errorf("%q: message %q has %U", c.body, msg, r)
			}
		}
	}
}

func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	s, err := Start("127.0.0.1:0", "", "", http.NotFoundHandler(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 ||
		s.srv.MaxHeaderBytes <= 0 || s.srv.MaxHeaderBytes > 64<<10 {
		t.Fatalf("server limits %+v", s.srv)
	}
}
