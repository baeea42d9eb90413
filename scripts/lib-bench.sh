# lib-bench.sh: shell helpers shared by the benchmark scripts. Sourced, not
# run: a script sets -euo pipefail, sources this file and calls bench_init.
#
#   bench_init NAME      $work (a new temporary directory), the array pids
#                        (processes stopped on exit) and the traps that stop
#                        them and remove $work on exit or INT/TERM
#   build_tools          blobnode and blobbench built from this checkout into $work
#   build_baseline       the reference servers of ../shared/baseline (BASELINE_DIR
#                        overrides) built into $work/baseline
#   leader_now           the leader's id as every node in names (API at http_of[node])
#                        sees it, "" if they differ or one does not know
#   start LOG CMD...     CMD in the background, stderr to LOG, its pid in pids and $last_pid
#   run_tool OUT CMD...  CMD with stdout to OUT, waited for so that INT or TERM to this
#                        shell stop it at once (the traps stop everything in pids)
#   stop_pid PID         SIGTERM, then SIGKILL after 10 s; waits for it
#   free_port            a loopback port nothing listens on, never one given out before
#   wait_http URL PID [CODE|any [S]]  until URL answers (200 unless told), within S seconds (30)
#   metrics_at ADDR NAME...        the values of unlabelled metrics, one line, space-separated
#   cpu_ticks PID        user + system CPU of PID so far, in clock ticks ($clk_tck a second)
#   machine_ticks        "BUSY ALL": clock ticks of all CPUs so far, busy and in all
#   log MSG...           to stderr
#
# shellcheck shell=bash

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # for the scripts that source this file
clk_tck=$(getconf CLK_TCK)

bench_init() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	pids=()
	used_ports=" "
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		stop_pid "$pid"
	done
	rm -rf "$work"
}

log() { printf '%s\n' "$*" >&2; }

build_tools() {
	(cd "$bench_root" && go build -o "$work/blobnode" ./cmd/blobnode && go build -o "$work/blobbench" ./cmd/blobbench)
}

build_baseline() {
	(cd "${BASELINE_DIR:-$bench_root/../shared/baseline}" && go build -o "$work/baseline" .)
}

# shellcheck disable=SC2154 # names and http_of are the calling script's
leader_now() {
	local n id seen=""
	for n in "${names[@]}"; do
		id=$(curl -s --max-time 5 "http://${http_of[$n]}/cluster" | jq -r '.leader.id // ""')
		if [[ -z $id || (-n $seen && $id != "$seen") ]]; then
			echo ""
			return
		fi
		seen=$id
	done
	echo "$seen"
}

start() {
	local logfile=$1
	shift
	"$@" 2>"$logfile" &
	last_pid=$!
	pids+=("$last_pid")
}

# run_tool OUT CMD...: CMD's exit status. Bash runs a trap only once the
# foreground command ends, so CMD runs in the background and is waited
# for: wait returns on a signal, and the EXIT trap stops CMD with the rest.
run_tool() {
	local out=$1 pid rc=0
	shift
	"$@" >"$out" &
	pid=$!
	pids+=("$pid")
	wait "$pid" || rc=$?
	forget_pid "$pid"
	return "$rc"
}

# forget_pid PID: PID was waited for and may be reused: it leaves pids.
forget_pid() {
	local i rest=()
	for i in "${pids[@]}"; do
		[[ $i == "$1" ]] || rest+=("$i")
	done
	pids=("${rest[@]}")
}

# stop_pid PID: once it has been waited for, its id may be reused, so it
# also leaves pids.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do # up to 10 s, then SIGKILL
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# free_port prints a loopback port nothing listens on (a random one,
# checked, and not one an earlier call gave out: that one may not be
# bound yet). It is below the kernel's ephemeral range, whose ports
# outgoing connections take without listening (a check cannot see them,
# and bind then fails).
free_port() {
	local p i low
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range
	if ((low <= 11000)); then
		low=32768 # an unusual range: fall back to the common default
	fi
	for ((i = 0; i < 200; i++)); do
		p=$((10000 + RANDOM % (low - 10000)))
		[[ $used_ports == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return
		fi
	done
	log "no free port found"
	exit 1
}

# wait_http URL PID [CODE [SECONDS]]: until URL answers CODE (200; "any":
# any status), for up to SECONDS (30), failing early if PID exits.
wait_http() {
	local url=$1 pid=$2 want=${3:-200} secs=${4:-30} code i
	for ((i = 0; i < secs * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "process $pid exited while waiting for $url"
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
		if [[ $want == any && $code != 000 ]] || [[ $code == "$want" ]]; then
			return 0
		fi
		sleep 0.1
	done
	log "$url not ready after $secs s"
	return 1
}

# metrics_at ADDR NAME...: the value of each unlabelled metric (empty
# metrics print 0), from one scrape.
metrics_at() {
	local addr=$1
	shift
	# awk reads it all: an early exit would SIGPIPE curl under pipefail
	curl -s --max-time 5 "http://$addr/metrics" | awk -v names="$*" '
		BEGIN { n = split(names, want, " ") }
		{ v[$1] = $2 }
		END { for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), (want[i] in v ? v[want[i]] : 0); print "" }'
}

cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) } # fields after the command name, which may hold blanks
	awk '{ print $12 + $13 }' <<<"$stat" # utime, stime: fields 14 and 15 of the whole line
}

machine_ticks() {
	# cpu user nice system idle iowait irq softirq steal ...
	awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit }' /proc/stat
}

# ready_after T0 URL PID [S]: seconds (3 decimals) from T0 (date +%s%N, taken
# just before the process started) until URL answers 200, polled every
# 5 ms, for up to S seconds (60); fails if PID exits first.
ready_after() {
	local t0=$1 url=$2 pid=$3 secs=${4:-60} deadline
	deadline=$((t0 + secs * 1000000000))
	until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "process $pid exited while waiting for $url"
			return 1
		fi
		if (($(date +%s%N) > deadline)); then
			log "$url not ready after $secs s"
			return 1
		fi
		sleep 0.005
	done
	awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

# anon_kib PID: the anonymous memory of PID (RssAnon), in KiB.
anon_kib() { awk '$1 == "RssAnon:" { print $2 }' "/proc/$1/status"; }
