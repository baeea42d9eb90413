#!/usr/bin/env bash
# bench-single.sh: one blobnode against the two reference servers of
# ../shared/baseline (files: one fsynced file per blob; mem: a Go map), all
# on loopback on this machine, driven by cmd/blobbench in one run:
#
#   1 KiB blobs: -n 20000 -c 16, put then get
#   1 MiB blobs: -n 500   -c 16, put then get
#   blobnode alone, 1 client: 1 KiB x 1000 and 1 MiB x 200, put (fsyncs per PUT)
#
# Prints every blobbench table, blobnode's fsyncs per PUT (volume and Raft
# log), and a
# summary of ops/s with blobnode's ratios to each baseline. Everything it
# starts is stopped on exit (trap), and its temporary directory removed.
#
# Usage: scripts/bench-single.sh        (BASELINE_DIR overrides ../shared/baseline)
set -euo pipefail

# shellcheck source=scripts/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"

root=$bench_root
bench_init bench-single

# metric NAME: the value of an unlabelled blobnode metric.
metric() { metrics_at "$node_http" "$1"; }

log "building blobnode, blobbench and the baseline in $work"
build_tools
build_baseline

node_http=127.0.0.1:$(free_port)
node_raft=127.0.0.1:$(free_port)
files_addr=127.0.0.1:$(free_port)
mem_addr=127.0.0.1:$(free_port)
mkdir -p "$work/node" "$work/files"

start "$work/blobnode.log" "$work/blobnode" -data-dir "$work/node" -http-addr "$node_http" -raft-addr "$node_raft" \
	-volume-size 4GiB -log-level warn
node_pid=$last_pid
start "$work/files.log" "$work/baseline" -mode files -addr "$files_addr" -dir "$work/files"
files_pid=$last_pid
start "$work/mem.log" "$work/baseline" -mode mem -addr "$mem_addr"
mem_pid=$last_pid

wait_http "http://$node_http/readyz" "$node_pid" || { cat "$work/blobnode.log" >&2; exit 1; }
wait_http "http://$files_addr/" "$files_pid" any
wait_http "http://$mem_addr/" "$mem_pid" any

echo "# bench-single $(date -u +%FT%TZ) on $(nproc) CPUs, $(uname -sr), $(go version | awk '{print $3}')"
echo "# blobnode $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') data in $work/node (fresh)"
echo

summary=()
status=0
for run in "1KiB 20000" "1MiB 500"; do
	read -r size n <<<"$run"
	declare -A ops=()
	for target in blobnode files mem; do
		case $target in
		blobnode) addr=$node_http ;;
		files) addr=$files_addr ;;
		mem) addr=$mem_addr ;;
		esac
		if [[ $target == blobnode ]]; then
			syncs0=$(metric blobnode_volume_fsync_seconds_count)
			appends0=$(metric blobnode_raft_log_appends_total)
		fi
		echo "## $target ($addr): $size x $n, 16 clients"
		out=$("$work/blobbench" -addr "http://$addr" -n "$n" -size "$size" -c 16 -ops put,get \
			-prefix "bench/$target/$size/") || status=1
		echo "$out"
		if [[ $target == blobnode ]]; then
			syncs1=$(metric blobnode_volume_fsync_seconds_count)
			appends1=$(metric blobnode_raft_log_appends_total)
			awk -v a="$syncs0" -v b="$syncs1" -v c="$appends0" -v d="$appends1" -v n="$n" \
				'BEGIN { printf "blobnode fsyncs per PUT: %.3f (volume: data batches + allocator journal %.3f, Raft log %.3f)\n", (b - a + d - c) / n, (b - a) / n, (d - c) / n }'
		fi
		echo
		for phase in put get; do
			ops[$target.$phase]=$(awk -v p="$phase" '$1 == p { print $6 }' <<<"$out")
		done
	done
	for phase in put get; do
		summary+=("$(awk -v s="$size" -v p="$phase" -v b="${ops[blobnode.$phase]}" -v f="${ops[files.$phase]}" -v m="${ops[mem.$phase]}" \
			'BEGIN { printf "%-5s %-4s %12.1f %12.1f %12.1f %10.2fx %10.2fx", s, p, b, f, m, (f > 0 ? b / f : 0), (m > 0 ? b / m : 0) }')")
	done
	unset ops
done

# One client: the fsyncs a lone PUT pays (nothing to share them with).
for run in "1KiB 1000" "1MiB 200"; do
	read -r size n <<<"$run"
	syncs0=$(metric blobnode_volume_fsync_seconds_count)
	appends0=$(metric blobnode_raft_log_appends_total)
	echo "## blobnode ($node_http): $size x $n, 1 client"
	"$work/blobbench" -addr "http://$node_http" -n "$n" -size "$size" -c 1 -ops put \
		-prefix "bench/c1/$size/" || status=1
	syncs1=$(metric blobnode_volume_fsync_seconds_count)
	appends1=$(metric blobnode_raft_log_appends_total)
	awk -v a="$syncs0" -v b="$syncs1" -v c="$appends0" -v d="$appends1" -v n="$n" \
		'BEGIN { printf "blobnode fsyncs per PUT at 1 client: %.3f (volume %.3f, Raft log %.3f)\n", (b - a + d - c) / n, (b - a) / n, (d - c) / n }'
	echo
done

echo "## summary (ops/s; ratio = blobnode / baseline)"
printf '%-5s %-4s %12s %12s %12s %11s %11s\n' size op blobnode files mem vs-files vs-mem
printf '%s\n' "${summary[@]}"
exit $status
