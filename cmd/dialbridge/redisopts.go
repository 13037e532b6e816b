package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
)

// redisDialOptions is the Redis connection of the settings, for every
// subcommand (run, queue, monitor, bench): one reading of redis.*, so none
// of them forgets the ACL user or the Sentinel/Cluster mode. A --redis
// HOST:PORT flag (override) replaces the servers with that single Redis.
func redisDialOptions(s *config.Settings, override string) (redisq.DialOptions, error) {
	o := redisq.DialOptions{
		Host: s.Redis.Host, Port: s.Redis.Port, Username: s.Redis.Username, Password: s.Redis.Password.Reveal(),
		DB: s.Redis.DB, TLS: s.Redis.TLS,
	}
	if override == "" {
		o.SentinelMaster, o.SentinelAddrs = s.Redis.Sentinel.Master, s.Redis.Sentinel.Addrs
		o.SentinelPassword = s.Redis.Sentinel.Password.Reveal()
		o.ClusterAddrs = s.Redis.Cluster.Addrs
		return o, nil
	}
	h, p, err := net.SplitHostPort(override)
	if err != nil {
		return o, fmt.Errorf("--redis: %q is not HOST:PORT", override)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return o, fmt.Errorf("--redis: bad port in %q", override)
	}
	o.Host, o.Port = h, n
	return o, nil
}
