package redisq

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/internal/testport"
)

// Each mode builds its go-redis client, and a failed dial names the
// servers, never a password.
func TestDialModes(t *testing.T) {
	t.Parallel()
	const password, sentinelPW = "s3cr3t-pa55", "s3ntinel-pa55"
	m := miniredis.RunT(t) // answers CLUSTER SLOTS as one node owning every slot
	m.RequireAuth(password)
	dead := "127.0.0.1:" + strconv.Itoa(testport.Refusing(t))

	tests := []struct {
		name    string
		opts    DialOptions
		want    string // the client's type
		wantErr string
	}{
		{"cluster", DialOptions{ClusterAddrs: []string{m.Addr()}, Password: password}, "*redis.ClusterClient", ""},
		{"cluster down", DialOptions{ClusterAddrs: []string{dead}, Password: password}, "", "redis cluster " + dead + ": "},
		{"sentinel down", DialOptions{SentinelMaster: "mymaster", SentinelAddrs: []string{dead}, SentinelPassword: sentinelPW, Password: password},
			"", "redis sentinel mymaster@" + dead + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// go-redis retries a sentinel that refuses for ~20 s; the
			// daemon bounds each dial by its context (dialRedis) and
			// retries with backoff itself.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			rdb, err := Dial(ctx, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer rdb.Close()
				if got := typeName(rdb); got != tt.want {
					t.Fatalf("client %s, want %s", got, tt.want)
				}
				if err := rdb.Set(ctx, "k{x}", "v", 0).Err(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				rdb.Close()
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantErr) {
				t.Errorf("error %q does not start with %q", msg, tt.wantErr)
			}
			if strings.Contains(msg, password) || strings.Contains(msg, sentinelPW) {
				t.Errorf("error %q shows a password", msg)
			}
		})
	}
}

func typeName(rdb redis.UniversalClient) string {
	switch rdb.(type) {
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	case *redis.Client:
		return "*redis.Client"
	}
	return "?"
}

// The reply guard sits on a Cluster node's connections too: a string
// over MaxItemBytes is refused before go-redis reads it.
func TestClusterClientIsGuarded(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	big := strings.Repeat("x", int(MaxItemBytes)+1)
	m.Set("big{x}", big)
	rdb, err := Dial(rqCtx(t), DialOptions{ClusterAddrs: []string{m.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	_, err = rdb.Get(rqCtx(t), "big{x}").Result()
	if err == nil || !strings.Contains(err.Error(), ErrItemTooBig.Error()) {
		t.Fatalf("GET of %d bytes: %v, want %v", len(big), err, ErrItemTooBig)
	}
	if err := rdb.Set(rqCtx(t), "small{x}", "ok", 0).Err(); err != nil {
		t.Fatalf("after the refused reply: %v", err)
	}
}

// SCAN on a Cluster asks every master (here: the one miniredis node).
func TestScanKeysOnCluster(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	for _, k := range []string{"p:{101}:claimed:a", "p:{101}:claimed:b", "p:{102}:claimed:c"} {
		m.Lpush(k, "x")
	}
	rdb, err := Dial(rqCtx(t), DialOptions{ClusterAddrs: []string{m.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	got, err := ScanClaimed(rqCtx(t), rdb, NewKeys("p", "101"))
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Fatalf("ScanClaimed = %v, %v", got, err)
	}
}
