#!/usr/bin/env bash
# bench-failover.sh: how long a three-node group on loopback takes, after
# its leader is killed (SIGKILL), to acknowledge a write again.
#
# One client PUTs 1 KiB blobs in a loop (curl, one request at a time, each
# bounded to 2 s) at a node that is not the leader. The leader is killed;
# the figure is the time from the kill to the first 201 of a PUT that
# started after it. The killed node is then restarted, and once every node
# is ready and all agree on a leader the next round kills that one.
# ROUNDS (default 5) rounds; prints each and the largest.
#
# Usage: scripts/bench-failover.sh        (ROUNDS=N to change the count)
set -euo pipefail

# shellcheck source=scripts/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"

rounds=${ROUNDS:-5}
bench_init bench-failover
log "building blobnode and blobbench in $work"
build_tools

openssl rand -hex 32 >"$work/secret"
chmod 600 "$work/secret"
head -c 1024 /dev/urandom >"$work/body"
names=(n1 n2 n3)
declare -A http_of raft_of pid_of
peers=""
for n in "${names[@]}"; do
	http_of[$n]=127.0.0.1:$(free_port)
	raft_of[$n]=127.0.0.1:$(free_port)
	peers+="${peers:+,}$n=${raft_of[$n]}"
	mkdir -p "$work/$n"
done

launch() {
	start "$work/$1.log" "$work/blobnode" -node-id "$1" -data-dir "$work/$1" \
		-http-addr "${http_of[$1]}" -raft-addr "${raft_of[$1]}" -peers "$peers" \
		-cluster-secret-file "$work/secret" -volume-size 1GiB -log-level info
	pid_of[$1]=$last_pid
}


# settle: every node ready and all agree on a leader, within 60 s.
settle() {
	local i n
	for n in "${names[@]}"; do
		wait_http "http://${http_of[$n]}/readyz" "${pid_of[$n]}" 200 60 || { tail -n 20 "$work/$n.log" >&2; exit 1; }
	done
	for ((i = 0; i < 600; i++)); do
		leader=$(leader_now)
		[[ -n $leader ]] && return
		sleep 0.1
	done
	log "the nodes do not agree on a leader after 60 s"
	exit 1
}

for n in "${names[@]}"; do launch "$n"; done
settle

echo "# bench-failover $(date -u +%FT%TZ) on $(nproc) CPUs, $(uname -sr), blobnode $(cd "$bench_root" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
times=()
seq=0
for ((round = 1; round <= rounds; round++)); do
	settle
	target=""
	for n in "${names[@]}"; do
		[[ $n != "$leader" && -z $target ]] && target=$n
	done
	# A few acknowledged writes first: the loop and the group work.
	for i in 1 2 3; do
		seq=$((seq + 1))
		code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --max-time 5 --data-binary @"$work/body" "http://${http_of[$target]}/blobs/failover/$seq")
		[[ $code == 201 ]] || { log "PUT before the kill: $code"; exit 1; }
	done
	kill -KILL "${pid_of[$leader]}"
	killed_at=$(date +%s%N)
	wait "${pid_of[$leader]}" 2>/dev/null || true
	forget_pid "${pid_of[$leader]}"
	acked=""
	deadline=$((killed_at + 30000000000))
	while [[ -z $acked ]] && (($(date +%s%N) < deadline)); do
		seq=$((seq + 1))
		code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --max-time 2 --data-binary @"$work/body" "http://${http_of[$target]}/blobs/failover/$seq" || true)
		[[ $code == 201 ]] && acked=$(date +%s%N)
	done
	if [[ -z $acked ]]; then
		log "round $round: no 201 within 30 s of killing $leader"
		exit 1
	fi
	t=$(awk -v a="$killed_at" -v b="$acked" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	times+=("$t")
	echo "round $round: killed leader $leader; first 201 from $target after $t s"
	launch "$leader"
done
echo "## summary: kill of the leader to the first 201, over $rounds rounds: ${times[*]} s; largest $(printf '%s\n' "${times[@]}" | sort -n | tail -1) s"
