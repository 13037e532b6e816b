package redisq

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DialOptions are the connection settings (contract section 1, redis.*).
type DialOptions struct {
	Host     string
	Port     int
	Username string // a Redis 6+ ACL user; empty: the default user
	Password string
	DB       int
	TLS      bool
	// Threads is the number of calls the process may have in progress
	// (the sum over its cells); it sizes the connection pool.
	Threads int
	// Cells is the number of cells the process serves; each holds two
	// connections in blocking reads (claim and confirm). Default 1.
	Cells int
	// ClientName is sent with CLIENT SETNAME on every connection when not
	// empty (shows in CLIENT LIST).
	ClientName string
}

// Timeouts of the client. Blocking commands (BLMOVE, BRPOP) get their block
// time plus 10 s as read deadline from go-redis itself, so ReadTimeout only
// bounds ordinary commands.
const (
	DialTimeout  = 5 * time.Second
	ReadTimeout  = 3 * time.Second
	WriteTimeout = 3 * time.Second
)

// PoolSize is the connection pool size for a process with threads calls in
// progress and cells cells: two connections per cell sit in blocking reads
// (claim, confirm), and a call makes one short round trip at a time, so an
// eighth of the threads plus a floor of 16 covers bursts; at most 256.
func PoolSize(threads, cells int) int {
	if cells < 1 {
		cells = 1
	}
	if threads < 0 {
		threads = 0
	}
	n := threads/8 + 16 + 2*cells
	if n > 256 {
		n = 256
	}
	return n
}

// Dial builds a go-redis client from opts and checks it with a PING bounded
// by ctx. The error names the address, never the password, e.g.
// "redis 127.0.0.1:6379: dial tcp 127.0.0.1:6379: connect: connection refused".
func Dial(ctx context.Context, opts DialOptions) (*redis.Client, error) {
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		port = 6379
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	o := &redis.Options{
		Addr:            addr,
		Username:        opts.Username,
		Password:        opts.Password,
		DB:              opts.DB,
		ClientName:      opts.ClientName,
		DialTimeout:     DialTimeout,
		ReadTimeout:     ReadTimeout,
		WriteTimeout:    WriteTimeout,
		PoolSize:        PoolSize(opts.Threads, opts.Cells),
		DisableIdentity: true, // no CLIENT SETINFO: older servers and miniredis refuse it
		// Our messages are small (a command is ~100 bytes); go-redis's
		// default 32 KiB per direction per connection cost 21 MB of heap
		// at 256 connections (docs/PERFORMANCE.md). Larger replies still
		// work: the buffer is not a limit.
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
	}
	if opts.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	// Every string in a reply is bounded (guard.go): lists written by
	// others can hold anything.
	o.Dialer = guardDialer(redis.NewDialer(o), MaxItemBytes)
	rdb := redis.NewClient(o)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	return rdb, nil
}
