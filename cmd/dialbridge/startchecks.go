package main

import (
	"context"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/config"
)

// Warnings at start about settings that work but break a promise.

// warnRedisPolicy warns when Redis may evict keys: an evicted call hash
// breaks "never dial twice". CONFIG GET is often not allowed to the
// daemon's ACL user (docs/OPERATIONS.md): then nothing is said.
func warnRedisPolicy(ctx context.Context, log zerolog.Logger, rdb *redis.Client) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := rdb.ConfigGet(cctx, "maxmemory-policy").Result()
	if err != nil {
		log.Debug().Err(err).Msg("CONFIG GET maxmemory-policy not allowed; eviction policy not checked")
		return
	}
	if p, ok := v["maxmemory-policy"]; ok && p != "noeviction" {
		log.Warn().Str("maxmemory_policy", p).Msg("Redis may evict keys under memory pressure: an evicted call hash can make a command be dialed twice; set maxmemory-policy noeviction")
	}
}

// warnSettingsFile warns when a settings file holding secrets can be read
// by users other than its owner and group.
func warnSettingsFile(log zerolog.Logger, s *config.Settings) {
	if s.Path == "" || !holdsSecrets(s) {
		return
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		return
	}
	if perm := fi.Mode().Perm(); perm&0o004 != 0 {
		log.Warn().Str("file", s.Path).Str("mode", perm.String()).Msg("the settings file holds secrets and is readable by every user of this machine; chmod o-r it")
	}
}

func holdsSecrets(s *config.Settings) bool {
	return s.AMI.Secret != "" || s.Redis.Password != "" || s.HTTP.Token != "" || s.ACD.Token != ""
}
