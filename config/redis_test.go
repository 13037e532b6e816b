package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedisSentinelAndClusterSettings(t *testing.T) {
	tests := []struct {
		name, yaml, mode, where string
	}{
		{"plain", minimal, "plain", "127.0.0.1:6379"},
		{"sentinel", minimal + `redis: {sentinel: {master: mymaster, addrs: ["10.0.0.1:26379", "sentinel-b:26379", "[::1]:26380"], password: s3ntinel-pw}}`,
			"sentinel", "sentinel mymaster@10.0.0.1:26379,sentinel-b:26379,[::1]:26380"},
		{"cluster", minimal + `redis: {cluster: {addrs: ["10.0.0.1:7000", "10.0.0.2:7000"]}}`,
			"cluster", "cluster 10.0.0.1:7000,10.0.0.2:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if s.Redis.Mode() != tt.mode || s.Redis.Where() != tt.where {
				t.Fatalf("mode %q where %q, want %q %q", s.Redis.Mode(), s.Redis.Where(), tt.mode, tt.where)
			}
			b, _ := json.Marshal(s)
			for _, out := range []string{fmt.Sprintf("%+v", s), string(b), s.Redis.Where()} {
				if strings.Contains(out, "s3ntinel-pw") {
					t.Fatalf("sentinel password printed: %s", out)
				}
			}
		})
	}
}

func TestBadRedisSentinelOrClusterNamesTheField(t *testing.T) {
	tests := []struct {
		name, yaml, field string
	}{
		{"both", `redis: {sentinel: {master: m, addrs: ["a:1"]}, cluster: {addrs: ["b:2"]}}`, "redis.cluster: set either"},
		{"addrs without master", `redis: {sentinel: {addrs: ["a:26379"]}}`, "redis.sentinel.master: is required"},
		{"password only", `redis: {sentinel: {password: pw-only-here}}`, "redis.sentinel.master: is required"},
		{"master without addrs", `redis: {sentinel: {master: mymaster}}`, "redis.sentinel.addrs: is required"},
		{"master with a space", `redis: {sentinel: {master: "my master", addrs: ["a:1"]}}`, "redis.sentinel.master"},
		{"sentinel addr without port", `redis: {sentinel: {master: m, addrs: ["a:1", "b"]}}`, "redis.sentinel.addrs[1]: must be host:port"},
		{"sentinel addr bad port", `redis: {sentinel: {master: m, addrs: ["a:99999"]}}`, "redis.sentinel.addrs[0]: port"},
		{"sentinel addr no host", `redis: {sentinel: {master: m, addrs: [":26379"]}}`, "redis.sentinel.addrs[0]"},
		{"sentinel addr twice", `redis: {sentinel: {master: m, addrs: ["a:1", "a:1"]}}`, "redis.sentinel.addrs[1]: \"a:1\" is listed twice"},
		{"cluster addr bad", `redis: {cluster: {addrs: ["h:7000", "h:port"]}}`, "redis.cluster.addrs[1]"},
		{"cluster addr empty", `redis: {cluster: {addrs: [""]}}`, "redis.cluster.addrs[0]"},
		{"cluster with db", `redis: {db: 3, cluster: {addrs: ["h:7000"]}}`, "redis.db: must be 0 with redis.cluster"},
		{"addrs not a list", `redis: {cluster: {addrs: "h:7000"}}`, "redis.cluster.addrs"},
		{"unknown sentinel field", `redis: {sentinel: {masters: m}}`, "masters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %q", err, tt.field)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "pw-only-here") {
				t.Fatalf("error not one line or leaks the password: %q", err)
			}
		})
	}
}

// The commented Sentinel and Cluster examples of configs/settings.yaml
// parse once uncommented (one at a time: they exclude each other).
func TestShippedRedisExamplesAreValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "configs", "settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ block, mode string }{{"sentinel", "sentinel"}, {"cluster", "cluster"}} {
		lines := strings.Split(string(data), "\n")
		in := false
		for i, l := range lines {
			switch {
			case strings.HasPrefix(l, "  # "+tc.block+":"):
				in = true
			case in && strings.HasPrefix(l, "  #   "):
			default:
				in = false
			}
			if in {
				lines[i] = "  " + strings.TrimPrefix(l, "  # ")
			}
		}
		s, err := Parse([]byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatalf("settings.yaml with the %s example uncommented: %v", tc.block, err)
		}
		if s.Redis.Mode() != tc.mode || !strings.Contains(s.Redis.Where(), "10.0.0.3:") {
			t.Fatalf("%s example: mode %s, where %s", tc.block, s.Redis.Mode(), s.Redis.Where())
		}
	}
}
