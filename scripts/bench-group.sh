#!/usr/bin/env bash
# bench-group.sh: a three-node group against one node, all on loopback on
# this machine, driven by cmd/blobbench in one run (the figures of issue #12):
#
#   one node (-volume-size as each node of the group), 16 clients:
#     1 KiB PUT x N_1K, 1 MiB PUT x N_1M                     (the baselines)
#   three unreplicated one-node groups at once, 6+5+5 clients, each blob on
#     one of them: 1 KiB PUT x N_1K and 1 MiB PUT x N_1M to each (what the
#     machine gives three nodes; a group writes every blob on all three)
#   it is stopped, then a group of three is formed (n1..n3), and:
#     1 KiB PUT x N_1K spread over the three nodes, 16 clients
#     1 KiB GET of those keys, 16 clients, all at the leader, then all at one
#       follower, GET_ROUNDS times (the summary takes the median ratio)
#     1 MiB PUT x N_1M spread, 16 clients
#     1 client: 1 KiB PUT x N_C1 and 1 MiB PUT x N_C1M spread;
#               1 KiB GET x N_C1 at the leader, then at the follower
#
# After each phase it prints the blobbench table, then per node the fsyncs
# per PUT (volume data syncs + journal fsyncs + Raft log appends, from
# /metrics deltas) or, for GETs, the follower's read-index round trips per
# GET, the CPU each process spent per request (from /proc/PID/stat) and
# how busy the machine was, by these processes and by others (a run that
# shares the CPUs with other work measures less than the code can do).
# A summary follows: the ratios against the baselines, whether each
# target is met (group PUT >= 0.5x one node, 1 KiB and 1 MiB; follower GET
# >= 0.7x leader GET), and the ratio the CPU per request alone allows,
# which other load on the machine hardly moves. Everything it starts is
# stopped on exit (trap), and its temporary directory removed.
#
# Usage: scripts/bench-group.sh
#   environment: N_1K (20000), N_1M (500), N_C1 (1000), N_C1M (200),
#   GET_ROUNDS (3), VOLUME_SIZE (4GiB), PHASE_CAP (a phase issues no
#   request after it: 120s)
# Exit status: 0 every request succeeded and every target is met; 1 a
# request failed or the run could not be made; 3 a target was missed.
set -euo pipefail

# shellcheck source=scripts/lib-bench.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-bench.sh"

n_1k=${N_1K:-20000}
n_1m=${N_1M:-500}
n_c1=${N_C1:-1000}
n_c1m=${N_C1M:-200}
volume_size=${VOLUME_SIZE:-4GiB}
phase_cap=${PHASE_CAP:-120s}
get_rounds=${GET_ROUNDS:-3}
[[ $get_rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-group: GET_ROUNDS ($get_rounds) must be a number of at least 1" >&2; exit 1; }
ncpu=$(nproc)

bench_init bench-group
log "building blobnode and blobbench in $work"
build_tools

echo "# bench-group $(date -u +%FT%TZ) on $ncpu CPUs, $(uname -sr), $(go version | awk '{print $3}')"
echo "# blobnode $(cd "$bench_root" && git rev-parse --short HEAD 2>/dev/null || echo '?'), volumes of $volume_size (fresh)"
echo

status=0
# The counters read around each phase, in this order.
counters=(blobnode_data_syncs_total blobnode_journal_fsyncs_total blobnode_raft_log_appends_total
	blobnode_follower_reads_total blobnode_read_index_round_trips_total)

# The nodes measured: names, API addresses and pids (set as they start).
names=()
declare -A http_of pid_of

# snapshot: every node's counters and CPU, the load tool's CPU (the
# shell's children) and the whole machine's, into before[...].
declare -A before after
snapshot() {
	local n
	before[machine]=$(machine_ticks)
	for n in "${names[@]}"; do
		before[$n.m]=$(metrics_at "${http_of[$n]}" "${counters[@]}")
		before[$n.cpu]=$(cpu_ticks "${pid_of[$n]}")
	done
	children_cpu
	before[tool]=$children
}

# snapshot_cpu: the same CPU figures into after[...], as soon as a phase ends.
snapshot_cpu() {
	local n
	children_cpu
	after[tool]=$children
	for n in "${names[@]}"; do
		after[$n.cpu]=$(cpu_ticks "${pid_of[$n]}")
	done
	after[machine]=$(machine_ticks)
}

# children_cpu sets $children: user + system seconds of the shell's
# waited-for children (the load tool, and the odd curl and awk). It must
# run in this shell, not a subshell, whose own children these would be.
children_cpu() {
	times >"$work/times"
	children=$(awk 'NR == 2 {
		s = 0
		for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] }
		printf "%.3f\n", s
	}' "$work/times")
}

# report KIND OPS: after a phase of OPS requests, each node's fsyncs per
# PUT (KIND put) or read-index round trips per GET (KIND get), the CPU per
# request of each process, and how busy the machine was and with what.
# Sets last_sync[node] (fsyncs per PUT), last_trips (the trips per GET of
# the node that made any) and last_cpu (ms of CPU per request, all
# processes measured).
declare -A last_sync sync_1k_c1 sync_1k_c16 sync_1m_c1 sync_1m_c16
report() {
	local kind=$1 ops=$2 n now ticks=0 line per data journal raft reads trips
	last_trips=0 last_cpu=0
	if ((ops == 0)); then
		return
	fi
	line="cpu per request (ms):"
	for n in "${names[@]}"; do
		now=$(metrics_at "${http_of[$n]}" "${counters[@]}")
		if [[ $kind == put ]]; then
			read -r per data journal raft < <(awk -v a="${before[$n.m]}" -v b="$now" -v n="$ops" 'BEGIN {
				split(a, x, " "); split(b, y, " ")
				d = y[1] - x[1]; j = y[2] - x[2]; r = y[3] - x[3]
				printf "%.3f %.3f %.3f %.3f\n", (d + j + r) / n, d / n, j / n, r / n }')
			last_sync[$n]=$per
			printf 'fsyncs per PUT %-16s %6.3f  (data syncs %.3f, journal %.3f, Raft log %.3f)\n' "$n$(role "$n"):" "$per" "$data" "$journal" "$raft"
		else
			read -r reads trips < <(awk -v a="${before[$n.m]}" -v b="$now" -v n="$ops" 'BEGIN {
				split(a, x, " "); split(b, y, " ")
				printf "%d %d\n", y[4] - x[4], y[5] - x[5] }')
			if ((reads > 0 || trips > 0)); then
				last_trips=$(awk -v t="$trips" -v n="$ops" 'BEGIN { printf "%.3f", t / n }')
				printf 'read index %-20s %d follower reads, %d round trips to the leader: %.3f per GET\n' "$n$(role "$n"):" "$reads" "$trips" "$last_trips"
			fi
		fi
		line+=$(awk -v a="${before[$n.cpu]}" -v b="${after[$n.cpu]}" -v n="$ops" -v hz="$clk_tck" -v name="$n" 'BEGIN { printf " %s %.3f", name, (b - a) / hz * 1000 / n }')
		ticks=$((ticks + after[$n.cpu] - before[$n.cpu]))
	done
	awk -v l="$line" -v a="${before[tool]}" -v b="${after[tool]}" -v t="$ticks" -v hz="$clk_tck" -v n="$ops" -v c="$ncpu" \
		-v m0="${before[machine]}" -v m1="${after[machine]}" -v keep="$work/last_cpu" 'BEGIN {
		tool = b - a; ms = (t / hz + tool) * 1000 / n
		split(m0, x, " "); split(m1, y, " "); busy = y[1] - x[1]; all = y[2] - x[2]
		others = (all > 0 ? (busy - t - tool * hz) / all * 100 : 0)
		printf "%s blobbench %.3f; all %.3f, so at most %.0f/s on %d CPUs\n", l, tool * 1000 / n, ms, (ms > 0 ? c * 1000 / ms : 0), c
		printf "machine %.0f%% busy: these processes %.0f%%, others %.0f%%\n", (all > 0 ? busy / all * 100 : 0), (all > 0 ? (t + tool * hz) / all * 100 : 0), (others > 0 ? others : 0)
		printf "%.3f\n", ms > keep }'
	last_cpu=$(<"$work/last_cpu")
}

# role NODE: " (leader)" or " (follower)" in the group, "" alone.
role() {
	if [[ ${#names[@]} -gt 1 ]]; then
		[[ $1 == "$leader" ]] && echo " (leader)" || echo " (follower)"
	fi
}

# bench TITLE ADDRS SIZE N C OP PREFIX: one blobbench phase, its table
# printed and kept in $out; $ops and $rate are its requests and ops/s.
bench() {
	local title=$1 addrs=$2 size=$3 n=$4 c=$5 op=$6 prefix=$7 url a
	url=""
	for a in ${addrs//,/ }; do
		url+="${url:+,}http://$a"
	done
	echo "## $title: $size x $n, $c client$([[ $c == 1 ]] || echo s)"
	snapshot
	run_tool "$work/out" "$work/blobbench" -addr "$url" -n "$n" -size "$size" -c "$c" -ops "$op" -prefix "$prefix" \
		-duration "$phase_cap" -timeout 30s || status=1
	snapshot_cpu
	out=$(<"$work/out")
	echo "$out"
	ops=$(awk -v p="$op" '$1 == p { print $2 }' <<<"$out")
	rate=$(awk -v p="$op" '$1 == p { print $6 }' <<<"$out")
	ops=${ops:-0} rate=${rate:-0}
	report "$op" "$ops"
	echo
}

# --- one node: the baselines ---------------------------------------------

single_http=127.0.0.1:$(free_port)
mkdir -p "$work/single"
start "$work/single.log" "$work/blobnode" -data-dir "$work/single" -http-addr "$single_http" \
	-raft-addr "127.0.0.1:$(free_port)" -volume-size "$volume_size" -log-level info
single_pid=$last_pid
wait_http "http://$single_http/readyz" "$single_pid" || { cat "$work/single.log" >&2; exit 1; }
names=(single)
http_of[single]=$single_http
pid_of[single]=$single_pid

bench "one node ($single_http)" "$single_http" 1KiB "$n_1k" 16 put bench/single/1k/
single_1k=$rate single_1k_cpu=$last_cpu single_sync_1k=${last_sync[single]}
bench "one node ($single_http)" "$single_http" 1MiB "$n_1m" 16 put bench/single/1m/
single_1m=$rate single_1m_cpu=$last_cpu single_sync_1m=${last_sync[single]}

stop_pid "$single_pid" # the group has the machine to itself
rm -rf "$work/single"

# --- three unreplicated nodes: what this machine gives three copies --------
#
# Three one-node groups, each with its own volume on the same disk, the 16
# clients split among them (6, 5, 5), each blob written to one of them,
# as many blobs to each as the group is given in all (so as many bytes
# reach the disk as the group writes): the machine's aggregate for three
# nodes at once, with no replication. A group writes every blob on all
# three, so a third of this aggregate is what the machine leaves a group's
# blobs if replication itself cost nothing.
names=(u1 u2 u3)
for n in "${names[@]}"; do
	http_of[$n]=127.0.0.1:$(free_port)
	mkdir -p "$work/$n"
	start "$work/$n.log" "$work/blobnode" -data-dir "$work/$n" -http-addr "${http_of[$n]}" \
		-raft-addr "127.0.0.1:$(free_port)" -volume-size "$volume_size" -log-level info
	pid_of[$n]=$last_pid
done
for n in "${names[@]}"; do
	wait_http "http://${http_of[$n]}/readyz" "${pid_of[$n]}" || { cat "$work/$n.log" >&2; exit 1; }
done
# unreplicated SIZE N: the three nodes' aggregate PUTs/s in $rate.
unreplicated() {
	local size=$1 n=$2 i=0 c t0 t1 got=0 tools=() u
	echo "## three unreplicated nodes (${http_of[u1]}, ${http_of[u2]}, ${http_of[u3]}): $size x $n each, 6+5+5 clients"
	t0=$(date +%s.%N)
	for u in "${names[@]}"; do
		c=$((i == 0 ? 6 : 5))
		"$work/blobbench" -addr "http://${http_of[$u]}" -n "$n" -size "$size" -c "$c" -ops put \
			-prefix "bench/unreplicated/$size/" -duration "$phase_cap" -timeout 30s >"$work/$u.out" &
		tools+=($!)
		i=$((i + 1))
	done
	for i in "${tools[@]}"; do
		wait "$i" || status=1
	done
	t1=$(date +%s.%N)
	for u in "${names[@]}"; do
		awk '$1 == "put"' "$work/$u.out"
		got=$((got + $(awk '$1 == "put" { print $2 - $3 }' "$work/$u.out")))
	done
	rate=$(awk -v n="$got" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
	echo "aggregate: $got PUTs in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s, $rate/s"
	echo
}
unreplicated 1KiB "$n_1k"
unrep_1k=$rate
unreplicated 1MiB "$n_1m"
unrep_1m=$rate
for n in "${names[@]}"; do
	stop_pid "${pid_of[$n]}"
	rm -rf "${work:?}/$n"
done

# --- the group -----------------------------------------------------------

openssl rand -hex 32 >"$work/secret"
chmod 600 "$work/secret"
names=(n1 n2 n3)
declare -A raft_of
peers=""
for n in "${names[@]}"; do
	http_of[$n]=127.0.0.1:$(free_port)
	raft_of[$n]=127.0.0.1:$(free_port)
	peers+="${peers:+,}$n=${raft_of[$n]}"
done
for n in "${names[@]}"; do
	mkdir -p "$work/$n"
	start "$work/$n.log" "$work/blobnode" -node-id "$n" -data-dir "$work/$n" \
		-http-addr "${http_of[$n]}" -raft-addr "${raft_of[$n]}" -peers "$peers" \
		-cluster-secret-file "$work/secret" -volume-size "$volume_size" -log-level info
	pid_of[$n]=$last_pid
done
# Forming waits for every peer, then an election: allow a busy machine time.
for n in "${names[@]}"; do
	if ! wait_http "http://${http_of[$n]}/readyz" "${pid_of[$n]}" 200 90; then
		for m in "${names[@]}"; do
			log "--- $m's log (last 15 lines)"
			tail -n 15 "$work/$m.log" >&2
		done
		exit 1
	fi
done

leader=$(leader_now)
if [[ -z $leader ]]; then
	log "the nodes do not agree on a leader"
	exit 1
fi
follower=""
for n in "${names[@]}"; do
	[[ $n != "$leader" && -z $follower ]] && follower=$n
done
all=${http_of[n1]},${http_of[n2]},${http_of[n3]}
echo "# group: n1 ${http_of[n1]}, n2 ${http_of[n2]}, n3 ${http_of[n3]}; leader $leader, GETs at follower $follower"
echo

bench "group, spread over n1,n2,n3" "$all" 1KiB "$n_1k" 16 put bench/group/1k/
group_1k=$rate group_1k_cpu=$last_cpu
for n in "${names[@]}"; do sync_1k_c16[$n]=${last_sync[$n]}; done
n_got=$ops
# The GETs in rounds, leader then follower each time: the machine's speed
# drifts within a run, so one pair says little; the summary takes the
# round with the median ratio (its rates and CPU) and prints every round.
get_ratios=()
for ((r = 1; r <= get_rounds; r++)); do
	bench "group, GET at the leader $leader (round $r of $get_rounds)" "${http_of[$leader]}" 1KiB "$n_got" 16 get bench/group/1k/
	lg[r]=$rate lgc[r]=$last_cpu
	bench "group, GET at the follower $follower (round $r of $get_rounds)" "${http_of[$follower]}" 1KiB "$n_got" 16 get bench/group/1k/
	fg[r]=$rate fgc[r]=$last_cpu ftrips[r]=$last_trips
	get_ratios+=("$(awk -v f="${fg[r]}" -v l="${lg[r]}" 'BEGIN { printf "%.4f", (l > 0 ? f / l : 0) }') $r")
done
median_round=$(printf '%s\n' "${get_ratios[@]}" | sort -n | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
leader_get=${lg[median_round]} leader_get_cpu=${lgc[median_round]}
follower_get=${fg[median_round]} follower_get_cpu=${fgc[median_round]}
trips_c16=${ftrips[median_round]}
bench "group, spread over n1,n2,n3" "$all" 1MiB "$n_1m" 16 put bench/group/1m/
group_1m=$rate group_1m_cpu=$last_cpu
for n in "${names[@]}"; do sync_1m_c16[$n]=${last_sync[$n]}; done

bench "group, spread over n1,n2,n3" "$all" 1KiB "$n_c1" 1 put bench/group/c1/1k/
for n in "${names[@]}"; do sync_1k_c1[$n]=${last_sync[$n]}; done
n_got=$ops
bench "group, GET at the leader $leader" "${http_of[$leader]}" 1KiB "$n_got" 1 get bench/group/c1/1k/
leader_get_c1=$rate
bench "group, GET at the follower $follower" "${http_of[$follower]}" 1KiB "$n_got" 1 get bench/group/c1/1k/
follower_get_c1=$rate
trips_c1=$last_trips
bench "group, spread over n1,n2,n3" "$all" 1MiB "$n_c1m" 1 put bench/group/c1/1m/
for n in "${names[@]}"; do sync_1m_c1[$n]=${last_sync[$n]}; done

if [[ $(leader_now) != "$leader" ]]; then
	log "leadership moved during the run (was $leader): the leader/follower figures are not what they say"
	status=1
fi

# --- summary -------------------------------------------------------------

missed=0
# row NAME VALUE BASE TARGET CPU BASE_CPU: one summary line; counts a
# missed target. The last column is the ratio the CPU per request alone
# allows (BASE_CPU / CPU): what the rates would show if both phases had
# been bound by the machine's CPUs alone, whatever else ran on it.
row() {
	local verdict
	verdict=$(awk -v v="$2" -v b="$3" -v t="$4" 'BEGIN { r = (b > 0 ? v / b : 0); printf "%.2fx %s", r, (r >= t ? "yes" : "NO") }')
	[[ $verdict == *NO ]] && missed=1
	printf '%-40s %10.1f %10.1f %7s %7s %4s %9.3f %9.3f %7s\n' "$1" "$2" "$3" "${verdict% *}" ">=${4}x" "${verdict#* }" "$5" "$6" \
		"$(awk -v a="$5" -v b="$6" 'BEGIN { printf "%.2fx", (a > 0 ? b / a : 0) }')"
}
echo "## summary (16 clients; ops/s and ms of CPU per request, both from this run; ratio = measured / baseline)"
printf '%-40s %10s %10s %7s %7s %4s %9s %9s %7s\n' figure measured baseline ratio target met cpu/op base-cpu cpu-ratio
row "1 KiB PUT, group spread / one node" "$group_1k" "$single_1k" 0.5 "$group_1k_cpu" "$single_1k_cpu"
row "1 MiB PUT, group spread / one node" "$group_1m" "$single_1m" 0.5 "$group_1m_cpu" "$single_1m_cpu"
row "1 KiB GET, follower $follower / leader $leader" "$follower_get" "$leader_get" 0.7 "$follower_get_cpu" "$leader_get_cpu"
printf '(1 KiB GET at 16 clients, %d rounds, the row above is round %d, the median:' "$get_rounds" "$median_round"
for ((r = 1; r <= get_rounds; r++)); do
	awk -v r="$r" -v f="${fg[r]}" -v l="${lg[r]}" 'BEGIN { printf " %d: %.0f/%.0f = %.2fx;", r, f, l, (l > 0 ? f / l : 0) }'
done
echo ")"
awk -v f="$follower_get_c1" -v l="$leader_get_c1" 'BEGIN { printf "(1 client: 1 KiB GET follower %.1f/s, leader %.1f/s, %.2fx)\n", f, l, (l > 0 ? f / l : 0) }'
echo
echo "## the machine's share for a group: three unreplicated nodes at once (each blob on one), a third of their aggregate"
printf '%-40s %10s %10s %10s %10s\n' figure aggregate "a third" group "of a third"
for sz in 1k 1m; do
	u=unrep_$sz g=group_$sz
	awk -v s="$sz" -v u="${!u}" -v g="${!g}" 'BEGIN {
		printf "%-40s %10.1f %10.1f %10.1f %9.2fx\n", (s == "1k" ? "1 KiB PUT" : "1 MiB PUT") ", 16 clients", u, u / 3, g, (u > 0 ? g / (u / 3) : 0) }'
done
echo
echo "## fsyncs per PUT per node (data syncs + journal fsyncs + Raft log appends) / PUTs"
printf '%-16s %10s %10s %10s %10s\n' node "1KiB c=1" "1KiB c=16" "1MiB c=1" "1MiB c=16"
for n in "${names[@]}"; do
	printf '%-16s %10s %10s %10s %10s\n' "$n$(role "$n")" "${sync_1k_c1[$n]}" "${sync_1k_c16[$n]}" "${sync_1m_c1[$n]}" "${sync_1m_c16[$n]}"
done
printf '%-16s %10s %10s %10s %10s\n' "(one node)" - "$single_sync_1k" - "$single_sync_1m"
echo
echo "## read-index round trips per GET at the follower $follower: $trips_c1 at 1 client, $trips_c16 at 16 clients"

if ((status == 0 && missed)); then
	status=3
fi
exit $status
