# Sourced by scripts that need a real redis-server (integration.sh, bench.sh).
# start_scratch_redis NAME: installs redis-server from the OS packages when
# missing, starts one on a free loopback port with its data in a fresh
# directory, waits until it answers, and stops it (and removes the
# directory) when the calling script exits. Sets $port and $dir.

start_scratch_redis() {
	local name=$1
	if ! command -v redis-server >/dev/null 2>&1; then
		echo "$name: installing redis-server from the OS packages"
		local SUDO=
		if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
	fi

	dir=$(mktemp -d)
	# Ask the kernel for a free port: bind port 0 and read what it chose.
	port=$(go run ./scripts/freeport)
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
		--logfile "$dir/redis.log" --daemonize no &
	scratch_redis_pid=$!
	trap 'kill "$scratch_redis_pid" 2>/dev/null || true; wait "$scratch_redis_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

	for _ in $(seq 1 100); do
		if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
		sleep 0.05
	done
	redis-cli -p "$port" ping >/dev/null || { echo "$name: redis-server did not start"; cat "$dir/redis.log"; exit 1; }
	echo "$name: redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"
}
