package main

import (
	"strings"
	"testing"

	"github.com/multcall/dialbridge/config"
)

// Every subcommand reads redis.* the same way; --redis replaces the
// servers with one plain Redis and keeps the credentials.
func TestRedisDialOptions(t *testing.T) {
	const base = `
ami: {username: u, secret: topsecret}
originate: {channel: "PJSIP/{number}@trunk", context: agents, exten: s}
queues: [{name: "101", threads: 10}]
`
	tests := []struct {
		name, yaml, override, mode, where string
	}{
		{"plain", base + `redis: {host: 10.0.0.9, port: 6380, username: bridge, password: pw}`, "", "plain", "10.0.0.9:6380"},
		{"sentinel", base + `redis: {username: bridge, password: pw, sentinel: {master: mm, addrs: ["s1:26379", "s2:26379"], password: spw}}`, "", "sentinel", "sentinel mm@s1:26379,s2:26379"},
		{"cluster", base + `redis: {username: bridge, password: pw, cluster: {addrs: ["c1:7000", "c2:7000"]}}`, "", "cluster", "cluster c1:7000,c2:7000"},
		{"--redis over cluster", base + `redis: {username: bridge, password: pw, cluster: {addrs: ["c1:7000"]}}`, "127.0.0.1:7777", "plain", "127.0.0.1:7777"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := config.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			o, err := redisDialOptions(s, tt.override)
			if err != nil {
				t.Fatal(err)
			}
			if o.Mode() != tt.mode || o.Where() != tt.where || o.Username != "bridge" || o.Password != "pw" {
				t.Fatalf("mode %s where %s user %q", o.Mode(), o.Where(), o.Username)
			}
			if tt.mode == "sentinel" && (o.SentinelPassword != "spw" || o.SentinelMaster != "mm") {
				t.Fatalf("sentinel %q", o.SentinelMaster)
			}
			if tt.override == "" && s.Redis.Where() != o.Where() {
				t.Fatalf("config says %q, redisq %q", s.Redis.Where(), o.Where())
			}
		})
	}
	if _, err := redisDialOptions(&config.Settings{}, "nohost"); err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("bad --redis: %v", err)
	}
}
