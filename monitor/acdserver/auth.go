package acdserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"
)

// auth answers a line of a client that has not authenticated, or an auth
// line; false ends the connection.
func (c *client) auth(req request, perr error) bool {
	s := c.s
	switch {
	case perr == nil && req.isAuth() && s.tokenOK(req.token):
		s.admit(c)
		return true
	case perr == nil && req.isAuth():
		s.noise.note("acd: refused %s: wrong token", c.nc.RemoteAddr())
		c.finish(errorLine("wrong token: closing the connection"))
	default:
		s.noise.note("acd: refused %s: it did not authenticate first", c.nc.RemoteAddr())
		c.finish(errorLine(`authentication required: the first line must be {"command": "auth", "token": "…"}`))
	}
	return false
}

// tokenOK compares in constant time: hashing first makes the time
// independent of the length too.
func (s *Server) tokenOK(token string) bool {
	if s.Token == "" {
		return true
	}
	want, got := sha256.Sum256([]byte(s.Token)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// admit lets c in after a good auth. All of it under s.mu: no broadcast
// comes before "authenticated", and by the time the client reads it, it
// ranks as a console.
func (s *Server) admit(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.authed.Load() {
		c.authed.Store(true)
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	s.provenLocked(c)
	c.send(responseLine(authenticated))
}

func fmtTooMany(max int, what string) string {
	return fmt.Sprintf("too many clients (%d): %s", max, what)
}

// rateLog writes at most one line per 10 s, counting the rest: refused
// connections come in floods, and the log must not be one.
type rateLog struct {
	mu   sync.Mutex
	logf func(format string, args ...any)
	last time.Time
	held int
}

func (r *rateLog) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < 10*time.Second {
		r.held++
		return
	}
	line := fmt.Sprintf(format, args...)
	if r.held > 0 {
		line += fmt.Sprintf(" (and %d more refused connections in the last %s)", r.held, now.Sub(r.last).Round(time.Second))
	}
	r.last, r.held = now, 0
	r.logf("%s", line)
}
