package httpapi

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits are the API's rate limits (token buckets of golang.org/x/time/rate:
// Rate tokens a second, Burst at once). A zero field takes its default;
// rate.Inf lifts a limit.
type Limits struct {
	// ClientRate/ClientBurst apply to every request of one client (an IPv4
	// address, or an IPv6 /64, which one host usually owns), on every path:
	// token guesses are slowed as much as submits. Default 50/s, burst 100.
	ClientRate  rate.Limit
	ClientBurst int
	// GlobalRate/GlobalBurst cap the authorised requests of all clients
	// together (/api/, /debug/pprof/), so that Redis and the PBX are never
	// flooded through HTTP. Default 500/s, burst 1,000.
	GlobalRate  rate.Limit
	GlobalBurst int
	// MaxClients bounds the per-client limiters kept (least recently seen
	// evicted), so that many source addresses cannot exhaust memory.
	// Default 10,000 (a few MB).
	MaxClients int
}

// Default limits.
const (
	DefaultClientRate  = 50
	DefaultClientBurst = 100
	DefaultGlobalRate  = 500
	DefaultGlobalBurst = 1000
	DefaultMaxClients  = 10000
)

func (l Limits) withDefaults() Limits {
	if l.ClientRate == 0 {
		l.ClientRate = DefaultClientRate
	}
	if l.ClientBurst == 0 {
		l.ClientBurst = DefaultClientBurst
	}
	if l.GlobalRate == 0 {
		l.GlobalRate = DefaultGlobalRate
	}
	if l.GlobalBurst == 0 {
		l.GlobalBurst = DefaultGlobalBurst
	}
	if l.MaxClients <= 0 {
		l.MaxClients = DefaultMaxClients
	}
	return l
}

func (l Limits) global() *limiter { return &limiter{rate.NewLimiter(l.GlobalRate, l.GlobalBurst)} }

func (l Limits) clients() *clientLimiters {
	return newClientLimiters(l.ClientRate, l.ClientBurst, l.MaxClients)
}

// limiter is a token bucket that says how long to wait when it refuses.
type limiter struct{ *rate.Limiter }

// allow takes a token now if there is one; else it takes none and says
// when one will be there.
func (l limiter) allow() (ok bool, retry time.Duration) {
	now := time.Now()
	r := l.ReserveN(now, 1)
	if !r.OK() { // burst 0: never
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// tooMany answers 429 with Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, retry time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	writeError(w, http.StatusTooManyRequests, "too many requests: slow down (see Retry-After)")
}

// perClient applies the per-client limit to every request.
func (a *api) perClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := a.clients.get(clientKey(r.RemoteAddr)).allow(); !ok {
			tooMany(w, retry)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey names the client of a connection from remote (ip:port): the
// IPv4 address, or the IPv6 /64. The peer's address, never a header such
// as X-Forwarded-For, which the client writes: behind a proxy every client
// shares the proxy's limit.
func clientKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return remote // net/http always sets ip:port
	}
	addr := ap.Addr().Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// clientLimiters is a bounded map of per-client limiters, the least
// recently seen evicted first. An evicted client starts again with a full
// bucket, as a new client would; to evict an active one an attacker must
// bring MaxClients other addresses within its burst time, and the global
// cap still holds.
type clientLimiters struct {
	rate  rate.Limit
	burst int
	max   int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *clientLimiter, most recently seen first
}

type clientLimiter struct {
	key string
	lim limiter
}

func newClientLimiters(r rate.Limit, burst, maxClients int) *clientLimiters {
	return &clientLimiters{rate: r, burst: burst, max: maxClients, m: make(map[string]*list.Element)}
}

func (c *clientLimiters) get(key string) limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*clientLimiter).lim
	}
	if c.lru.Len() >= c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.m, oldest.Value.(*clientLimiter).key)
	}
	cl := &clientLimiter{key: key, lim: limiter{rate.NewLimiter(c.rate, c.burst)}}
	c.m[key] = c.lru.PushFront(cl)
	return cl.lim
}

func (c *clientLimiters) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
