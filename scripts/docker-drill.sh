#!/usr/bin/env bash
# docker-drill.sh: the failure drill of a five-container lockd cell (issue #7).
#
# It runs internal/dockerdrill's TestDockerDrill verbosely: build the image
# (FROM scratch, no registry needed; an unchanged build reuses it), start a
# cell with configs/cell-docker.sh under a unique lockd-drill-<random> name
# on its own 172.28.X.0/24 networks, run a register workload and a lock
# workload from this host, then
#   1. partition the leader (docker network disconnect of the cell network;
#      clients still reach it),
#   2. docker kill the new leader,
#   3. restart it on its volume,
#   4. replace a third replica with an empty volume (same id, no bootstrap:
#      it must come back recovering and rejoin),
#   5. reconnect the first,
# and check recovery (agreed leader, all five up and healthy, none
# recovering, no lag), linearizability of the registers (porcupine), no
# double lock holders (generation order and sequencer fencing), no lost
# acknowledged write, and that all five replicas converged.
#
#   scripts/docker-drill.sh            run it (about a minute once built)
#   scripts/docker-drill.sh -count=3   extra go test flags are passed on
#
# Without a Docker engine it skips with a loud message (exit 0); set
# LOCKD_REQUIRE_DOCKER=1 to make that a failure. Everything it creates is
# removed when it ends, even when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

# The test removes its cell itself; this trap covers a test process that is
# killed first. Only this run's containers, networks and volumes are touched:
# they carry the label io.lockd.drill-run=<this run's id>.
run_id="$$-$RANDOM"
export LOCKD_DRILL_RUN=$run_id
cleanup() {
	command -v docker >/dev/null || return 0
	docker info >/dev/null 2>&1 || return 0
	local ids
	ids=$(docker ps -aq --filter "label=io.lockd.drill-run=$run_id")
	[[ -z $ids ]] || docker rm -f -v $ids >/dev/null 2>&1 || true
	ids=$(docker network ls -q --filter "label=io.lockd.drill-run=$run_id")
	[[ -z $ids ]] || docker network rm $ids >/dev/null 2>&1 || true
	ids=$(docker volume ls -q --filter "label=io.lockd.drill-run=$run_id")
	[[ -z $ids ]] || docker volume rm -f $ids >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
status=0
go test -count=1 -v -timeout 10m -run 'TestDockerDrill$' "$@" ./internal/dockerdrill/ || status=$?
echo "docker-drill: exit $status after $((SECONDS - start)) s"
exit "$status"
