package main

import (
	"context"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/multcall/dialbridge/bridge"
	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
)

// Warnings at start about settings that work but break a promise.

// warnRedisPolicy warns when Redis may evict keys: an evicted call hash
// breaks "never dial twice". CONFIG GET is often not allowed to the
// daemon's ACL user (docs/OPERATIONS.md): then nothing is said. Each
// master is asked (on a Cluster, a cell may live on any; behind Sentinel
// the failover client asks the current master); the replicas take the
// policy over when promoted, so operators set it there too.
func warnRedisPolicy(ctx context.Context, log zerolog.Logger, rdb redis.UniversalClient) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = redisq.ForEachMaster(cctx, rdb, func(ctx context.Context, m redis.UniversalClient) error {
		v, err := m.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			log.Debug().Err(err).Msg("CONFIG GET maxmemory-policy not allowed; eviction policy not checked")
			return nil
		}
		if p, ok := v["maxmemory-policy"]; ok && p != "noeviction" {
			ev := log.Warn().Str("maxmemory_policy", p)
			if c, ok := m.(*redis.Client); ok && isCluster(rdb) { // name the master of a Cluster
				ev = ev.Str("redis", c.Options().Addr)
			}
			ev.Msg("Redis may evict keys under memory pressure: an evicted call hash can make a command be dialed twice; set maxmemory-policy noeviction")
		}
		return nil
	})
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

func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// channelLister is what warnAMIRights needs of the AMI client.
type channelLister interface {
	WaitReady(ctx context.Context) error
	Channels(ctx context.Context) ([]bridge.LiveChannel, error)
}

// warnAMIRights lists the PBX's channels once AMI is up: a manager user
// without "reporting" cannot, and then a crashed daemon's live calls are
// reported unknown instead of adopted (contract section 2). Said at start,
// not at the first crash. An AMI that is not up within a minute is
// someone else's warning.
func warnAMIRights(ctx context.Context, log zerolog.Logger, amic channelLister) {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := amic.WaitReady(wctx); err != nil {
		return
	}
	if _, err := amic.Channels(wctx); err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("AMI cannot list channels: after a crash, a dead daemon's live calls will be reported unknown instead of adopted (give the manager user write = originate,reporting and read = call,reporting)")
	}
}
