package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// realm names the protection space in WWW-Authenticate (RFC 6750 §3).
const realm = "dialbridge"

// gate decides who may use /api/ and /debug/pprof/ (contract section 4,
// "Access (v2)").
type gate struct {
	// digest is SHA-256 of http.token. Digests of equal length are
	// compared, so the time taken says nothing of the token's length.
	digest   [sha256.Size]byte
	hasToken bool
	// loopback opens the gate, without a token, to loopback connections.
	loopback bool
}

func newGate(o Options) gate {
	g := gate{hasToken: o.Token != ""}
	if g.hasToken {
		g.digest = sha256.Sum256([]byte(o.Token.Reveal()))
	} else {
		g.loopback = o.AllowUnauthenticatedLoopback
	}
	return g
}

// verdict of the gate on one request.
type verdict int

const (
	allowed  verdict = iota
	noBearer         // no bearer credentials presented
	badToken         // a bearer token that is not http.token
)

func (g gate) check(r *http.Request) verdict {
	tok, presented := bearer(r.Header)
	switch {
	case g.hasToken:
		if !presented {
			return noBearer
		}
		d := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(d[:], g.digest[:]) == 1 {
			return allowed
		}
		return badToken
	case g.loopback && loopbackConn(r):
		return allowed
	case presented:
		return badToken // there is no token to match
	default:
		return noBearer
	}
}

// bearer is the token of "Authorization: Bearer <token>" (the scheme is
// case-insensitive, RFC 7235 §2.1). presented is false without such a
// header; two Authorization headers present an invalid token.
func bearer(h http.Header) (token string, presented bool) {
	v := h.Values("Authorization")
	if len(v) == 0 {
		return "", false
	}
	scheme, rest, _ := strings.Cut(v[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	if len(v) > 1 {
		return "", true
	}
	return strings.TrimLeft(rest, " "), true
}

// loopbackConn reports whether both ends of r's connection are loopback
// addresses: what the listener really is, not what the settings say.
// Without a known local address (not a real connection) it is false.
func loopbackConn(r *http.Request) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	local, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return false
	}
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && local.Addr().Unmap().IsLoopback() && remote.Addr().Unmap().IsLoopback()
}

// fromBrowser reports whether r was sent by a web browser: browsers add
// Origin to every POST and to cross-origin requests, and Sec-Fetch-Site to
// every request (Chrome 76, Firefox 90, Safari 16.4). The guarded paths are
// for programs; refusing browsers outright closes what the content type
// check alone leaves open: a page whose host name an attacker re-points at
// the listener (DNS rebinding) is same-origin, so it can POST JSON with no
// preflight, and only Origin betrays it.
func fromBrowser(r *http.Request) bool {
	return len(r.Header.Values("Origin")) > 0 || len(r.Header.Values("Sec-Fetch-Site")) > 0
}

// guard wraps the paths that act or reveal internals: a browser is refused
// (403), then the gate asks for the token (401), then the global rate cap
// applies (429), to authorised requests only, so that refused callers
// cannot use up everyone's share.
func (a *api) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fromBrowser(r) {
			writeError(w, http.StatusForbidden, "requests from a web browser are refused: this API is for programs (the request carries Origin or Sec-Fetch-Site)")
			return
		}
		switch a.gate.check(r) {
		case noBearer:
			a.unauthorized(w, r, `Bearer realm="`+realm+`"`)
			return
		case badToken:
			a.unauthorized(w, r, `Bearer realm="`+realm+`", error="invalid_token"`)
			return
		}
		if ok, retry := a.global.allow(); !ok {
			tooMany(w, retry)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// unauthorized answers 401 with the challenge of RFC 6750 §3: an error code
// only when credentials were presented. Nothing of the request's
// credentials is logged.
func (a *api) unauthorized(w http.ResponseWriter, r *http.Request, challenge string) {
	a.o.Log.Debug().Str("remote", r.RemoteAddr).Msg("http: refused without a valid bearer token")
	msg := "a valid bearer token is required (Authorization: Bearer <http.token>)"
	if !a.gate.hasToken {
		msg = "the API is closed: http.token is not set (http.allow_unauthenticated_loopback opens it to loopback connections)"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, msg)
}
