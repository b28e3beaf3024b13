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
# All three cells run at once and each workload row is measured on every
# system in turn (the others idle meanwhile), so that the rest of a shared
# host's load falls on all three alike.
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

declare -A CPID EPS
stop_cells() {
	for sys in "${!CPID[@]}"; do
		CELL_PID="${CPID[$sys]}"
		stop_cell
	done
}
trap 'stop_cells; rm -rf "$WORK"' EXIT

start_lockd() {
	LOCKD_LOG_LEVEL=warn "$BIN/lockd" cell --dir "$WORK/lockd" --base-port 7601 >"$WORK/lockd-cell.log" 2>&1 &
	CPID[lockd]=$!
	EPS[lockd]="http://127.0.0.1:7601,http://127.0.0.1:7602,http://127.0.0.1:7603,http://127.0.0.1:7604,http://127.0.0.1:7605"
	for _ in $(seq 1 300); do
		curl -sf -m 1 http://127.0.0.1:7601/v1/cluster 2>/dev/null | grep -q '"leader":"[0-9]' && return 0
		kill -0 "${CPID[lockd]}" 2>/dev/null || break
		sleep 0.2
	done
	log "lockd cell did not come up"
	tail -n 20 "$WORK/lockd-cell.log" >&2
	return 1
}

start_etcd() {
	"$BIN/etcdref" cell --dir "$WORK/etcd" --base-port 23790 --members 5 --ready-file "$WORK/etcd.ready" \
		--parent-pid $$ >/dev/null 2>"$WORK/etcd-cell.log" &
	CPID[etcd]=$!
	wait_ready "$WORK/etcd.ready" "${CPID[etcd]}" 90 || { log "etcd cell did not come up"; return 1; }
	EPS[etcd]="$(cat "$WORK/etcd.ready")"
}

start_zk() {
	if [[ ! -d /usr/share/zookeeper ]]; then
		log "installing zookeeper with apt-get"
		{ timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq zookeeper; } >&2 ||
			{ log "apt-get install zookeeper failed"; return 1; }
	fi
	"$BIN/zkref" cell --dir "$WORK/zk" --base-port 24790 --members 5 --ready-file "$WORK/zk.ready" \
		--parent-pid $$ >/dev/null 2>"$WORK/zk-cell.log" &
	CPID[zk]=$!
	wait_ready "$WORK/zk.ready" "${CPID[zk]}" 120 || { log "zk ensemble did not come up"; return 1; }
	EPS[zk]="$(cat "$WORK/zk.ready")"
	if ((WARMUP > 0)); then # the JVMs reach steady speed only after the JIT warmed up
		timeout 60 "$BIN/zkref" bench --endpoints "${EPS[zk]}" --workload put --clients 16 --duration "$WARMUP" >/dev/null
		timeout 60 "$BIN/zkref" bench --endpoints "${EPS[zk]}" --workload lock --clients 16 --duration "$WARMUP" >/dev/null
	fi
}

# bench SYS ARGS...: one measurement of SYS, its JSON line to SYS.jsonl.
bench() {
	local sys="$1"
	shift
	if ! kill -0 "${CPID[$sys]:-0}" 2>/dev/null; then
		log "$sys: cell is gone; skipping $*"
		RC=1
		return
	fi
	local cmd
	case "$sys" in
	lockd) cmd=("$BIN/lockd-bench" --json --quiet) ;;
	etcd) cmd=("$BIN/etcdref" bench) ;;
	zk) cmd=("$BIN/zkref" bench) ;;
	esac
	log "$sys: $*"
	timeout -k 5 $((DURATION + 180)) "${cmd[@]}" --endpoints "${EPS[$sys]}" --duration "$DURATION" "$@" \
		>>"$OUT/$sys.jsonl" || { log "$sys: $* failed"; RC=1; }
}

failover() {
	local sys="$1"
	log "$sys: failover, $KILLS kills"
	case "$sys" in
	lockd) # on a cell of its own, which the bench starts and stops
		timeout -k 5 $((KILLS * 60 + 120)) "$BIN/lockd-bench" --json --workload failover --kills "$KILLS" \
			--lockd "$BIN/lockd" --base-port 7901 --local-dir "$WORK/lockd-failover" >>"$OUT/lockd.jsonl" ;;
	etcd)
		timeout -k 5 $((KILLS * 60 + 60)) "$BIN/etcdref" failover --endpoints "${EPS[etcd]}" --cell-dir "$WORK/etcd" \
			--kills "$KILLS" --settle 3s >>"$OUT/etcd.jsonl" ;;
	zk)
		timeout -k 5 $((KILLS * 60 + 60)) "$BIN/zkref" failover --endpoints "${EPS[zk]}" --cell-dir "$WORK/zk" \
			--kills "$KILLS" --settle 3s >>"$OUT/zk.jsonl" ;;
	esac || { log "$sys failover failed"; RC=1; }
}

# All the cells run at once (idle but for the one being measured), and each
# workload row is measured on every system in turn, so that the other load
# of a shared host drifts over all three alike.
UP=()
for sys in $SYSTEMS; do
	case "$sys" in
	lockd | etcd | zk) ;;
	*) log "unknown system $sys"; RC=1; continue ;;
	esac
	: >"$OUT/$sys.jsonl"
	log "$sys: starting a five-member cell"
	if "start_$sys"; then UP+=("$sys"); else RC=1; fi
done
rows=()
for c in $COUNTS; do rows+=("--workload put --clients $c"); done
for c in $COUNTS; do rows+=("--workload lock --clients $c --keys $c"); done
rows+=("--workload lock --clients 16 --keys 1" "--workload elect --clients 4")
for row in "${rows[@]}"; do
	for sys in "${UP[@]}"; do
		# shellcheck disable=SC2086 # a row is words
		bench "$sys" $row
	done
done
for sys in "${UP[@]}"; do failover "$sys"; done
stop_cells

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
