package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/bridge"
)

// MaxBodyBytes caps a request body (contract section 4: 413 above it). The
// command queued is smaller still: bridge.ParseCommand's limit, once the
// server's id is in.
const MaxBodyBytes = 64 << 10

// errClientID refuses a body that names an id: the server makes every id,
// so a client cannot take one of Multcall's (its confirmation and call code
// would go to the client's command, and Multcall's would end duplicate).
var errClientID = errors.New(`the body may not set "id": the server makes the id of every call it takes (the answer's taskId)`)

func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	if !a.ownCell(w, r) {
		return
	}
	if err := jsonContentType(r.Header); err != nil {
		writeError(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	if r.ContentLength > MaxBodyBytes { // refused before a byte is read
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read the request body")
		return
	}
	id := a.o.NewID()
	raw, err := withServerID(body, id)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd, err := bridge.ParseCommand(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cmd.ID != id { // not a JSON object as withServerID saw it: never queue a client's id
		writeError(w, http.StatusBadRequest, errClientID.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), redisTimeout)
	defer cancel()
	// One atomic step (both keys are in the cell's hash slot): the command
	// and a marker that makes GET answer 204, not 404, while the command
	// waits in the dial list (a claimed command has its call hash).
	_, err = a.o.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, a.keys.Dial(), raw)
		p.Set(ctx, SubmittedKey(a.keys, id), "1", SubmittedTTL)
		return nil
	})
	if err != nil {
		a.o.Log.Warn().Err(err).Str("id", id).Msg("http submit: Redis refused the push")
		writeError(w, http.StatusServiceUnavailable, "Redis unavailable: the command was not queued")
		return
	}
	a.o.Log.Debug().Str("id", id).Msg("http submit: queued")
	writeJSON(w, http.StatusOK, map[string]any{"code": 200, "taskId": id})
}

// jsonContentType accepts application/json, with parameters, and a charset
// only if it is UTF-8 (RFC 8259). Anything else is what a web page can post
// without a CORS preflight (text/plain, forms), or not JSON.
func jsonContentType(h http.Header) error {
	const want = "Content-Type must be application/json"
	v := h.Values("Content-Type")
	if len(v) != 1 {
		return errors.New(want)
	}
	mt, params, err := mime.ParseMediaType(v[0])
	if err != nil || mt != "application/json" {
		return errors.New(want)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return errors.New(want + ", in UTF-8")
	}
	return nil
}

// withServerID returns the command with id as its first key, the rest of
// the body byte for byte. A body that is not a JSON object is returned as
// is, for bridge.ParseCommand to name the problem (it has no id, so it is
// refused either way).
func withServerID(body []byte, id string) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return body, nil
	}
	// encoding/json's own key matching (case-insensitive, escapes decoded)
	// finds "ID", "Id" or "\u0069d" too: a lenient reader downstream would
	// take any of them for the id.
	var probe struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(trimmed, &probe) == nil && probe.ID != nil {
		return nil, errClientID
	}
	quoted, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	rest := trimmed[1:]
	out := make([]byte, 0, len(trimmed)+len(quoted)+len(`"id":,`))
	out = append(out, `{"id":`...)
	out = append(out, quoted...)
	// A malformed body stays malformed with the id in, and a valid one
	// valid: the comma goes in unless the object is empty.
	if r := bytes.TrimSpace(rest); len(r) == 0 || r[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}
