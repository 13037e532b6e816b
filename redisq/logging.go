package redisq

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// goRedisLogger sends go-redis' own log lines (pool dial failures, blocking
// timeouts rounded up, …) to zerolog, one event per line.
type goRedisLogger struct{ log zerolog.Logger }

func (l goRedisLogger) Printf(_ context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	msg = strings.TrimPrefix(msg, "redis: ")
	// Debug: these repeat on every failed dial while Redis is down; the
	// daemon's own health tracking logs the outage once per state change.
	l.log.Debug().Str("component", "go-redis").Msg(msg)
}

// SetClientLogger routes go-redis' internal log lines, which otherwise go
// to stderr in their own format, to log at debug level. go-redis has one
// logger per process: call it once, at start.
func SetClientLogger(log zerolog.Logger) {
	redis.SetLogger(goRedisLogger{log: log})
	l := log.With().Str("component", "redis").Logger()
	pkgLog.Store(&l)
}

// pkgLog is where redisq logs what no caller can: oversized items settled
// inside a claim (oversize.go).
var pkgLog atomic.Pointer[zerolog.Logger]

func clientLog() *zerolog.Logger {
	if l := pkgLog.Load(); l != nil {
		return l
	}
	nop := zerolog.Nop()
	return &nop
}
