#!/usr/bin/env bash
# bench-million.sh: what one blobnode costs as it fills, from an empty node
# to one holding N 1 KiB blobs (default one million), all in one run:
#
#   start to ready: first start, clean restarts (3 each) empty and full,
#                   and a restart after kill -9 when full
#   1 KiB PUT and GET, 16 clients, -n 20000: empty, then full, and the Go
#                   map server of ../shared/baseline in the same run
#   anonymous memory (RssAnon) of the node, empty and full, each after a
#                   clean restart and the same request load
#   after kill -9: every one of the N blobs read back and verified
#
# Usage: scripts/bench-million.sh [N]   (BASELINE_DIR overrides ../shared/baseline)
# One million blobs take the fill about two minutes on this machine, and the
# verification after kill -9 about a minute.
set -euo pipefail

# shellcheck source=scripts/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"

total=${1:-1000000}
root=$bench_root
bench_init bench-million

log "building blobnode, blobbench and the baseline in $work"
build_tools
build_baseline

node_http=127.0.0.1:$(free_port)
node_raft=127.0.0.1:$(free_port)
mem_addr=127.0.0.1:$(free_port)
# 4 KiB pages: N small blobs take N pages, plus room for the load phases.
volume_size=$(((total / 262144 + 2) * 1024))MiB
mkdir -p "$work/node"
start "$work/mem.log" "$work/baseline" -mode mem -addr "$mem_addr"
mem_pid=$last_pid
wait_http "http://$mem_addr/" "$mem_pid" any

# boot: start the node on $work/node; $booted is its seconds to ready.
boot() {
	local t0
	t0=$(date +%s%N)
	start "$work/blobnode.log" "$work/blobnode" -data-dir "$work/node" -http-addr "$node_http" \
		-raft-addr "$node_raft" -volume-size "$volume_size" -log-level warn
	node_pid=$last_pid
	booted=$(ready_after "$t0" "http://$node_http/readyz" "$node_pid") || { tail -n 20 "$work/blobnode.log" >&2; exit 1; }
}

# restarts WHAT: three clean restarts, their seconds to ready on one line.
restarts() {
	local i times=()
	for i in 1 2 3; do
		stop_pid "$node_pid"
		boot
		times+=("$booted")
	done
	echo "start to ready after a clean stop ($1): ${times[*]} s"
	restart_times[$1]=${times[*]}
}

# load TITLE ADDR PREFIX: 1 KiB PUT then GET, 16 clients; sets put_rate, get_rate.
load() {
	local out
	echo "## $1 ($2): 1KiB x 20000, 16 clients"
	run_tool "$work/out" "$work/blobbench" -addr "http://$2" -n 20000 -size 1KiB -c 16 -ops put,get -prefix "$3" || status=1
	out=$(<"$work/out")
	echo "$out"
	put_rate=$(awk '$1 == "put" { print $6 }' <<<"$out")
	get_rate=$(awk '$1 == "get" { print $6 }' <<<"$out")
	echo
}

echo "# bench-million $(date -u +%FT%TZ) on $(nproc) CPUs, $(uname -sr), $(go version | awk '{print $3}'), N=$total"
echo "# blobnode $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?'), volume $volume_size in $work/node"
echo
status=0
declare -A restart_times
boot
echo "start to ready, first start (formats the volume): $booted s"
load "map server" "$mem_addr" mem/
mem_put=$put_rate mem_get=$get_rate
restarts empty
load "blobnode, empty" "$node_http" empty/
empty_put=$put_rate empty_get=$get_rate
anon_empty=$(anon_kib "$node_pid") heap_empty=$(metrics_at "$node_http" go_memstats_heap_inuse_bytes)
restarts "empty, after the load"

fill=$((total - 20000))
log "filling to $total blobs"
echo "## fill: 1KiB x $fill, 16 clients"
run_tool "$work/out" "$work/blobbench" -addr "http://$node_http" -n "$fill" -size 1KiB -c 16 -ops put -prefix fill/ || status=1
cat "$work/out"
echo
restarts full
load "blobnode, $total blobs" "$node_http" full/
full_put=$put_rate full_get=$get_rate
anon_full=$(anon_kib "$node_pid") heap_full=$(metrics_at "$node_http" go_memstats_heap_inuse_bytes)
restarts "full, after the load"

kill -KILL "$node_pid"
wait "$node_pid" 2>/dev/null || true
forget_pid "$node_pid"
boot
killed=$booted
echo "start to ready after kill -9 ($total blobs): $killed s"
echo "## after kill -9: every filled blob read back and verified"
run_tool "$work/out" "$work/blobbench" -addr "http://$node_http" -n "$fill" -size 1KiB -c 16 -ops get -prefix fill/ || status=1
cat "$work/out"
echo

echo "## summary"
awk -v mp="$mem_put" -v mg="$mem_get" -v ep="$empty_put" -v eg="$empty_get" -v fp="$full_put" -v fg="$full_get" -v n="$total" 'BEGIN {
	printf "%-4s %12s %12s %12s %10s %10s %10s\n", "op", "map", "empty", "full", "empty/map", "full/map", "full/empty"
	printf "%-4s %12.1f %12.1f %12.1f %9.2fx %9.2fx %9.2fx\n", "put", mp, ep, fp, ep / mp, fp / mp, fp / ep
	printf "%-4s %12.1f %12.1f %12.1f %9.2fx %9.2fx %9.2fx\n", "get", mg, eg, fg, eg / mg, fg / mg, fg / eg
}'
for k in "empty" "empty, after the load" "full" "full, after the load"; do
	echo "start to ready after a clean stop, $k: ${restart_times[$k]} s"
done
echo "start to ready after kill -9, full: $killed s"
awk -v e="$anon_empty" -v f="$anon_full" -v he="$heap_empty" -v hf="$heap_full" -v n="$total" 'BEGIN {
	printf "anonymous memory after the load phase: empty %.1f MiB, full %.1f MiB: %.1f MiB per million blobs (Go heap in use %.1f and %.1f MiB)\n",
		e / 1024, f / 1024, (f - e) / 1024 / (n / 1e6), he / 1048576, hf / 1048576 }'
exit $status
