#!/usr/bin/env bash
# Load benchmarks (issue 6): starts a scratch redis-server on a free loopback
# port (installed from the OS packages when missing), builds and runs
# "dialbridge bench" against it with the given flags, writes the report to
# docs/PERFORMANCE.md, and stops the server. Nothing is left running.
#
#   scripts/bench.sh                          # everything, 3 runs, n=100000
#   scripts/bench.sh --runs 5 --only e2e,baseline
#   scripts/bench.sh --only durable --out /tmp/d.md   # redis.wait_replicas: adds a local replica
set -euo pipefail
cd "$(dirname "$0")/.."

. ./scripts/scratch-redis.sh
start_scratch_redis bench
go build -trimpath -o "$dir/dialbridge" ./cmd/dialbridge

case " $* " in
*durable*)
	# The durable scenario WAITs for one replica: a second server on this
	# machine, as the bench's (documented) setup.
	rport=$(go run ./scripts/freeport)
	redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
		--logfile "$dir/replica.log" --replicaof 127.0.0.1 "$port" --daemonize no &
	replica_pid=$!
	trap 'kill "$replica_pid" "$scratch_redis_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
	for _ in $(seq 1 200); do
		if redis-cli -p "$port" info replication | grep -q 'state=online'; then break; fi
		sleep 0.05
	done
	echo "bench: replica on 127.0.0.1:$rport"
	;;
esac

"$dir/dialbridge" bench --redis "127.0.0.1:$port" --out docs/PERFORMANCE.md "$@"
