#!/usr/bin/env bash
# Integration tier: the Redis-facing tests again, against real servers
# (installed from the OS packages when missing: redis-server, redis-tools,
# redis-sentinel) on free loopback ports. Everything started here is
# stopped when the script exits, on success or failure. Works as root on a
# fresh Debian machine with no Redis running.
#
# What the tests receive (each skips when its variable is unset):
#   DIALBRIDGE_TEST_REDIS          host:port of one plain redis-server
#   DIALBRIDGE_TEST_REDIS_CLUSTER  a Redis Cluster of 3 masters + 3 replicas
#                                  (cluster-node-timeout 1000 ms): every
#                                  node's host:port, comma-separated
#                                  (any of them is a seed)
#   DIALBRIDGE_TEST_REDIS_SENTINEL a Sentinel set, 1 master + 2 replicas +
#                                  3 sentinels (quorum 2,
#                                  down-after-milliseconds 1000,
#                                  failover-timeout 5000), as
#                                  <master-name>@<sentinel host:port>,…
#                                  e.g. dbmaster@127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381
#                                  (the data nodes are found through the
#                                  sentinels: SENTINEL MASTER / REPLICAS)
# Tests that kill a node (kill -9) have "Failover" in their name: they run
# after every other test, one package at a time (-p 1), so no other test
# meets a failing-over set. A killed node stays dead (its replica took
# over): such a test must not assume which node is master, nor that every
# master still has a replica when another Failover test ran before it.
set -euo pipefail
cd "$(dirname "$0")/.."

. ./scripts/scratch-redis.sh
. ./scripts/ha-redis.sh
start_scratch_redis integration
start_redis_cluster integration
start_redis_sentinel integration

export DIALBRIDGE_TEST_REDIS="127.0.0.1:$port"
export DIALBRIDGE_TEST_REDIS_CLUSTER="$cluster_seeds"
export DIALBRIDGE_TEST_REDIS_SENTINEL="$sentinel_spec"
# Both steps run even when the first fails; the script fails if either did.
rc=0
go test -race -count=1 -timeout 20m -skip Failover ./redisq/... ./cmd/... || rc=$?
go test -race -count=1 -timeout 20m -p 1 -run Failover ./redisq/... ./cmd/... || rc=$?
exit $rc
