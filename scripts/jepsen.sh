#!/usr/bin/env bash
# A Jepsen-style fault campaign against a fresh docker-compose cluster.
#
#   scripts/jepsen.sh [--time SECONDS] [--nemesis partition,kill,pause] [--seed N] [--report DIR]
#
# Removes any previous cluster of the project (scripts/cluster.sh down: its
# volumes too), brings a fresh one up, builds and runs cmd/blobjepsen
# against it (clients on every node, the seeded fault schedule alongside,
# heal, convergence, final reads, the checks), prints the summary and the
# report directory, and removes the cluster again on any exit (trap), after
# saving each node's log in the report (node1.log, node2.log, node3.log).
#
# Exit 0: every verdict passed; 1: a violation (or the cluster would not
# come up); 2: bad usage or the campaign could not run.
# Bounded: the campaign's --time plus at most BLOBNODE_UP_TIMEOUT (120 s)
# to come up, 2 min to converge, 5 min of checking, 2 min of teardown;
# blobjepsen itself is killed past --time + 10 min.
#
# Needs what scripts/cluster.sh needs (docker, docker-compose 1.29, go,
# curl, root for the secret's chown) plus iptables and nsenter (util-linux)
# on the host: the nemesis cuts links inside the containers' network
# namespaces. Traffic goes to 127.0.0.1 and the containers only.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=180
nemesis=partition,kill,pause
seed=$(($(date +%s%N) % 1000000000 + 1))
report=

usage() {
	echo "usage: scripts/jepsen.sh [--time SECONDS] [--nemesis partition,kill,pause] [--seed N] [--report DIR]" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--time) secs=${2:-}; shift 2 || usage ;;
	--nemesis) nemesis=${2-}; shift 2 || usage ;;
	--seed) seed=${2:-}; shift 2 || usage ;;
	--report) report=${2:-}; shift 2 || usage ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 86400 ]] || { echo "jepsen.sh: --time must be 1..86400 seconds" >&2; usage; }
[[ $seed =~ ^[0-9]+$ ]] || { echo "jepsen.sh: --seed must be a number" >&2; usage; }
if [[ -z $report ]]; then
	report=$root/jepsen-report/$(date -u +%Y%m%dT%H%M%SZ)-seed$seed
fi

for tool in iptables nsenter docker docker-compose go curl; do
	command -v "$tool" >/dev/null || { echo "jepsen.sh: $tool is not installed" >&2; exit 2; }
done

bin=$(mktemp -d)
campaign= # blobjepsen's timeout, while it runs
# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
	local rc=$?
	local c
	# Interrupted mid-campaign: stop blobjepsen, which heals every fault it
	# applied before it exits. (timeout runs it in a process group of its
	# own, so a Ctrl-C or a signal to this script's group misses it.)
	if [[ -n $campaign ]] && kill -0 "$campaign" 2>/dev/null; then
		echo "jepsen.sh: stopping blobjepsen (it heals its faults first)" >&2
		kill -TERM "$campaign" 2>/dev/null || true
		wait "$campaign" 2>/dev/null || true
	fi
	# Keep each node's log (from its first start, across kills and restarts)
	# in the report: the cluster is gone after this.
	if [[ -d $report && -n $(docker ps -aq --filter "label=com.docker.compose.project=${BLOBNODE_PROJECT:-blobnode}" 2>/dev/null) ]]; then
		for c in node1 node2 node3; do
			timeout 60 "$root/scripts/cluster.sh" logs "$c" >"$report/$c.log" 2>&1 || true
		done
	fi
	echo "jepsen.sh: removing the cluster" >&2
	# A campaign cut short may leave a node paused; down needs it running.
	for c in $(docker ps -q --filter "label=com.docker.compose.project=${BLOBNODE_PROJECT:-blobnode}" --filter status=paused 2>/dev/null); do
		docker unpause "$c" >/dev/null 2>&1 || true
	done
	timeout 120 "$root/scripts/cluster.sh" down >/dev/null 2>&1 || echo "jepsen.sh: cluster.sh down failed" >&2
	rm -rf "$bin"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "jepsen.sh: building cmd/blobjepsen" >&2
(cd "$root" && go build -o "$bin/blobjepsen" ./cmd/blobjepsen)

echo "jepsen.sh: a fresh cluster (down, then up)" >&2
timeout 120 "$root/scripts/cluster.sh" down >/dev/null 2>&1 || true
timeout 600 "$root/scripts/cluster.sh" up || { echo "jepsen.sh: the cluster did not come up" >&2; exit 1; }

echo "jepsen.sh: campaign of ${secs}s, nemesis '$nemesis', seed $seed, report $report" >&2
rc=0
# In the background, waited for: a signal to this script interrupts the
# wait and its trap runs at once, not after the campaign.
(cd "$root" && exec timeout -k 30 $((secs + 600)) "$bin/blobjepsen" --time "${secs}s" --nemesis "$nemesis" \
	--seed "$seed" --report "$report" --compose-file "$root/deploy/docker-compose.yml") &
campaign=$!
wait "$campaign" || rc=$?
campaign=
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
	echo "jepsen.sh: blobjepsen ran past its bound" >&2
	rc=2
fi
case $rc in
0) echo "jepsen.sh: PASS; report in $report" ;;
1) echo "jepsen.sh: VIOLATION; report in $report" ;;
*) echo "jepsen.sh: the campaign could not run (exit $rc); report (if any) in $report" ;;
esac
exit "$rc"
