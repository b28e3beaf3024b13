#!/usr/bin/env bash
# bench-compare.sh: measure lockd, etcd and ZooKeeper on this machine, one
# after the other, with the same workloads and client counts, and write a
# markdown table with the ratios lockd/etcd and lockd/ZooKeeper and SVG plots
# of throughput and p99 latency against the client count.
#
# Each system runs as a five-member cell of separate processes on 127.0.0.1
# with durable writes: lockd's own `lockd cell`, and the reference harnesses
# ../shared/bench/etcdref (etcd 3.7.3) and ../shared/bench/zkref (Debian's
# ZooKeeper, installed by apt-get if missing). Only one cell runs at a time.
#
# Usage: scripts/bench-compare.sh [OUT_DIR]     (default bench-results/<time>)
# Env:
#   DURATION   seconds per bench (5)
#   COUNTS     client counts of the put and uncontended lock series ("1 4 16 64 256")
#   KILLS      leader kills of each failover measurement (20)
#   SYSTEMS    which systems to run ("lockd etcd zk")
#   WARMUP     seconds of unreported put and lock load on the ZooKeeper
#              ensemble before its benches, for the JVMs' JIT (2; 0 skips)
#   SHARED     where the reference harnesses are (../shared/bench next to
#              the repository, else /work/shared/bench)
#   TMPDIR     where the cells' data go (the disk being measured)
# Outputs in OUT_DIR: lockd.jsonl, etcd.jsonl, zk.jsonl, fsync.jsonl,
# machine.txt, table.md, put.svg, lock.svg, and the progress in log.txt.
# Every step has a timeout; the script always stops by itself (about 15-25
# minutes with the defaults on a 2-core machine).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
DURATION="${DURATION:-5}"
COUNTS="${COUNTS:-1 4 16 64 256}"
KILLS="${KILLS:-20}"
SYSTEMS="${SYSTEMS:-lockd etcd zk}"
WARMUP="${WARMUP:-2}"
if [[ -z "${SHARED:-}" ]]; then
	SHARED="$ROOT/../shared/bench"
	[[ -d "$SHARED/etcdref" ]] || SHARED=/work/shared/bench
fi
export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")"
CELL_PID=""
RC=0
exec 3>&2 2> >(tee -a "$OUT/log.txt" >&3)

log() { echo "bench-compare: $(date -u +%H:%M:%S) $*" >&2; }

stop_cell() {
	if [[ -n "$CELL_PID" ]] && kill -0 "$CELL_PID" 2>/dev/null; then
		log "stopping cell (pid $CELL_PID)"
		kill -TERM "$CELL_PID" 2>/dev/null
		for _ in $(seq 1 300); do
			kill -0 "$CELL_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$CELL_PID" 2>/dev/null
		wait "$CELL_PID" 2>/dev/null
	fi
	CELL_PID=""
}
cleanup() {
	stop_cell
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The machine, and what else runs on it.
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $(nproc)"
	echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
	echo "memory: $(free -g | awk '/^Mem:/{print $2 " GiB"}')"
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "disk of TMPDIR: $(df -h "${TMPDIR:-/tmp}" | awk 'NR==2{print $1 " " $2}')"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "other busy processes before (pid %cpu command):"
	ps -eo pid,pcpu,args --sort=-pcpu | awk 'NR>1 && $2>5 {print "  " substr($0, 1, 150)}' | head -n 8
} >"$OUT/machine.txt"
log "results in $OUT; work dir $WORK"

# Build lockd, lockd-bench and the two harnesses.
BIN="$WORK/bin"
mkdir -p "$BIN"
build() { # dir pkg out
	(cd "$1" && CGO_ENABLED=0 timeout 900 go build -o "$3" "$2") || { log "building $2 in $1 failed"; exit 1; }
}
build "$ROOT" ./cmd/lockd "$BIN/lockd"
build "$ROOT" ./internal/bench/cmd/lockd-bench "$BIN/lockd-bench"
build "$SHARED/etcdref" . "$BIN/etcdref" # also for the fsync floor
[[ " $SYSTEMS " == *" zk "* ]] && build "$SHARED/zkref" . "$BIN/zkref"

# The disk's fsync floor (etcdref's tool; it does not depend on the system).
timeout 120 "$BIN/etcdref" fsync --dir "$WORK/fsync" >"$OUT/fsync.jsonl" || log "fsync measurement failed"
rm -rf "$WORK/fsync"

# wait_ready FILE PID SECONDS: until FILE is non-empty or PID is gone.
wait_ready() {
	for _ in $(seq 1 $(($3 * 5))); do
		[[ -s "$1" ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# run_benches NAME CMD...: the workloads, CMD given --workload, --clients,
# --duration and (lock) --keys.
run_benches() {
	local name="$1" out="$OUT/$1.jsonl"
	shift
	: >"$out"
	one() {
		if ! kill -0 "$CELL_PID" 2>/dev/null; then
			log "$name: cell is gone; skipping $*"
			RC=1
			return
		fi
		log "$name: $*"
		timeout -k 5 $((DURATION + 180)) "$@" --duration "$DURATION" >>"$out" || { log "$name: $* failed"; RC=1; }
	}
	for c in $COUNTS; do one "$@" --workload put --clients "$c"; done
	for c in $COUNTS; do one "$@" --workload lock --clients "$c" --keys "$c"; done
	one "$@" --workload lock --clients 16 --keys 1
	one "$@" --workload elect --clients 4
}

# lockd_cell: start `lockd cell` (sets CELL_PID and EP) and wait until it
# has a leader.
lockd_cell() {
	LOCKD_LOG_LEVEL=warn "$BIN/lockd" cell --dir "$WORK/lockd" --base-port 7601 >"$WORK/lockd-cell.log" 2>&1 &
	CELL_PID=$!
	EP="http://127.0.0.1:7601,http://127.0.0.1:7602,http://127.0.0.1:7603,http://127.0.0.1:7604,http://127.0.0.1:7605"
	for _ in $(seq 1 300); do
		if curl -sf -m 1 http://127.0.0.1:7601/v1/cluster 2>/dev/null | grep -q '"leader":"[0-9]'; then
			return 0
		fi
		kill -0 "$CELL_PID" 2>/dev/null || break
		sleep 0.2
	done
	log "lockd cell did not come up"
	tail -n 20 "$WORK/lockd-cell.log" >&2
	return 1
}

for sys in $SYSTEMS; do
	case "$sys" in
	lockd)
		log "lockd: starting a five-replica cell"
		if lockd_cell; then
			run_benches lockd "$BIN/lockd-bench" --json --quiet --endpoints "$EP"
		else
			RC=1
		fi
		stop_cell
		log "lockd: failover, $KILLS kills (the bench runs its own cell)"
		timeout -k 5 $((KILLS * 60 + 120)) "$BIN/lockd-bench" --json --workload failover --kills "$KILLS" \
			--lockd "$BIN/lockd" --base-port 7901 --local-dir "$WORK/lockd-failover" >>"$OUT/lockd.jsonl" ||
			{ log "lockd failover failed"; RC=1; }
		;;
	etcd)
		log "etcd: starting a five-member cell"
		"$BIN/etcdref" cell --dir "$WORK/etcd" --base-port 23790 --members 5 --ready-file "$WORK/etcd.ready" \
			--parent-pid $$ >/dev/null 2>"$WORK/etcd-cell.log" &
		CELL_PID=$!
		if wait_ready "$WORK/etcd.ready" "$CELL_PID" 90; then
			EP="$(cat "$WORK/etcd.ready")"
			run_benches etcd "$BIN/etcdref" bench --endpoints "$EP"
			log "etcd: failover, $KILLS kills"
			timeout -k 5 $((KILLS * 60 + 60)) "$BIN/etcdref" failover --endpoints "$EP" --cell-dir "$WORK/etcd" \
				--kills "$KILLS" --settle 3s >>"$OUT/etcd.jsonl" || { log "etcd failover failed"; RC=1; }
		else
			log "etcd cell did not come up"
			RC=1
		fi
		stop_cell
		;;
	zk)
		if [[ ! -d /usr/share/zookeeper ]]; then
			log "installing zookeeper with apt-get"
			{ timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq zookeeper; } >&2 ||
				{ log "apt-get install zookeeper failed"; RC=1; continue; }
		fi
		log "zk: starting a five-member ensemble"
		"$BIN/zkref" cell --dir "$WORK/zk" --base-port 24790 --members 5 --ready-file "$WORK/zk.ready" \
			--parent-pid $$ >/dev/null 2>"$WORK/zk-cell.log" &
		CELL_PID=$!
		if wait_ready "$WORK/zk.ready" "$CELL_PID" 120; then
			EP="$(cat "$WORK/zk.ready")"
			if ((WARMUP > 0)); then # the JVMs reach steady speed only after the JIT warmed up
				timeout 60 "$BIN/zkref" bench --endpoints "$EP" --workload put --clients 16 --duration "$WARMUP" >/dev/null
				timeout 60 "$BIN/zkref" bench --endpoints "$EP" --workload lock --clients 16 --duration "$WARMUP" >/dev/null
			fi
			run_benches zk "$BIN/zkref" bench --endpoints "$EP"
			log "zk: failover, $KILLS kills"
			timeout -k 5 $((KILLS * 60 + 60)) "$BIN/zkref" failover --endpoints "$EP" --cell-dir "$WORK/zk" \
				--kills "$KILLS" --settle 3s >>"$OUT/zk.jsonl" || { log "zk failover failed"; RC=1; }
		else
			log "zk ensemble did not come up"
			RC=1
		fi
		stop_cell
		;;
	*)
		log "unknown system $sys"
		RC=1
		;;
	esac
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# The table and the plots.
args=()
for s in lockd etcd zk; do
	[[ -s "$OUT/$s.jsonl" ]] && args+=(--"$s" "$OUT/$s.jsonl")
done
counts="$(echo $COUNTS | tr ' ' ',')"
"$BIN/lockd-bench" report "${args[@]}" --table "$OUT/table.md" --svg "$OUT/put.svg" --plot-workload put --counts "$counts" || RC=1
"$BIN/lockd-bench" report "${args[@]}" --table /dev/null --svg "$OUT/lock.svg" --plot-workload lock --counts "$counts" || RC=1
cat "$OUT/table.md"
log "done (exit $RC)"
exit $RC
