#!/usr/bin/env bash
# bench-single.sh: one blobnode against the two reference servers of
# ../shared/baseline (files: one fsynced file per blob; mem: a Go map), all
# on loopback on this machine, driven by cmd/blobbench in one run:
#
#   ROUNDS rounds (default 5), each: blobnode, files, mem in turn,
#     1 KiB blobs: -n 20000 -c 16, put then get
#     1 MiB blobs: -n 500   -c 16, put then get
#   blobnode alone, 1 client: 1 KiB x 1000 and 1 MiB x 200, put (fsyncs per PUT)
#
# Prints every blobbench table, blobnode's fsyncs per PUT (volume and Raft
# log), and a summary: per size and phase, the median over the rounds of
# each server's ops/s and of blobnode's ratio to each baseline within a
# round, with the lowest and highest ratio. Why rounds: this machine's
# speed drifts over tens of seconds (the map server's rate has moved by
# half from one minute to the next), so one pass of three servers in turn
# can compare one server's fast minute with another's slow one. Each
# round keeps the three close in time; the median ratio is what the
# figures in the README quote. Everything it starts is stopped on exit
# (trap), and its temporary directory removed.
#
# Usage: scripts/bench-single.sh   (ROUNDS=N; BASELINE_DIR overrides ../shared/baseline)
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

rounds=${ROUNDS:-5}
summary=()
status=0
declare -A ops=()
for round in $(seq "$rounds"); do
	for run in "1KiB 20000" "1MiB 500"; do
		read -r size n <<<"$run"
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
			echo "## round $round/$rounds, $target ($addr): $size x $n, 16 clients"
			out=$("$work/blobbench" -addr "http://$addr" -n "$n" -size "$size" -c 16 -ops put,get \
				-prefix "bench/$target/$size/$round/") || status=1
			echo "$out"
			if [[ $target == blobnode ]]; then
				syncs1=$(metric blobnode_volume_fsync_seconds_count)
				appends1=$(metric blobnode_raft_log_appends_total)
				awk -v a="$syncs0" -v b="$syncs1" -v c="$appends0" -v d="$appends1" -v n="$n" \
					'BEGIN { printf "blobnode fsyncs per PUT: %.3f (volume: data batches + allocator journal %.3f, Raft log %.3f)\n", (b - a + d - c) / n, (b - a) / n, (d - c) / n }'
			fi
			echo
			for phase in put get; do
				ops[$round.$size.$target.$phase]=$(awk -v p="$phase" '$1 == p { print $6 }' <<<"$out")
			done
		done
	done
done

# median_of V...: the median of the numbers given (the lower middle one of an even count).
median_of() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# range_of V...: "lowest-highest".
range_of() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }

for size in 1KiB 1MiB; do
	for phase in put get; do
		rates_b=() rates_f=() rates_m=() vs_f=() vs_m=()
		for round in $(seq "$rounds"); do
			b=${ops[$round.$size.blobnode.$phase]:-0} f=${ops[$round.$size.files.$phase]:-0} m=${ops[$round.$size.mem.$phase]:-0}
			rates_b+=("$b") rates_f+=("$f") rates_m+=("$m")
			vs_f+=("$(awk -v b="$b" -v f="$f" 'BEGIN { printf "%.4f", (f > 0 ? b / f : 0) }')")
			vs_m+=("$(awk -v b="$b" -v m="$m" 'BEGIN { printf "%.4f", (m > 0 ? b / m : 0) }')")
		done
		summary+=("$(printf '%-5s %-4s %12.1f %12.1f %12.1f %10.2fx %10.2fx %13s %13s' "$size" "$phase" \
			"$(median_of "${rates_b[@]}")" "$(median_of "${rates_f[@]}")" "$(median_of "${rates_m[@]}")" \
			"$(median_of "${vs_f[@]}")" "$(median_of "${vs_m[@]}")" "$(range_of "${vs_f[@]}")" "$(range_of "${vs_m[@]}")")")
	done
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

echo "## summary: medians over $rounds rounds (ops/s; ratio = blobnode / baseline within a round, then its range)"
printf '%-5s %-4s %12s %12s %12s %11s %11s %13s %13s\n' size op blobnode files mem vs-files vs-mem range-files range-mem
printf '%s\n' "${summary[@]}"
exit $status
