// Package httpapi is dialbridge's optional HTTP(S) listener (contract
// section 4): submit a dial command and poll its status, /healthz and
// /metrics.
//
// Submit and status are pure Redis operations on the keys of the cell named
// in the path, so any daemon of a host answers them for every cell listed in
// the settings' queues; /healthz and /metrics describe the daemon's own cell.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/redisq"
)

// MaxBodyBytes caps a request body: a dial command is never larger.
const MaxBodyBytes = bridge.MaxCommandBytes

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
	RDB *redis.Client
	// Prefix is redis.prefix; Cells are the cells served (queues[].name).
	Prefix string
	Cells  []string
	// Health answers /healthz; nil: no /healthz.
	Health *Checker
	// Metrics serves /metrics; nil: no /metrics.
	Metrics http.Handler
	// Pprof mounts net/http/pprof at /debug/pprof/ (http.pprof).
	Pprof bool
	// NewID makes the id of a command submitted without one; nil: NewID.
	NewID func() string
	Log   zerolog.Logger
}

// NewHandler builds the HTTP handler of the API.
func NewHandler(o Options) http.Handler {
	a := &api{o: o, cells: map[string]redisq.Keys{}}
	for _, c := range o.Cells {
		a.cells[c] = redisq.NewKeys(o.Prefix, c)
	}
	if a.o.NewID == nil {
		a.o.NewID = NewID
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/cells/{cell}/calls", a.submit)
	mux.HandleFunc("GET /api/v1/cells/{cell}/calls/{id}", a.status)
	if o.Health != nil {
		mux.HandleFunc("GET /healthz", a.healthz)
	}
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type api struct {
	o     Options
	cells map[string]redisq.Keys
}

// NewID is a fresh command id that satisfies the id rules: "h-" and 24 hex
// digits (96 random bits).
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "h-" + hex.EncodeToString(b[:])
}

func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	keys, ok := a.cells[r.PathValue("cell")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown cell %q", r.PathValue("cell")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read the request body: "+err.Error())
		return
	}
	raw, err := a.withID(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd, err := bridge.ParseCommand(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	// One atomic step (both keys are in the cell's hash slot): the command
	// and a marker that makes GET answer 204, not 404, while the command
	// waits in the dial list (a claimed command has its call hash).
	_, err = a.o.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, keys.Dial(), raw)
		p.Set(ctx, SubmittedKey(keys, cmd.ID), "1", SubmittedTTL)
		return nil
	})
	if err != nil {
		a.o.Log.Warn().Err(err).Str("cell", keys.Cell()).Str("id", cmd.ID).Msg("http submit: Redis refused the push")
		writeError(w, http.StatusServiceUnavailable, "Redis unavailable: the command was not queued")
		return
	}
	a.o.Log.Debug().Str("cell", keys.Cell()).Str("id", cmd.ID).Msg("http submit: queued")
	writeJSON(w, http.StatusOK, map[string]any{"code": 200, "taskId": cmd.ID})
}

// withID returns body with a generated id when the command has none (absent
// or null). Anything that is not a JSON object is returned as is, for
// ParseCommand to name the problem. The other fields, unknown ones included,
// are kept.
func (a *api) withID(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return body, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &m); err != nil {
		return body, nil // malformed: ParseCommand reports it
	}
	if id, ok := m["id"]; ok && string(bytes.TrimSpace(id)) != "null" {
		return body, nil
	}
	id, err := json.Marshal(a.o.NewID())
	if err != nil {
		return nil, err
	}
	m["id"] = id
	return json.Marshal(m)
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	keys, ok := a.cells[r.PathValue("cell")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown cell %q", r.PathValue("cell")))
		return
	}
	id := r.PathValue("id")
	if !validID(id) { // could never have been a command: no Redis lookup
		writeError(w, http.StatusNotFound, NotFoundMessage)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	h, err := redisq.ReadCall(ctx, a.o.RDB, keys, id)
	if err != nil {
		a.o.Log.Warn().Err(err).Str("cell", keys.Cell()).Str("id", id).Msg("http status: Redis read failed")
		writeError(w, http.StatusServiceUnavailable, "Redis unavailable")
		return
	}
	if h == nil {
		n, err := a.o.RDB.Exists(ctx, SubmittedKey(keys, id)).Result()
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

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"code": code, "message": msg})
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
