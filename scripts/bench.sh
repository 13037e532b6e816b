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

if ! command -v redis-server >/dev/null 2>&1; then
	echo "bench: installing redis-server from the OS packages"
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

dir=$(mktemp -d)
go build -trimpath -o "$dir/dialbridge" ./cmd/dialbridge
port=$(go run ./scripts/freeport)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
	--logfile "$dir/redis.log" --daemonize no &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
	if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
	sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { echo "bench: redis-server did not start"; cat "$dir/redis.log"; exit 1; }
echo "bench: redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"

"$dir/dialbridge" bench --redis "127.0.0.1:$port" --out docs/PERFORMANCE.md "$@"
