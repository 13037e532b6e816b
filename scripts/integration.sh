#!/usr/bin/env bash
# Integration tier: the Redis-facing tests again, against a real redis-server
# (installed from the OS packages when missing) on a free loopback port.
# Nothing is left running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
	echo "integration: installing redis-server from the OS packages"
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

free_port() {
	# Ask the kernel for a free port: bind port 0 and read what it chose.
	go run ./scripts/freeport
}

dir=$(mktemp -d)
port=$(free_port)
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
redis-cli -p "$port" ping >/dev/null || { echo "integration: redis-server did not start"; cat "$dir/redis.log"; exit 1; }
echo "integration: redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"

export DIALBRIDGE_TEST_REDIS="127.0.0.1:$port"
go test -race -count=1 -timeout 20m ./redisq/... ./cmd/...
