#!/usr/bin/env bash
# Integration tier: the Redis-facing tests again, against a real redis-server
# (installed from the OS packages when missing) on a free loopback port.
# Nothing is left running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

. ./scripts/scratch-redis.sh
start_scratch_redis integration

export DIALBRIDGE_TEST_REDIS="127.0.0.1:$port"
go test -race -count=1 -timeout 20m ./redisq/... ./cmd/...
