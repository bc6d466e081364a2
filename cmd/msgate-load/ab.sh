#!/usr/bin/env bash
# Two versions of msgate against each other, in one run on one machine:
# what a change to msgate itself is worth, as the median of same-run
# ratios (bench.sh compares msgate with other milters instead).
#
#   bash cmd/msgate-load/ab.sh REV_A [REV_B]   # REV_B: the work tree when omitted
#
# It builds msgate at both (git worktree for a revision) and msgate-load,
# starts msgate-load dns and, for the redis backend, one redis-server on
# loopback; then runs AB_PAIRS pairs of msgate-load runs, A then B, B then
# A in the next pair, each against a msgate started afresh (the redis
# database flushed, embedded state in a new folder) with bench.sh's rules
# and workload. Around each run it reads the CPU ticks of msgate and Redis
# from /proc. It prints each pair and the medians of the ratios B/A of
# msg/s and of CPU a message (msgate and Redis together). The machine is
# shared and its speed swings: only same-run ratios mean anything, and a
# few pairs do not settle a change of a few percent.
#
# Environment:
#   AB_PAIRS=N        pairs (default 10)
#   AB_MESSAGES=N     messages per run (default 10000)
#   AB_SCENARIO=SxR   sessions x recipients (default 32x3)
#   AB_BACKEND=B      redis (default), memory or embedded
#   AB_OUT=DIR        runs and logs (default /var/tmp/msgate-ab-DATE)
#
# Needs Go and git; installs redis-server from Debian when missing (as
# root). Everything it starts is stopped by its pid.
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=benchlib.sh
. cmd/msgate-load/benchlib.sh

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: ab.sh REV_A [REV_B]" >&2; exit 2; }
pairs=${AB_PAIRS:-10}
messages=${AB_MESSAGES:-10000}
scenario=${AB_SCENARIO:-32x3}
backend=${AB_BACKEND:-redis}
[[ $scenario =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || { echo "AB_SCENARIO: $scenario is not SESSIONSxRCPTS" >&2; exit 2; }
sessions=${BASH_REMATCH[1]} rcpts=${BASH_REMATCH[2]}
case $backend in redis | memory | embedded) ;; *) echo "AB_BACKEND: $backend is not redis, memory or embedded" >&2; exit 2 ;; esac
out=${AB_OUT:-/var/tmp/msgate-ab-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/logs"
work=$(mktemp -d /var/tmp/msgate-ab-work.XXXXXX)
pids=()
trees=()
cleanup() {
	local status=$? i t
	set +e
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop "${pids[$i]}"
	done
	for t in "${trees[@]}"; do
		git worktree remove --force "$t" >/dev/null 2>&1
	done
	restore_policy
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT

# build NAME REV: msgate at REV (the work tree when REV is empty).
build() {
	local name=$1 rev=$2 src=.
	if [ -n "$rev" ]; then
		src=$work/tree-$name
		git worktree add -q --detach "$src" "$rev"
		trees+=("$src")
	fi
	(cd "$src" && go build -o "$work/msgate-$name" ./cmd/msgate)
	echo "$name: $(cd "$src" && git log -1 --format='%h %s' | cut -c1-72)$([ -z "$rev" ] && ! git diff --quiet && echo ' (and uncommitted changes)')" | tee -a "$out/versions.txt" >&2
}
log "building"
build A "$1"
build B "${2:-}"
go build -o "$work/msgate-load" ./cmd/msgate-load

dns_port=$(free_port)
"$work/msgate-load" dns -listen "127.0.0.1:$dns_port" -m365 "$m365_domains" >"$work/dns.log" 2>&1 &
pids+=("$!")
sleep 0.3 # it answers on UDP: no port to wait for
kill -0 "$!" 2>/dev/null || { log "msgate-load dns did not start: $(cat "$work/dns.log")"; exit 1; }
redis_port=0 redis_pid=0
if [ "$backend" = redis ]; then
	ensure_packages redis-server || exit 1
	redis_port=$(free_port)
	mkdir -p "$work/redis"
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly no \
		--daemonize no --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
	redis_pid=$!
	pids+=("$redis_pid")
	wait_port "$redis_port" "$redis_pid" 10 || { log "redis-server did not start"; exit 1; }
fi

hz=$(getconf CLK_TCK)
ticks() { [ "$1" = 0 ] && echo 0 || awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME SEQ: one msgate-load run against a fresh msgate-NAME; prints
# "msg/s cpu-us-per-message".
run() {
	local name=$1 seq=$2 port admin dir pid m0 r0 m1 r1 rate
	port=$(free_port)
	admin=$(free_port)
	dir=$work/run-$seq-$name
	mkdir -p "$dir"
	[ "$backend" = redis ] && redis-cli -p "$redis_port" -n 1 flushdb >/dev/null
	local url=""
	[ "$backend" = redis ] && url=redis://127.0.0.1:$redis_port/1
	bench_config "inet:127.0.0.1:$port" "$admin" "$backend" "$dir/state/state.db" "$url" "$dns_port" "$secret" >"$dir/msgate.toml"
	"$work/msgate-$name" serve -config "$dir/msgate.toml" >"$dir/msgate.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_port "$port" "$pid" 30 || { log "msgate-$name did not start: $(tail -n 3 "$dir/msgate.log")"; return 1; }
	m0=$(ticks "$pid") r0=$(ticks "$redis_pid")
	"$work/msgate-load" -milter "inet:127.0.0.1:$port" -sessions "$sessions" -rcpts "$rcpts" \
		-messages "$messages" -warmup 0 -ms-fraction 0.75 \
		-ms-domains "$ms_domains" -other-domains "$other_domains" \
		-accounts 1000 -auth-fraction 1 -duration 10m -json >"$out/run-$seq-$name.json" 2>"$dir/load.log"
	m1=$(ticks "$pid") r1=$(ticks "$redis_pid")
	stop "$pid"
	rate=$(grep -o '"messages_per_second": *[0-9.]*' "$out/run-$seq-$name.json" | head -n 1 | sed 's/.*: *//')
	[ -n "$rate" ] || { log "no result from msgate-$name: $(tail -n 3 "$dir/load.log")"; return 1; }
	gzip -c "$dir/msgate.log" >"$out/logs/run-$seq-$name.log.gz"
	echo "$rate $(((m1 - m0 + r1 - r0) * 1000000 / hz / messages))"
}

secret=$(head -c 32 /dev/urandom | base64)
log "$pairs pairs of $messages messages at $scenario, $backend state"
: >"$out/pairs.txt"
for ((i = 1; i <= pairs; i++)); do
	if ((i % 2)); then
		a=$(run A "$i") b=$(run B "$i")
	else
		b=$(run B "$i") a=$(run A "$i")
	fi
	read -r ra ca <<<"$a"
	read -r rb cb <<<"$b"
	awk -v i="$i" -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" 'BEGIN {
		printf "pair %d: A %.0f msg/s %d us/msg, B %.0f msg/s %d us/msg: B/A %.3f msg/s, %.3f CPU\n", i, ra, ca, rb, cb, rb / ra, (ca > 0 ? cb / ca : 0)
	}' | tee -a "$out/pairs.txt" >&2
done
# median COLUMN: the median of the ratios in a column of pairs.txt.
median() {
	sed 's/.*B\/A \([0-9.]*\) msg\/s, \([0-9.]*\) CPU/\1 \2/' "$out/pairs.txt" | awk -v c="$1" '{print $c}' | sort -n |
		awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR]}'
}
read -r mr lo hi <<<"$(median 1)"
read -r mc _ _ <<<"$(median 2)"
echo "median B/A: msg/s $mr (pairs $lo-$hi), CPU a message (msgate and Redis) $mc" | tee "$out/summary.txt"
log "everything is in $out"
