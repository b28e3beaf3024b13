#!/usr/bin/env bash
# cell-docker.sh: a five-replica lockd cell in Docker, one container per
# replica, each with its own fixed address on a private bridge network (the
# cell network: Paxos, gossip and replica-to-replica HTTP) and its own named
# volume. A second bridge network (the client network) only carries the
# client ports published on the host's 127.0.0.1, so a replica cut off from
# the cell network stays reachable by clients, as a partitioned server would.
#
#   configs/cell-docker.sh up            create (or start) the cell and wait for a leader
#   configs/cell-docker.sh status        containers, health, addresses and the cell's view
#   configs/cell-docker.sh down          remove containers and network, keep the volumes
#   configs/cell-docker.sh down -v       ... and delete the volumes (all data)
#
# Operator and drill verbs on replica N (1..5):
#   kill N        docker kill (SIGKILL)          stop N       docker stop (SIGTERM)
#   start N       start it again on its volume   replace N    wipe its volume and start it
#                                                             again with the same id and no
#                                                             bootstrap: it catches up and rejoins
#   partition N   cut it off the cell network    heal N       reconnect it, same address
#                 (clients still reach it)
#   logs N        its log                         port N      its client address on the host
#
# Settings (environment):
#   LOCKD_DOCKER_NAME        name prefix of containers, network, volumes [lockd]
#   LOCKD_DOCKER_IMAGE       image [lockd:dev] (make docker-image builds it)
#   LOCKD_DOCKER_SUBNET      the cell network, a /24 [172.28.0.0/24]; replica N is .1N
#   LOCKD_DOCKER_CLIENT_SUBNET  the client network, a /24 [172.28.1.0/24]; replica N is .1N
#   LOCKD_DOCKER_HOST_PORT   host port of replica 1's client API; N gets +N-1 [17001]
#   LOCKD_DOCKER_HOST_PORTS  or five comma-separated host ports (overrides the above)
#   LOCKD_DOCKER_CELL        the cell name [docker]: node paths are /ls/<cell>/...
#   LOCKD_DOCKER_CONFIG      optional JSON config file mounted read-only into every replica
#                            (timing, auth, tls...; env settings still override it)
#   LOCKD_DOCKER_LABELS      extra labels for everything created, space-separated k=v
#   LOCKD_LOG_LEVEL          replica log level [info]
#
# Without LOCKD_DOCKER_CONFIG the cell runs open (LOCKD_AUTH_DISABLED=true):
# lockd refuses non-loopback listeners without auth and TLS unless told so on
# purpose, and this cell is a development and drill cell whose networks are
# private and whose client ports bind 127.0.0.1 only. Give a config file with
# auth (and tls) to run it closed.
#
# Everything created carries the label io.lockd.cell=<name>. The networks
# are the containers' own: no traffic leaves them except the published
# client ports on 127.0.0.1. Dashboard: http://127.0.0.1:17001/ui/ (any
# replica; its links to other replicas use cell-network addresses, which a
# Linux host reaches directly).
set -euo pipefail

NAME=${LOCKD_DOCKER_NAME:-lockd}
IMAGE=${LOCKD_DOCKER_IMAGE:-lockd:dev}
SUBNET=${LOCKD_DOCKER_SUBNET:-172.28.0.0/24}
CLIENT_SUBNET=${LOCKD_DOCKER_CLIENT_SUBNET:-172.28.1.0/24}
HOST_PORT=${LOCKD_DOCKER_HOST_PORT:-17001}
HOST_PORTS=${LOCKD_DOCKER_HOST_PORTS:-}
CELL=${LOCKD_DOCKER_CELL:-docker}
CONFIG=${LOCKD_DOCKER_CONFIG:-}
LABELS=${LOCKD_DOCKER_LABELS:-}
LOG_LEVEL=${LOCKD_LOG_LEVEL:-info}
N=5
NET="$NAME-net"
CNET="$NAME-clients"

die() { echo "cell-docker: $*" >&2; exit 1; }

[[ $SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die "LOCKD_DOCKER_SUBNET=$SUBNET: want a.b.c.0/24"
PREFIX=${BASH_REMATCH[1]}
[[ $CLIENT_SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die "LOCKD_DOCKER_CLIENT_SUBNET=$CLIENT_SUBNET: want a.b.c.0/24"
CPREFIX=${BASH_REMATCH[1]}
[[ $PREFIX != "$CPREFIX" ]] || die "the cell and client subnets must differ"
if [[ -n $HOST_PORTS ]]; then
	IFS=, read -r -a PORTS <<<"$HOST_PORTS"
	((${#PORTS[@]} == N)) || die "LOCKD_DOCKER_HOST_PORTS: want $N ports, got '$HOST_PORTS'"
else
	PORTS=()
	for ((i = 0; i < N; i++)); do PORTS+=($((HOST_PORT + i))); done
fi

container() { echo "$NAME-r$1"; }
volume() { echo "$NAME-data-r$1"; }
ip() { echo "$PREFIX.$((10 + $1))"; }
cip() { echo "$CPREFIX.$((10 + $1))"; }
hostport() { echo "${PORTS[$(($1 - 1))]}"; }

label_args() {
	local l
	echo "--label io.lockd.cell=$NAME"
	for l in $LABELS; do echo "--label $l"; done
}

# replicas: the LOCKD_REPLICAS value, the same for every replica.
replicas() {
	local i spec=""
	for ((i = 1; i <= N; i++)); do
		spec+="$i=$(ip "$i"):7001,$(ip "$i"):7101,$(ip "$i"):7201;"
	done
	echo "${spec%;}"
}

checkid() { [[ ${1:-} =~ ^[1-5]$ ]] || die "want a replica id 1..$N, got '${1:-}'"; }
exists() { docker "$1" inspect "$2" >/dev/null 2>&1; }
running() { [[ $(docker container inspect -f '{{.State.Running}}' "$(container "$1")" 2>/dev/null) == true ]]; }

ensure_networks() {
	# shellcheck disable=SC2046
	exists network "$NET" || docker network create --driver bridge --subnet "$SUBNET" --gateway "$PREFIX.1" \
		$(label_args) "$NET" >/dev/null
	# shellcheck disable=SC2046
	exists network "$CNET" || docker network create --driver bridge --subnet "$CLIENT_SUBNET" --gateway "$CPREFIX.1" \
		$(label_args) "$CNET" >/dev/null
}

# create_replica N BOOTSTRAP: create and start replica N's container on its
# volume (created if missing).
create_replica() {
	local i=$1 bootstrap=$2 args=()
	exists volume "$(volume "$i")" || {
		# shellcheck disable=SC2046
		docker volume create $(label_args) "$(volume "$i")" >/dev/null
	}
	if [[ -n $CONFIG ]]; then
		[[ -r $CONFIG ]] || die "LOCKD_DOCKER_CONFIG=$CONFIG: not readable"
		args+=(-v "$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG"):/etc/lockd/lockd.json:ro")
	else
		args+=(-e LOCKD_AUTH_DISABLED=true)
	fi
	# shellcheck disable=SC2046
	docker create --name "$(container "$i")" --hostname "$(container "$i")" \
		$(label_args) --label "io.lockd.replica=$i" \
		--network "$NET" --ip "$(ip "$i")" \
		-p "127.0.0.1:$(hostport "$i"):7001" \
		-v "$(volume "$i"):/data" \
		-e LOCKD_CELL="$CELL" -e LOCKD_ID="$i" -e LOCKD_BOOTSTRAP="$bootstrap" \
		-e LOCKD_REPLICAS="$(replicas)" -e LOCKD_LOG_LEVEL="$LOG_LEVEL" \
		"${args[@]}" "$IMAGE" serve ${CONFIG:+--config /etc/lockd/lockd.json} >/dev/null
	docker network connect --ip "$(cip "$i")" "$CNET" "$(container "$i")"
	docker start "$(container "$i")" >/dev/null
}

# wait_leader: until some replica's /v1/cluster names a leader (60 s).
wait_leader() {
	local deadline=$((SECONDS + 60)) i body
	while ((SECONDS < deadline)); do
		for ((i = 1; i <= N; i++)); do
			if ! running "$i"; then
				docker logs --tail 20 "$(container "$i")" >&2 || true
				die "replica $i exited (its last log lines are above)"
			fi
		done
		for ((i = 1; i <= N; i++)); do
			body=$(curl -fsS -m 2 "http://127.0.0.1:$(hostport "$i")/v1/cluster" 2>/dev/null) || continue
			if [[ $body =~ \"leader\":\"([0-9]+)\" ]]; then
				echo "leader: replica ${BASH_REMATCH[1]}; dashboard: http://127.0.0.1:$(hostport "$i")/ui/"
				return 0
			fi
		done
		sleep 0.5
	done
	die "no leader within 60 s; see: $0 logs N"
}

cmd_up() {
	docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: run 'make docker-image' first"
	local i fresh=true
	# A new cell bootstraps; a cell that has any volume already does not, so
	# that a replica whose volume is missing comes back as a recovering
	# replica (same id, catches up from the leader) and never as a fresh
	# member that forgot its promises.
	for ((i = 1; i <= N; i++)); do
		exists volume "$(volume "$i")" && fresh=false
	done
	ensure_networks
	for ((i = 1; i <= N; i++)); do
		if exists container "$(container "$i")"; then
			running "$i" || docker start "$(container "$i")" >/dev/null
		else
			create_replica "$i" "$fresh"
		fi
	done
	echo "cell $CELL: ${N} replicas on $NET ($SUBNET), clients on 127.0.0.1:${PORTS[*]} (via $CNET)"
	command -v curl >/dev/null && wait_leader || true
}

cmd_down() {
	local i
	for ((i = 1; i <= N; i++)); do
		exists container "$(container "$i")" && docker rm -f -v "$(container "$i")" >/dev/null
	done
	exists network "$NET" && docker network rm "$NET" >/dev/null
	exists network "$CNET" && docker network rm "$CNET" >/dev/null
	if [[ ${1:-} == -v || ${1:-} == --volumes ]]; then
		for ((i = 1; i <= N; i++)); do
			exists volume "$(volume "$i")" && docker volume rm "$(volume "$i")" >/dev/null
		done
		echo "removed $NAME: containers, network and volumes"
	else
		echo "removed $NAME containers and network; volumes kept (down -v deletes them)"
	fi
}

cmd_status() {
	local i state body
	printf '%-4s %-18s %-28s %-15s %s\n' ID CONTAINER STATE ADDRESS HOST
	for ((i = 1; i <= N; i++)); do
		state=$(docker container inspect -f '{{.State.Status}}{{if .State.Health}} ({{.State.Health.Status}}){{end}}' \
			"$(container "$i")" 2>/dev/null || echo absent)
		printf '%-4s %-18s %-28s %-15s %s\n' "$i" "$(container "$i")" "$state" "$(ip "$i")" "127.0.0.1:$(hostport "$i")"
	done
	command -v curl >/dev/null || return 0
	for ((i = 1; i <= N; i++)); do
		body=$(curl -fsS -m 2 "http://127.0.0.1:$(hostport "$i")/v1/cluster" 2>/dev/null) || continue
		echo "cell view from replica $i:"
		if command -v jq >/dev/null; then
			jq -r '"  leader \(.leader) ballot \(.ballot)",
				(.replicas[] | "  \(.id) \(.role) up=\(.up) applied=\(.applied_index) lag=\(.lag) gossip=\(.member_status)")' <<<"$body"
		else
			echo "  $body"
		fi
		return 0
	done
	echo "no replica answers on 127.0.0.1"
}

cmd_replace() {
	local i=$1
	exists container "$(container "$i")" && docker rm -f -v "$(container "$i")" >/dev/null
	exists volume "$(volume "$i")" && docker volume rm "$(volume "$i")" >/dev/null
	ensure_networks
	create_replica "$i" false
	echo "replica $i restarted on an empty volume: it is recovering and rejoins once caught up"
}

verb=${1:-}
shift || true
case $verb in
up) cmd_up ;;
down) cmd_down "${1:-}" ;;
status) cmd_status ;;
kill) checkid "${1:-}"; docker kill "$(container "$1")" >/dev/null ;;
stop) checkid "${1:-}"; docker stop "$(container "$1")" >/dev/null ;;
start) checkid "${1:-}"; docker start "$(container "$1")" >/dev/null ;;
replace) checkid "${1:-}"; cmd_replace "$1" ;;
partition) checkid "${1:-}"; docker network disconnect "$NET" "$(container "$1")" ;;
heal) checkid "${1:-}"; docker network connect --ip "$(ip "$1")" "$NET" "$(container "$1")" ;;
logs) checkid "${1:-}"; docker logs "$(container "$1")" ;;
port) checkid "${1:-}"; echo "127.0.0.1:$(hostport "$1")" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; [[ -z $verb || $verb == help || $verb == -h ]] ;;
esac
