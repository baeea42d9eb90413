#!/usr/bin/env bash
# A three-node blobnode group in Docker containers (deploy/docker-compose.yml).
#
#   scripts/cluster.sh up       build the static binary and the image, make the
#                               cluster secret if missing, start the group, and
#                               return once it has a leader and every node is
#                               ready (exit 1 with the reason after
#                               BLOBNODE_UP_TIMEOUT seconds, default 120)
#   scripts/cluster.sh status   one line per node: Raft state, term, applied and
#                               commit index, leader, readiness
#   scripts/cluster.sh urls     the nodes' API URLs, one a line, in node order
#   scripts/cluster.sh logs     the nodes' logs (extra arguments go to
#                               docker-compose logs, e.g. --tail=50 node2)
#   scripts/cluster.sh down     remove the containers, the network and the
#                               volumes (every blob is gone)
#
# Needs docker and docker-compose 1.29 (not `docker compose`), go, and curl.
# The compose project is "blobnode" (BLOBNODE_PROJECT). Traffic goes to
# 127.0.0.1 and the containers only.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deploy=$root/deploy
project=${BLOBNODE_PROJECT:-blobnode}
image=blobnode:local
node_uid=65532 # the image's USER
up_timeout=${BLOBNODE_UP_TIMEOUT:-120}
nodes=(node1 node2 node3)
node_urls=(http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083)

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

compose() {
	docker-compose -p "$project" -f "$deploy/docker-compose.yml" "$@"
}

# ensure_docker checks the tools and starts the Docker engine if it is down.
ensure_docker() {
	command -v docker >/dev/null || die "docker is not installed"
	command -v docker-compose >/dev/null || die "docker-compose (1.29) is not installed"
	if docker info >/dev/null 2>&1; then
		return
	fi
	echo "cluster.sh: the Docker engine is not running: service docker start" >&2
	service docker start >/dev/null || die "service docker start failed"
	local i
	for ((i = 0; i < 30; i++)); do
		if docker info >/dev/null 2>&1; then
			return
		fi
		sleep 1
	done
	die "the Docker engine is not up 30s after service docker start"
}

# build makes the static binary on the host and the FROM scratch image.
build() {
	command -v go >/dev/null || die "go is not installed (the binary is built on the host)"
	echo "cluster.sh: building deploy/blobnode (static) and image $image" >&2
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$deploy/blobnode" ./cmd/blobnode)
	mkdir -p "$deploy/empty"
	# -q: the image id only; the legacy builder's deprecation notice goes to stderr.
	docker build -q -t "$image" "$deploy" >/dev/null
}

# make_secret writes deploy/secret (32 random bytes, hex) unless it exists,
# mode 0600, owned by the nodes' uid so that they can read it through the
# bind mount.
make_secret() {
	local f=$deploy/secret
	if [[ ! -s $f ]]; then
		echo "cluster.sh: generating the cluster secret deploy/secret" >&2
		(
			umask 077
			od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$f"
			echo >>"$f"
		)
	fi
	chmod 600 "$f"
	if [[ $(id -u) -eq 0 ]]; then
		chown "$node_uid:$node_uid" "$f"
	elif [[ $(stat -c %u "$f") != "$node_uid" ]]; then
		die "deploy/secret must belong to uid $node_uid (the nodes' user) to be readable in the containers: sudo chown $node_uid:$node_uid $f"
	fi
}

# get URL: the body of a GET, bounded; fails on no answer.
get() {
	curl -sS --connect-timeout 1 --max-time 3 "$1"
}

# field JSON KEY: the first value of KEY in compact JSON (blobnode's
# /cluster: top-level keys come first, sorted), without quotes.
field() {
	grep -o "\"$2\":[^,}]*" <<<"$1" | head -n1 | cut -d: -f2- | tr -d '"' || true
}

# leader_id JSON: the id in /cluster's "leader":{"address":...,"id":...}.
leader_id() {
	grep -o '"leader":{[^}]*}' <<<"$1" | grep -o '"id":"[^"]*"' | cut -d'"' -f4 || true
}

# readiness URL: "ready", or "not ready: CODE REASON", or "unreachable".
readiness() {
	local body code
	body=$(curl -sS --connect-timeout 1 --max-time 3 -w '\n%{http_code}' "$1/readyz" 2>/dev/null) || {
		echo "unreachable"
		return
	}
	code=${body##*$'\n'}
	body=${body%$'\n'*}
	if [[ $code == 200 ]]; then
		echo "ready"
	else
		echo "not ready: $code $(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' <<<"$body" | sed 's/^not ready: //')"
	fi
}

# group_ready prints why the group is not ready yet and fails, or succeeds
# once every node is ready and all name the same leader, which says it is
# the leader.
group_ready() {
	local i r json state leader want="" leader_state=""
	for i in "${!nodes[@]}"; do
		r=$(readiness "${node_urls[i]}")
		if [[ $r != ready ]]; then
			echo "${nodes[i]}: $r"
			return 1
		fi
		json=$(get "${node_urls[i]}/cluster" 2>&1) || {
			echo "${nodes[i]}: GET /cluster: $json"
			return 1
		}
		state=$(field "$json" state)
		leader=$(leader_id "$json")
		if [[ -z $leader ]]; then
			echo "${nodes[i]}: no leader known"
			return 1
		fi
		if [[ -n $want && $leader != "$want" ]]; then
			echo "${nodes[i]} names leader $leader, another node $want"
			return 1
		fi
		want=$leader
		if [[ $leader == "${nodes[i]}" ]]; then
			leader_state=$state
		fi
	done
	if [[ $leader_state != Leader ]]; then
		echo "$want is named leader but says it is ${leader_state:-no node of this group}"
		return 1
	fi
	echo "$want"
}

up() {
	ensure_docker
	build
	make_secret
	compose up -d
	local deadline=$((SECONDS + up_timeout)) why
	echo "cluster.sh: waiting (at most ${up_timeout}s) for a leader and every node ready" >&2
	while true; do
		if why=$(group_ready); then
			echo "cluster.sh: the group is up, leader $why" >&2
			status
			return 0
		fi
		if ((SECONDS >= deadline)); then
			echo "cluster.sh: the group is not ready after ${up_timeout}s: $why" >&2
			compose ps >&2 || true
			compose logs --no-color --tail=20 >&2 || true
			exit 1
		fi
		sleep 1
	done
}

status() {
	local i json
	for i in "${!nodes[@]}"; do
		if ! json=$(get "${node_urls[i]}/cluster" 2>/dev/null); then
			printf '%s  %s  unreachable\n' "${nodes[i]}" "${node_urls[i]}"
			continue
		fi
		printf '%s  %s  %-9s term %-3s applied %-6s commit %-6s leader %-6s %s\n' \
			"${nodes[i]}" "${node_urls[i]}" "$(field "$json" state)" "$(field "$json" term)" \
			"$(field "$json" applied_index)" "$(field "$json" commit_index)" \
			"$(leader_id "$json")" "$(readiness "${node_urls[i]}")"
	done
}

urls() {
	printf '%s\n' "${node_urls[@]}"
}

down() {
	ensure_docker
	compose down -v --remove-orphans
}

logs() {
	ensure_docker
	compose logs --no-color "$@"
}

usage() {
	echo "usage: scripts/cluster.sh up|down|status|urls|logs [docker-compose logs arguments]" >&2
	exit 2
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
up | down | status | urls) [[ $# -eq 0 ]] || usage ;;
logs) ;;
*) usage ;;
esac
"$cmd" "$@"
