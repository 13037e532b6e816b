# Sourced after scratch-redis.sh by integration.sh: a Redis Cluster and a
# Sentinel set on free loopback ports, all stopped (kill -9 of what is
# left, data removed) when the calling script exits, also on failure.
#
# start_redis_cluster NAME: 3 masters + 3 replicas (cluster-node-timeout
# 1000 ms, so a killed master's replica takes over within a few seconds).
# Sets $cluster_seeds (host:port,… of every node) and $cluster_dir.
#
# start_redis_sentinel NAME: 1 master, 2 replicas, 3 sentinels monitoring
# it as "dbmaster" (quorum 2, down-after-milliseconds 1000,
# failover-timeout 5000). Sets $sentinel_spec (dbmaster@s1,s2,s3: the
# sentinels' host:port) and $sentinel_dir; $sentinel_data_ports holds the
# master's port then the replicas'.

# _ha_start DIR NAME PORT [redis-server args…]: one redis-server, daemonized
# by us (pid in DIR/NAME.pid) and killed at exit.
_ha_start() {
	local d=$1 n=$2 p=$3
	shift 3
	redis-server --port "$p" --bind 127.0.0.1 --dir "$d/$n" --logfile "$d/$n.log" \
		--save '' --daemonize no "$@" &
	_ha_track "$d/$n.pid" $!
}

# _ha_track PIDFILE PID: out of the shell's job table (a test's kill -9
# prints no "Killed" line), killed at exit and waited for.
_ha_track() {
	echo "$2" >"$1"
	disown "$2"
	on_exit "kill -9 $2 2>/dev/null; for _ in \$(seq 1 100); do kill -0 $2 2>/dev/null || break; sleep 0.05; done"
}

start_redis_cluster() {
	local name=$1 ports p i
	install_redis_packages redis-server redis-tools
	cluster_dir=$(mktemp -d)
	on_exit "rm -rf '$cluster_dir'"
	mapfile -t ports < <(go run ./scripts/freeport -n 6 -cluster)
	for i in "${!ports[@]}"; do
		p=${ports[$i]}
		mkdir -p "$cluster_dir/n$p"
		# appendonly off and no save: a killed master's data lives only in
		# its replica, as with a real failover of an in-memory master.
		_ha_start "$cluster_dir" "n$p" "$p" --cluster-enabled yes \
			--cluster-config-file "$cluster_dir/n$p/nodes.conf" --cluster-node-timeout 1000 \
			--appendonly no --maxmemory-policy noeviction
	done
	for p in "${ports[@]}"; do wait_redis_up "$name" "$p" "$cluster_dir"; done
	local addrs=()
	for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
	# The first three become masters, the next three their replicas.
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$cluster_dir/create.log" 2>&1 || {
		echo "$name: redis-cli --cluster create failed"
		cat "$cluster_dir/create.log"
		exit 1
	}
	for _ in $(seq 1 200); do
		if [ "$(redis-cli -p "${ports[0]}" cluster info | tr -d '\r' | awk -F: '$1=="cluster_state"{print $2}')" = ok ] &&
			redis-cli --cluster check "127.0.0.1:${ports[0]}" >/dev/null 2>&1; then
			break
		fi
		sleep 0.1
	done
	redis-cli --cluster check "127.0.0.1:${ports[0]}" >/dev/null || {
		echo "$name: cluster not ok"
		redis-cli --cluster check "127.0.0.1:${ports[0]}"
		exit 1
	}
	cluster_seeds=$(IFS=,; echo "${addrs[*]}")
	echo "$name: Redis Cluster 3 masters + 3 replicas on $cluster_seeds"
}

start_redis_sentinel() {
	local name=$1 ports p i
	install_redis_packages redis-server redis-tools redis-sentinel
	sentinel_dir=$(mktemp -d)
	on_exit "rm -rf '$sentinel_dir'"
	mapfile -t ports < <(go run ./scripts/freeport -n 6)
	sentinel_data_ports=("${ports[@]:0:3}")
	local master=${ports[0]}
	for i in 0 1 2; do
		p=${ports[$i]}
		mkdir -p "$sentinel_dir/r$p"
		if [ "$i" = 0 ]; then
			_ha_start "$sentinel_dir" "r$p" "$p" --appendonly no --maxmemory-policy noeviction
		else
			_ha_start "$sentinel_dir" "r$p" "$p" --appendonly no --maxmemory-policy noeviction \
				--replicaof 127.0.0.1 "$master"
		fi
	done
	for i in 0 1 2; do wait_redis_up "$name" "${ports[$i]}" "$sentinel_dir"; done
	# Replicas in sync before the sentinels watch: a failover never picks
	# a replica that has nothing.
	for _ in $(seq 1 200); do
		[ "$(redis-cli -p "$master" info replication | tr -d '\r' | grep -c 'state=online')" = 2 ] && break
		sleep 0.05
	done
	local specs=()
	for i in 3 4 5; do
		p=${ports[$i]}
		mkdir -p "$sentinel_dir/s$p"
		# Sentinel rewrites its config file: one per sentinel, writable.
		cat >"$sentinel_dir/s$p/sentinel.conf" <<CONF
port $p
bind 127.0.0.1
dir $sentinel_dir/s$p
logfile $sentinel_dir/s$p.log
sentinel monitor dbmaster 127.0.0.1 $master 2
sentinel down-after-milliseconds dbmaster 1000
sentinel failover-timeout dbmaster 5000
sentinel parallel-syncs dbmaster 2
CONF
		redis-server "$sentinel_dir/s$p/sentinel.conf" --sentinel &
		_ha_track "$sentinel_dir/s$p.pid" $!
		specs+=("127.0.0.1:$p")
	done
	for i in 3 4 5; do wait_redis_up "$name" "${ports[$i]}" "$sentinel_dir"; done
	# Every sentinel knows the master, its 2 replicas and the 2 other
	# sentinels before tests start failing it over.
	local ok
	for _ in $(seq 1 300); do
		ok=0
		for i in 3 4 5; do
			local info
			info=$(redis-cli -p "${ports[$i]}" sentinel master dbmaster 2>/dev/null | tr -d '\r' | paste - - | awk '$1=="num-slaves"||$1=="num-other-sentinels"{print $1"="$2}' | tr '\n' ' ')
			case "$info" in *"num-slaves=2"*"num-other-sentinels=2"*) ok=$((ok + 1)) ;; esac
		done
		[ "$ok" = 3 ] && break
		sleep 0.1
	done
	[ "$ok" = 3 ] || { echo "$name: sentinels did not discover each other"; tail -5 "$sentinel_dir"/s*.log; exit 1; }
	sentinel_spec="dbmaster@$(IFS=,; echo "${specs[*]}")"
	echo "$name: Redis Sentinel master 127.0.0.1:$master, replicas ${ports[1]} ${ports[2]}, sentinels $sentinel_spec"
}
