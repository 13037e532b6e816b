// Package httpapi is dialbridge's optional HTTP(S) listener (contract
// section 4): submit a dial command and poll its status, /healthz and
// /metrics.
//
// A daemon's API serves its own cell only. /api/ and /debug/pprof/ are
// guarded (access.go): no browser, a bearer token, a rate limit; /healthz and
// /metrics are open to anyone (rate-limited per client only) since they
// carry no ids and no numbers.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
)

// redisTimeout bounds the Redis work of one request.
const redisTimeout = 3 * time.Second

// SubmittedTTL is how long a command submitted over HTTP counts as "in
// progress" (204) before it has a call hash.
const SubmittedTTL = 24 * time.Hour

// SubmittedKey is P:{C}:submitted:<id>, set when a command is submitted over
// HTTP so that its status is 204 while it waits in the dial list.
func SubmittedKey(k redisq.Keys, id string) string { return k.Base() + "submitted:" + id }

// NotFoundMessage is the message of a 404 for an unknown call.
const NotFoundMessage = "The requested call is not found"

// Options configure the handler.
type Options struct {
	// RDB is the Redis client submit and status use.
	RDB redis.UniversalClient
	// Prefix is redis.prefix; Cell is the daemon's own cell, the only one
	// whose calls this API takes and reports.
	Prefix string
	Cell   string
	// Token is http.token: when set, /api/ and /debug/pprof/ require it as
	// a bearer token.
	Token config.Secret
	// AllowUnauthenticatedLoopback (http.allow_unauthenticated_loopback)
	// opens /api/ and /debug/pprof/ without a token, only when Token is
	// empty and only on a connection whose both ends are loopback.
	AllowUnauthenticatedLoopback bool
	// Limits are the rate limits; zero fields take the defaults.
	Limits Limits
	// Health answers /healthz; nil: no /healthz.
	Health *Checker
	// Metrics serves /metrics; nil: no /metrics.
	Metrics http.Handler
	// Pprof mounts net/http/pprof at /debug/pprof/ (http.pprof).
	Pprof bool
	// NewID makes the id of a submitted command; nil: NewID.
	NewID func() string
	Log   zerolog.Logger
}

// NewHandler builds the HTTP handler of the API.
func NewHandler(o Options) http.Handler {
	if o.NewID == nil {
		o.NewID = NewID
	}
	limits := o.Limits.withDefaults()
	a := &api{o: o, keys: redisq.NewKeys(o.Prefix, o.Cell), gate: newGate(o), global: limits.global(), clients: limits.clients()}

	calls := http.NewServeMux()
	calls.HandleFunc("POST /api/v1/cells/{cell}/calls", a.submit)
	calls.HandleFunc("/api/v1/cells/{cell}/calls", methodNotAllowed("POST"))
	calls.HandleFunc("GET /api/v1/cells/{cell}/calls/{id}", a.status)
	calls.HandleFunc("/api/v1/cells/{cell}/calls/{id}", methodNotAllowed("GET, HEAD"))
	calls.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API path")
	})

	mux := http.NewServeMux()
	mux.Handle("/api/", a.guard(calls))
	if o.Pprof {
		prof := http.NewServeMux()
		prof.HandleFunc("GET /debug/pprof/", pprof.Index)
		prof.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		prof.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		prof.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		prof.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", a.guard(prof))
	}
	if o.Health != nil {
		mux.HandleFunc("GET /healthz", a.healthz)
	}
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	return a.perClient(mux)
}

type api struct {
	o       Options
	keys    redisq.Keys
	gate    gate
	global  *limiter
	clients *clientLimiters
}

// NewID is a fresh command id that satisfies the id rules and can never be
// one of Multcall's: "h-" and 32 hex digits (128 random bits, so ids cannot
// be guessed nor collide).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "h-" + hex.EncodeToString(b[:])
}

// ownCell answers 404 unless the request names the daemon's cell: another
// cell's daemon may be down or absent, and taking its calls here would
// queue them where nobody claims them.
func (a *api) ownCell(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("cell") == a.o.Cell {
		return true
	}
	// The cell named is never echoed: it is the client's input.
	writeError(w, http.StatusNotFound, fmt.Sprintf("this daemon serves cell %q only", a.o.Cell))
	return false
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	if !a.ownCell(w, r) {
		return
	}
	id := r.PathValue("id")
	if !validID(id) { // could never have been a command: no Redis lookup
		writeError(w, http.StatusNotFound, NotFoundMessage)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	h, err := redisq.ReadCall(ctx, a.o.RDB, a.keys, id)
	if err != nil {
		a.o.Log.Warn().Err(err).Str("id", id).Msg("http status: Redis read failed")
		writeError(w, http.StatusServiceUnavailable, "Redis unavailable")
		return
	}
	if h == nil {
		n, err := a.o.RDB.Exists(ctx, SubmittedKey(a.keys, id)).Result()
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "Redis unavailable")
			return
		}
		if n == 0 {
			writeError(w, http.StatusNotFound, NotFoundMessage)
			return
		}
		// Submitted here and still waiting in the dial list.
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h["state"] != string(bridge.StateDone) || h["result"] == "" {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, strings.TrimSpace(h["result"])+"\n")
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	rep := a.o.Health.Check(r.Context())
	code := http.StatusOK
	if !rep.OK() {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, rep)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use "+allow)
	}
}

// validID is the id rule of a dial command: 1–64 of A-Za-z0-9._:-
func validID(id string) bool {
	if len(id) == 0 || len(id) > bridge.MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// writeError answers {"code": N, "message": "…"}. The message may quote
// the client's input (through bridge's errors), so it is made safe to
// print first.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"code": code, "message": safeText(msg)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"code": 500, "message": "internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
