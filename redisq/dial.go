package redisq

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DialOptions are the connection settings (contract section 1, redis.*).
// At most one of Sentinel and Cluster is set (config validates it); with
// neither, Host and Port name a single Redis.
type DialOptions struct {
	Host     string
	Port     int
	Username string // a Redis 6+ ACL user; empty: the default user
	Password string
	DB       int
	TLS      bool
	// SentinelMaster and SentinelAddrs select Redis behind Sentinel: the
	// monitored master's name and the sentinels' host:port list.
	// SentinelPassword authenticates to the sentinels (they may have a
	// password of their own, or none).
	SentinelMaster   string
	SentinelAddrs    []string
	SentinelPassword string
	// ClusterAddrs selects Redis Cluster: seed nodes host:port (DB is not
	// used; a cluster has only db 0).
	ClusterAddrs []string
	// Threads is the number of calls the process may have in progress
	// (the sum over its cells); it sizes the connection pool.
	Threads int
	// Cells is the number of cells the process serves; each holds two
	// connections in blocking reads (claim and confirm). Default 1.
	Cells int
	// ClientName is sent with CLIENT SETNAME on every connection when not
	// empty (shows in CLIENT LIST).
	ClientName string
	// FailFast: short timeouts, no retries and a small pool, for a
	// monitor that must show "Redis down" within a refresh.
	FailFast bool
}

// Mode is "plain", "sentinel" or "cluster".
func (o DialOptions) Mode() string {
	switch {
	case len(o.ClusterAddrs) > 0:
		return "cluster"
	case o.SentinelMaster != "" || len(o.SentinelAddrs) > 0:
		return "sentinel"
	}
	return "plain"
}

// Where names the server(s) for logs and errors, never a password:
// "127.0.0.1:6379", "sentinel mymaster@h1:26379,h2:26379",
// "cluster h1:7000,h2:7001".
func (o DialOptions) Where() string {
	switch o.Mode() {
	case "cluster":
		return "cluster " + strings.Join(o.ClusterAddrs, ",")
	case "sentinel":
		return "sentinel " + o.SentinelMaster + "@" + strings.Join(o.SentinelAddrs, ",")
	}
	return o.addr()
}

func (o DialOptions) host() string {
	if o.Host == "" {
		return "127.0.0.1"
	}
	return o.Host
}

func (o DialOptions) addr() string {
	port := o.Port
	if port == 0 {
		port = 6379
	}
	return net.JoinHostPort(o.host(), strconv.Itoa(port))
}

// Timeouts of the client. Blocking commands (BLMOVE, BRPOP) get their block
// time plus 10 s as read deadline from go-redis itself, so ReadTimeout only
// bounds ordinary commands.
const (
	DialTimeout  = 5 * time.Second
	ReadTimeout  = 3 * time.Second
	WriteTimeout = 3 * time.Second
)

// clusterReloadInterval bounds how long a Cluster client keeps a slot map
// that names a dead master.
const clusterReloadInterval = time.Second

// PoolSize is the connection pool size for a process with threads calls in
// progress and cells cells: two connections per cell sit in blocking reads
// (claim, confirm), and a call makes one short round trip at a time, so an
// eighth of the threads plus a floor of 16 covers bursts; at most 256.
// On a Cluster it is per node: a cell's keys live on one node, so that
// node sees the whole load of the cell.
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

// NewClient builds the go-redis client for opts without contacting Redis:
// a failover client behind Sentinel, a cluster client for a Cluster, a
// plain one otherwise. Every connection it makes, to any node or sentinel,
// goes through the reply guard (guard.go).
func NewClient(opts DialOptions) redis.UniversalClient {
	dialT, readT, writeT := DialTimeout, ReadTimeout, WriteTimeout
	pool, retries := PoolSize(opts.Threads, opts.Cells), 0
	if opts.FailFast {
		dialT, readT, writeT = 2*time.Second, 2*time.Second, 2*time.Second
		pool, retries = 4, -1
	}
	var tlsConf *tls.Config
	if opts.TLS {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.Mode() == "plain" {
			tlsConf.ServerName = opts.host()
		} // else: crypto/tls takes each node's name from the address it dials
	}
	// Lists written by others can hold anything: every string in a reply
	// is bounded, on every connection of every node.
	dialer := guardDialer(redis.NewDialer(&redis.Options{DialTimeout: dialT, TLSConfig: tlsConf}), MaxItemBytes)
	// Our messages are small (a command is ~100 bytes); go-redis's default
	// 32 KiB per direction per connection cost 21 MB of heap at 256
	// connections (docs/PERFORMANCE.md). Larger replies still work: the
	// buffer is not a limit.
	const buf = 4 << 10
	switch opts.Mode() {
	case "cluster":
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: opts.ClusterAddrs, Username: opts.Username, Password: opts.Password,
			ClientName: opts.ClientName, Dialer: dialer, TLSConfig: tlsConf,
			DialTimeout: dialT, ReadTimeout: readT, WriteTimeout: writeT, MaxRetries: retries,
			PoolSize: pool, DisableIdentity: true, ReadBufferSize: buf, WriteBufferSize: buf,
			// A master killed outright answers "connection refused",
			// which go-redis does not take as a reason to reload the slot
			// map (only MOVED/ASK are): with its default of 60 s the
			// daemon dialed nothing for a minute after its replica had
			// taken over in 2 s (TestClusterFailover). One CLUSTER SLOTS
			// a second per process is cheap.
			ClusterStateReloadInterval: clusterReloadInterval,
		})
	case "sentinel":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: opts.SentinelMaster, SentinelAddrs: opts.SentinelAddrs,
			SentinelPassword: opts.SentinelPassword,
			Username:         opts.Username, Password: opts.Password, DB: opts.DB,
			ClientName: opts.ClientName, Dialer: dialer, TLSConfig: tlsConf,
			DialTimeout: dialT, ReadTimeout: readT, WriteTimeout: writeT, MaxRetries: retries,
			PoolSize: pool, DisableIdentity: true, ReadBufferSize: buf, WriteBufferSize: buf,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: opts.addr(), Username: opts.Username, Password: opts.Password, DB: opts.DB,
		ClientName: opts.ClientName, Dialer: dialer, TLSConfig: tlsConf,
		DialTimeout: dialT, ReadTimeout: readT, WriteTimeout: writeT, MaxRetries: retries,
		PoolSize: pool, DisableIdentity: true, // no CLIENT SETINFO: older servers and miniredis refuse it
		ReadBufferSize: buf, WriteBufferSize: buf,
	})
}

// Dial builds the client (NewClient) and checks it with a PING bounded by
// ctx (on a Cluster, a PING of every master: a cell may live on any). The
// error names the address, never the password, e.g.
// "redis 127.0.0.1:6379: dial tcp 127.0.0.1:6379: connect: connection refused".
func Dial(ctx context.Context, opts DialOptions) (redis.UniversalClient, error) {
	rdb := NewClient(opts)
	if err := Ping(ctx, rdb); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", opts.Where(), err)
	}
	return rdb, nil
}

// Ping checks a client: on a Cluster every master answers (and the slot
// map is loaded), elsewhere the one master does.
func Ping(ctx context.Context, rdb redis.UniversalClient) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		if err := cc.Ping(ctx).Err(); err != nil {
			return err
		}
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := m.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", m.Options().Addr, err)
			}
			return nil
		})
	}
	return rdb.Ping(ctx).Err()
}

// ForEachMaster runs fn on every master: the one master of a plain or
// Sentinel client, each master of a Cluster. For what is per server, not
// per key (CONFIG GET, SCAN).
func ForEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, m redis.UniversalClient) error) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return fn(ctx, m) })
	}
	return fn(ctx, rdb)
}
