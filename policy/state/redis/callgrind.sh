#!/usr/bin/env bash
# The instructions redis-server spends per message of BenchmarkMessage,
# counted by callgrind: repeatable for the same Redis and the same scripts,
# whatever else the machine does, so two versions of the scripts compare
# without the noise of timing them.
#
#   bash policy/state/redis/callgrind.sh            # 3,000 messages
#   CG_MESSAGES=N bash policy/state/redis/callgrind.sh
#
# Needs valgrind and redis-server (Debian's); starts redis-server under
# callgrind on a free loopback port, warms it up (scripts loaded, keys
# made) with 500 messages, zeroes the counts, runs the benchmark, dumps
# the counts and stops Redis by its pid. Prints instructions per message.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=../../../cmd/msgate-load/benchlib.sh
. ../../../cmd/msgate-load/benchlib.sh
n=${CG_MESSAGES:-3000}
for p in valgrind callgrind_control redis-server; do
	command -v "$p" >/dev/null || { echo "callgrind.sh: $p is missing (apt-get install valgrind redis-server)" >&2; exit 2; }
done
work=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
port=$(free_port)
go test -c -o "$work/redis.test" .
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
	redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no >"$work/valgrind.log" 2>&1 &
pid=$!
for _ in $(seq 150); do
	redis-cli -p "$port" ping >/dev/null 2>&1 && break
	sleep 0.2
done
bench() {
	MSGATE_BENCH_REDIS=127.0.0.1:$port "$work/redis.test" -test.run '^$' -test.bench '^BenchmarkMessage$' -test.benchtime "$1x"
}
bench 500 >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
bench "$n" | grep '^Benchmark'
callgrind_control -d "$pid" >/dev/null 2>&1
ir=$(awk '/^summary:/ {print $2}' "$work"/cg.out.*)
echo "redis-server: $((ir / n)) instructions a message ($n messages)"
