#!/usr/bin/env bash
# Load benchmarks (issue 6): starts a scratch redis-server on a free loopback
# port (installed from the OS packages when missing), builds and runs
# "dialbridge bench" against it with the given flags, writes the report to
# docs/PERFORMANCE.md, and stops the server. Nothing is left running.
#
#   scripts/bench.sh                          # everything, 3 runs, n=100000
#   scripts/bench.sh --runs 5 --only e2e,baseline
set -euo pipefail
cd "$(dirname "$0")/.."

. ./scripts/scratch-redis.sh
start_scratch_redis bench
go build -trimpath -o "$dir/dialbridge" ./cmd/dialbridge

"$dir/dialbridge" bench --redis "127.0.0.1:$port" --out docs/PERFORMANCE.md "$@"
