package redisq

import "strings"

// DaemonCommands is the smallest command set a daemon (dialbridge run, with
// its HTTP API) needs, for a Redis 6+ ACL user (redis.username). Commands
// run inside our Lua steps count too: Redis checks them against the
// caller's ACL. CONFIG GET is not in it: the start-up check of
// maxmemory-policy is skipped when it is refused. docs/OPERATIONS.md shows
// the ACL SETUP line; TestRedisACLUser runs the daemon as such a user on a
// real redis-server and checks that Redis refused nothing.
var DaemonCommands = []string{
	// connection
	"hello", "ping", "select", "client|setname",
	// scripts (go-redis sends EVALSHA, then EVAL on NOSCRIPT) and MULTI
	"evalsha", "eval", "multi", "exec",
	// lists
	"blmove", "lmove", "llen", "lrange", "lpush", "rpush", "lpop", "rpop", "brpop",
	"lrem", "ltrim", "rpoplpush",
	// hashes, strings, sets, keys
	"hset", "hget", "hmget", "hgetall", "hincrby",
	"get", "set", "exists", "del", "expire", "pexpire", "ttl", "rename",
	"sadd", "srem", "smembers", "scan",
	// pacing (pacing_*.go): Redis's clock for the operator fields, the
	// pacing log, the shared budget's slots
	"time", "xadd", "xrange", "zadd", "zrem", "zcard", "zcount", "zrange", "zremrangebyscore",
	// trunks (trunk*.go, breaker.go): the limiter's leases, the breaker
	"zscore", "zmscore",
	// replication: redis.wait_replicas (durable.go)
	"wait",
}

// ACLSetUser is the ACL SETUSER rule list for a daemon user whose keys all
// begin with prefix (redis.prefix), e.g. for redis-cli:
//
//	ACL SETUSER dialbridge on >secret ~dialbridge:* resetchannels -@all +hello …
func ACLSetUser(prefix string) []string {
	rules := []string{"on", "~" + globEscape(prefix) + ":*", "resetchannels", "-@all"}
	for _, c := range DaemonCommands {
		rules = append(rules, "+"+c)
	}
	return rules
}

// ACLLine is ACLSetUser as one redis-cli line for user (password elided).
func ACLLine(user, prefix string) string {
	return "ACL SETUSER " + user + " >PASSWORD " + strings.Join(ACLSetUser(prefix), " ")
}
