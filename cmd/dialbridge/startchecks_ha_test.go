package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/redisq"
)

// The maxmemory-policy warning asks every master of a Cluster and the
// current master behind Sentinel (integration tier; each part skips
// without its variable). One master is set to allkeys-lru for the test and
// set back after.
func TestPolicyWarningOnClusterAndSentinel(t *testing.T) {
	modes := map[string]func() (redisq.DialOptions, bool){
		"cluster": func() (redisq.DialOptions, bool) {
			s := os.Getenv("DIALBRIDGE_TEST_REDIS_CLUSTER")
			return redisq.DialOptions{ClusterAddrs: strings.Split(s, ",")}, s != ""
		},
		"sentinel": func() (redisq.DialOptions, bool) {
			m, a, ok := strings.Cut(os.Getenv("DIALBRIDGE_TEST_REDIS_SENTINEL"), "@")
			return redisq.DialOptions{SentinelMaster: m, SentinelAddrs: strings.Split(a, ",")}, ok
		},
	}
	for name, get := range modes {
		t.Run(name, func(t *testing.T) {
			o, ok := get()
			if !ok {
				t.Skip("not in the integration tier")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rdb, err := redisq.Dial(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			var buf bytes.Buffer
			warnRedisPolicy(ctx, zerolog.New(&buf), rdb)
			if strings.Contains(buf.String(), "evict") {
				t.Fatalf("warned with noeviction everywhere: %s", buf.String())
			}
			// One master evicts, for the test only.
			target, where := rdb, ""
			if cc, ok := rdb.(*redis.ClusterClient); ok {
				m, err := cc.MasterForKey(ctx, "policy-test")
				if err != nil {
					t.Fatal(err)
				}
				target, where = m, m.Options().Addr
			}
			if err := target.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
				t.Fatal(err)
			}
			defer target.ConfigSet(context.Background(), "maxmemory-policy", "noeviction")
			buf.Reset()
			warnRedisPolicy(ctx, zerolog.New(&buf), rdb)
			out := buf.String()
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"maxmemory_policy":"allkeys-lru"`) || !strings.Contains(out, where) {
				t.Fatalf("want one warning naming allkeys-lru and %q, got %s", where, out)
			}
		})
	}
}
