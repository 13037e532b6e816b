# Sourced by scripts that need a real redis-server (integration.sh, bench.sh).
# start_scratch_redis NAME: installs redis-server from the OS packages when
# missing, starts one on a free loopback port with its data in a fresh
# directory, waits until it answers, and stops it (and removes the
# directory) when the calling script exits. Sets $port and $dir.
#
# on_exit CMD: runs CMD when the script exits, success or failure (one EXIT
# trap runs them all, newest first; scripts sourcing this file add their own
# with on_exit instead of replacing the trap).

_on_exit_cmds=()
_run_on_exit() {
	local i
	for ((i = ${#_on_exit_cmds[@]} - 1; i >= 0; i--)); do
		eval "${_on_exit_cmds[$i]}" || true
	done
}
trap _run_on_exit EXIT
on_exit() { _on_exit_cmds+=("$1"); }

# install_redis_packages PKG…: apt-get installs the OS packages not yet
# installed (redis-server, redis-tools, redis-sentinel), as root or via sudo.
install_redis_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing ${missing[*]} from the OS packages"
	local SUDO=
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian's redis-server package starts a system redis on 6379: ours use
	# their own ports and never touch it, so it is left alone.
}

# wait_redis_up NAME PORT DIR: until redis-cli PING answers (10 s).
wait_redis_up() {
	local name=$1 p=$2 d=$3
	for _ in $(seq 1 200); do
		if redis-cli -p "$p" ping >/dev/null 2>&1; then return 0; fi
		sleep 0.05
	done
	echo "$name: redis on port $p did not start"
	cat "$d"/*.log 2>/dev/null | tail -20
	exit 1
}

start_scratch_redis() {
	local name=$1
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		install_redis_packages redis-server redis-tools
	fi

	dir=$(mktemp -d)
	# Ask the kernel for a free port: bind port 0 and read what it chose.
	port=$(go run ./scripts/freeport)
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
		--logfile "$dir/redis.log" --daemonize no &
	scratch_redis_pid=$!
	on_exit "kill $scratch_redis_pid 2>/dev/null; wait $scratch_redis_pid 2>/dev/null; rm -rf '$dir'"
	wait_redis_up "$name" "$port" "$dir"
	echo "$name: redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"
}
