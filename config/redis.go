package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Sentinel is Redis behind Sentinel (contract section 1): the daemon asks
// the sentinels where the master named Master is, and follows a failover.
type Sentinel struct {
	Master string   `yaml:"master"` // the name in the sentinels' "sentinel monitor" line
	Addrs  []string `yaml:"addrs"`  // the sentinels, host:port
	// Password authenticates to the sentinels themselves (requirepass in
	// sentinel.conf); redis.password stays the data nodes' password.
	Password Secret `yaml:"password"`
}

// Enabled: any field set (validation then wants master and addrs).
func (s Sentinel) Enabled() bool { return s.Master != "" || len(s.Addrs) > 0 || s.Password != "" }

// Cluster is Redis Cluster: seed nodes, the rest is learned from them.
type Cluster struct {
	Addrs []string `yaml:"addrs"`
}

// Enabled: seed nodes given.
func (c Cluster) Enabled() bool { return len(c.Addrs) > 0 }

// Mode is "plain", "sentinel" or "cluster".
func (r Redis) Mode() string {
	switch {
	case r.Cluster.Enabled():
		return "cluster"
	case r.Sentinel.Enabled():
		return "sentinel"
	}
	return "plain"
}

// Where names the Redis servers for people: "127.0.0.1:6379",
// "sentinel mymaster@h1:26379,h2:26379", "cluster h1:7000,h2:7001".
func (r Redis) Where() string {
	switch r.Mode() {
	case "cluster":
		return "cluster " + strings.Join(r.Cluster.Addrs, ",")
	case "sentinel":
		return "sentinel " + r.Sentinel.Master + "@" + strings.Join(r.Sentinel.Addrs, ",")
	}
	return r.Addr()
}

// validateHA checks redis.sentinel and redis.cluster: at most one, every
// address host:port, the master's name with the sentinels.
func (r Redis) validateHA() error {
	if r.Sentinel.Enabled() && r.Cluster.Enabled() {
		return fieldErr("redis.cluster", "set either redis.sentinel or redis.cluster, not both")
	}
	if r.Cluster.Enabled() {
		if r.DB != 0 {
			return fieldErr("redis.db", "must be 0 with redis.cluster (a Cluster has only database 0), got %d", r.DB)
		}
		return checkAddrs("redis.cluster.addrs", r.Cluster.Addrs)
	}
	if !r.Sentinel.Enabled() {
		return nil
	}
	if r.Sentinel.Master == "" {
		return fieldErr("redis.sentinel.master", "is required with redis.sentinel: the master's name in the sentinels' \"sentinel monitor\" line")
	}
	if strings.ContainsAny(r.Sentinel.Master, " \t\r\n\x00") || len(r.Sentinel.Master) > 128 {
		return fieldErr("redis.sentinel.master", "must be a name without spaces or line breaks, up to 128 characters")
	}
	if len(r.Sentinel.Addrs) == 0 {
		return fieldErr("redis.sentinel.addrs", "is required with redis.sentinel.master: the sentinels as host:port, e.g. [10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379]")
	}
	if strings.ContainsAny(string(r.Sentinel.Password), "\r\n") {
		return fieldErr("redis.sentinel.password", "may not contain line breaks")
	}
	return checkAddrs("redis.sentinel.addrs", r.Sentinel.Addrs)
}

// checkAddrs wants each address as host:port with a port 1-65535, once.
func checkAddrs(field string, addrs []string) error {
	seen := map[string]bool{}
	for i, a := range addrs {
		f := fmt.Sprintf("%s[%d]", field, i)
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || strings.ContainsAny(host, " \t\r\n") {
			return fieldErr(f, "must be host:port, got %q", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fieldErr(f, "port must be 1-65535, got %q", a)
		}
		if seen[a] {
			return fieldErr(f, "%q is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}
