#!/usr/bin/env bash
# msgate's benchmark: msgate serve against the references it is compared
# with, measured in one run on one machine, so that every figure comes with
# its ratio to references measured seconds earlier.
#
#   bash cmd/msgate-load/bench.sh                 # 20,000 messages per run, 3 repetitions
#   BENCH_QUICK=1 bash cmd/msgate-load/bench.sh   # CI: 2,000 messages, 1 repetition
#
# It builds msgate and msgate-load and starts, each on loopback:
#   null-full      go-milter v0.5 accepting everything, every stage negotiated
#   null-envelope  the same negotiating away HELO, headers, end of headers,
#                  body, unknown and DATA, as msgate does: the library's floor
#                  for an envelope policy
#   rspamd         rspamd 3.4 (Debian), milter proxy (rspamd_proxy, milter =
#                  yes, self_scan = yes, one worker per CPU) with only the
#                  ratelimit module loaded: two buckets per SASL login
#                  (hourly, daily, far above the load) in a Redis of its own
#   msgate         msgate serve: embedded durable state, hourly and daily
#                  limits and the Microsoft cap on (far above the load),
#                  stamping on ([feedback] secret)
#   msgate-memory  the same on the memory backend (nothing durable): what
#                  the disk costs, measured in the same run
#   msgate-redis   the same on the redis backend, on rspamd's Redis (its
#                  own database) when rspamd runs: shared state against
#                  rspamd's on the same server
# then drives them with msgate-load: 32 sessions x 1 recipient, 32 sessions
# x 3 recipients, and 1 session x 1 recipient (for latency), every session
# reusing its connection. Each repetition runs each scenario against the
# servers back to back, so that a burst of other work on the machine
# hits them alike; the table gives medians over the repetitions and the
# ratios of msgate's medians to the references'. Servers that wait their
# turn are idle. Around each run against msgate the script reads its
# /metrics: for the 1-session runs it prints how many of the state log's
# fdatasyncs (one per message with a Microsoft recipient) took over 0.5 ms
# and over 1 ms, the disk's share of the latency tail. Everything (runs,
# summary, logs) goes to BENCH_OUT.
#
# The workload: 1,000 accounts, every session authenticated (rspamd's
# buckets key on the login, msgate's account is the login), 75% of the
# recipients at Microsoft consumer domains or a Microsoft 365 tenant, the
# rest at other domains; 5 headers and a 1 KiB body. Recipient domains that
# are not on msgate's built-in list are resolved through `msgate-load dns`
# on loopback (MX answers with a one-hour TTL), which msgate and rspamd
# both use as their resolver: no query leaves the machine, and msgate takes
# the path of a real deployment (an MX lookup once, cache hits after).
#
# Both milters log at their shipped level (info) to files. Redis keeps no
# snapshots (--save ""), which favours rspamd; msgate's embedded store syncs
# every end of message to disk, so its state goes to /var/tmp, not tmpfs.
#
# Environment:
#   BENCH_QUICK=1        2,000 messages, 1 repetition
#   BENCH_MESSAGES=N     messages per run (default 20000)
#   BENCH_REPS=N         repetitions (default 3)
#   BENCH_MS_FRACTION=F  share of Microsoft recipients (default 0.75)
#   BENCH_ACCOUNTS=N     sending accounts (default 1000)
#   BENCH_RSPAMD=0       leave rspamd out
#   BENCH_MEMORY=0       leave out msgate on its memory backend
#   BENCH_REDIS=0        leave out msgate on the redis backend
#   BENCH_SCENARIOS="S"  the scenarios, SESSIONSxRCPTS (default "32x1 32x3 1x1")
#   BENCH_PROFILE=1      also profile msgate's daemon (go test -cpuprofile
#                        around cmd/msgate's BenchmarkServe) and print the top
#   BENCH_OUT=DIR        results (default /var/tmp/msgate-bench-DATE)
#   BENCH_WAIT_QUIET=S   first wait up to S seconds for a load average below 0.5
#
# Needs Go; installs rspamd and redis-server from Debian when they are
# missing (as root); if that fails it says so and goes on without rspamd.
# Every process it starts is stopped by its pid when it ends, also on
# failure or interrupt. Exit status: 0 when every run completed, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=benchlib.sh
. cmd/msgate-load/benchlib.sh

quick=${BENCH_QUICK:-0}
messages=${BENCH_MESSAGES:-20000}
reps=${BENCH_REPS:-3}
if [ "$quick" = 1 ]; then
	messages=${BENCH_MESSAGES:-2000}
	reps=${BENCH_REPS:-1}
fi
warmup=$((messages / 10))
ms_fraction=${BENCH_MS_FRACTION:-0.75}
accounts=${BENCH_ACCOUNTS:-1000}
read -r -a scenarios <<<"${BENCH_SCENARIOS:-32x1 32x3 1x1}"
for s in "${scenarios[@]}"; do
	[[ $s =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "BENCH_SCENARIOS: $s is not SESSIONSxRCPTS (e.g. 32x1)" >&2; exit 2; }
done
out=${BENCH_OUT:-/var/tmp/msgate-bench-$(date -u +%Y%m%dT%H%M%SZ)}

work=$(mktemp -d /var/tmp/msgate-bench-work.XXXXXX)
mkdir -p "$out/runs" "$out/logs" "$work/bin"
load=$work/bin/msgate-load
failures=0
seq=0 # runs are numbered in the order they ran
pids=()
# The servers under load, in the order of the table.
server_keys=()
server_names=()
server_ports=()

cleanup() {
	local status=$? f name i
	set +e
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop "${pids[$i]}"
	done
	restore_policy
	while IFS= read -r f; do
		name=${f#"$work"/}
		gzip -c "$f" >"$out/logs/${name//\//-}.gz"
	done < <(find "$work" -name '*.log' -type f)
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# add_server KEY "NAME" PORT puts a running server in the table.
add_server() {
	server_keys+=("$1")
	server_names+=("$2")
	server_ports+=("$3")
}

# run_one SERVER-INDEX SCENARIO REP: one run of msgate-load, its JSON kept.
run_one() {
	local i=$1 scenario=$2 rep=$3 sessions rcpts sname file status=0
	local server=${server_keys[$i]}
	sessions=${scenario%x*}
	rcpts=${scenario#*x}
	case $scenario in
	1x1) sname="1 session: p50 / p99" ;;
	*) sname="$sessions sessions, $rcpts rcpt" ;;
	esac
	seq=$((seq + 1))
	file=$out/runs/$(printf '%03d-%s-%s-%d.json' "$seq" "$server" "$scenario" "$rep")
	local syncs_before=""
	if [ "$server" = msgate ]; then
		syncs_before=$(scrape_syncs)
	fi
	"$load" -milter "inet:127.0.0.1:${server_ports[$i]}" -sessions "$sessions" -rcpts "$rcpts" \
		-messages "$messages" -warmup "$warmup" -ms-fraction "$ms_fraction" \
		-ms-domains "$ms_domains" -other-domains "$other_domains" \
		-accounts "$accounts" -auth-fraction 1 -duration 10m -json \
		-tag "server=$server" -tag "server_name=${server_names[$i]}" \
		-tag "scenario=$scenario" -tag "scenario_name=$sname" >"$file" 2>"$file.err" || status=$?
	if [ "$status" -ne 0 ]; then
		log "$server $scenario run $rep failed (exit $status): $(tail -n 3 "$file.err")"
		failures=$((failures + 1))
		[ -s "$file" ] || rm -f "$file"
		return
	fi
	rm -f "$file.err"
	log "$(printf '%-13s %-5s run %d: %s msg/s' "$server" "$scenario" "$rep" \
		"$(sed -n 's/^  "messages_per_second": \([0-9]*\).*/\1/p' "$file")")"
	if [ -n "$syncs_before" ]; then
		echo "$scenario $rep $syncs_before $(scrape_syncs)" >>"$out/syncs.txt"
	fi
}

# scrape_syncs prints, from msgate's /metrics, how many fdatasyncs of its
# log there were in all, and how many took at most 0.5 ms and 1 ms.
scrape_syncs() {
	local line
	{
		exec 3<>"/dev/tcp/127.0.0.1/$msgate_admin_port" &&
			printf 'GET /metrics HTTP/1.0\r\nHost: msgate\r\n\r\n' >&3 &&
			awk '/^msgate_state_sync_duration_seconds_count /{n=$2}
				/^msgate_state_sync_duration_seconds_bucket\{le="0.0005"\}/{h=$2}
				/^msgate_state_sync_duration_seconds_bucket\{le="0.001"\}/{m=$2}
				END{if (n == "") exit 1; print n, h, m}' <&3
	} 2>/dev/null || echo "0 0 0"
	exec 3<&- 2>/dev/null || true
}

# On a shared machine, wait for the others to finish first.
if [ -n "${BENCH_WAIT_QUIET:-}" ]; then
	log "waiting up to ${BENCH_WAIT_QUIET}s for the load average to fall below 0.5"
	for _ in $(seq $(((BENCH_WAIT_QUIET + 9) / 10))); do
		awk '{exit !($1 < 0.5)}' /proc/loadavg && break
		sleep 10
	done
fi

log "environment"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpus: $(nproc); $(uname -sr)"
	go version
	echo "msgate: $(git rev-parse --short HEAD 2>/dev/null || echo "?")$(git diff --quiet HEAD 2>/dev/null || echo " with uncommitted changes")"
	echo "messages per run: $messages after $warmup warm-up; repetitions: $reps"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "busiest processes before:"
	ps -eo pcpu,pid,comm --sort=-pcpu | head -n 6
} | tee "$out/environment.txt" >&2
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
	log "warning: the machine is busy (load average $(cut -d' ' -f1 /proc/loadavg)); figures will be low and noisy"
fi

log "building msgate and msgate-load"
go build -o "$work/bin/msgate" ./cmd/msgate
go build -o "$load" ./cmd/msgate-load

log "starting a DNS server on loopback for MX lookups"
dns_port=""
for _ in 1 2 3 4 5; do
	p=$((20000 + RANDOM % 30000))
	"$load" dns -listen "127.0.0.1:$p" -m365 "$m365_domains" >"$work/dns.log" 2>&1 &
	pid=$!
	sleep 0.3
	if kill -0 "$pid" 2>/dev/null; then
		pids+=("$pid")
		dns_port=$p
		break
	fi
	wait "$pid" 2>/dev/null || true
done
[ -n "$dns_port" ] || { log "cannot start the DNS server: $(cat "$work/dns.log")"; exit 1; }

# rspamd takes a while to start (it compiles its TLD list): first.
rspamd_pid=""
if [ "${BENCH_RSPAMD:-1}" = 0 ]; then
	log "rspamd left out (BENCH_RSPAMD=0)"
elif ! ensure_packages rspamd redis-server; then
	log "rspamd or redis-server cannot be installed: going on without rspamd"
else
	rdir=$work/rspamd
	mkdir -p "$rdir/redis" "$rdir/tmp"
	redis_port=$(free_port)
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$rdir/redis" --save "" --appendonly no \
		--daemonize no --logfile "$rdir/redis.log" >/dev/null 2>&1 &
	redis_pid=$!
	pids+=("$redis_pid")
	rspamd_port=$(free_port)
	workers=$(nproc)
	cat >"$rdir/rspamd.conf" <<EOF
# Only the ratelimit module: no C modules (filters), no rules (no lua =),
# one Lua plugin; no controller or normal worker: the milter proxy scans
# by itself.
options {
  pidfile = "$rdir/rspamd.pid";
  filters = "";
  dns { nameserver = ["127.0.0.1:$dns_port"]; timeout = 1s; retransmits = 1; }
  control_socket = "$rdir/rspamd.sock mode=0600";
  cache_file = "$rdir/symbols.cache";
  tempdir = "$rdir/tmp";
}
logging {
  type = "file";
  filename = "$rdir/rspamd.log";
  level = "info";
}
redis { servers = "127.0.0.1:$redis_port"; }
ratelimit {
  rates {
    account_hourly = { selector = "id('h');user.lower"; bucket = { burst = 1000000000; rate = "1g / 1h"; } }
    account_daily = { selector = "id('d');user.lower"; bucket = { burst = 1000000000; rate = "1g / 1d"; } }
  }
}
modules { path = "/usr/share/rspamd/plugins/ratelimit.lua"; }
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:$rspamd_port";
  milter = yes;
  self_scan = yes;
  timeout = 120s;
  count = $workers;
  upstream "local" { default = yes; self_scan = yes; }
}
EOF
	if id _rspamd >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
		chown -R _rspamd:_rspamd "$rdir"
		user_args=(-u _rspamd -g _rspamd)
	else
		user_args=(-i)
	fi
	rspamd -f -c "$rdir/rspamd.conf" "${user_args[@]}" >"$rdir/rspamd-stderr.log" 2>&1 &
	rspamd_pid=$!
	pids+=("$rspamd_pid")
	log "starting rspamd $(rspamd --version | awk '{print $NF}') on 127.0.0.1:$rspamd_port ($workers proxy workers), Redis on 127.0.0.1:$redis_port"
fi

for mode in full envelope; do
	case $mode in
	full) name="go-milter null, every stage" ;;
	envelope) name="go-milter null, envelope only" ;;
	esac
	port=$(free_port)
	"$load" null -listen "inet:127.0.0.1:$port" -mode "$mode" >"$work/null-$mode.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	if ! wait_port "$port" "$pid"; then
		log "null milter ($mode) did not start: $(cat "$work/null-$mode.log")"
		exit 1
	fi
	log "null milter ($mode) on 127.0.0.1:$port"
	add_server "null-$mode" "$name" "$port"
done

if [ -n "$rspamd_pid" ]; then
	if ! wait_port "$redis_port" "$redis_pid" 10; then
		log "redis did not start: $(tail -n 5 "$rdir/redis.log" 2>/dev/null)"
		failures=$((failures + 1))
	elif ! wait_port "$rspamd_port" "$rspamd_pid" 120; then
		log "rspamd did not start: $(tail -n 5 "$rdir/rspamd.log" "$rdir/rspamd-stderr.log" 2>/dev/null)"
		failures=$((failures + 1))
	elif ! grep -q "enabled ratelimit: account_hourly" "$rdir/rspamd.log"; then
		log "rspamd started without its ratelimit rules: $(grep -i 'ratelimit\|error' "$rdir/rspamd.log" | tail -n 5)"
		failures=$((failures + 1))
	else
		log "rspamd is up"
		add_server rspamd "rspamd 3.4, ratelimit only, Redis" "$rspamd_port"
	fi
fi

# start_msgate KEY "NAME" BACKEND ADMIN-PORT [REDIS-PORT]: msgate serve
# with the benchmark's rules on the given state backend, put in the table.
start_msgate() {
	local key=$1 name=$2 backend=$3 admin_port=$4 redis=${5:-} mdir port pid
	mdir=$work/$key
	mkdir -p "$mdir"
	port=$(free_port)
	bench_config "inet:127.0.0.1:$port" "$admin_port" "$backend" "$mdir/state/state.db" \
		"redis://127.0.0.1:${redis:-6379}/1" "$dns_port" "$secret" >"$mdir/msgate.toml"
	if [ "$backend" = embedded ] && [ "$(stat -f -c %T "$mdir")" = tmpfs ]; then
		log "warning: $mdir is on tmpfs: msgate's durable writes cost nothing there"
	fi
	"$work/bin/msgate" check -config "$mdir/msgate.toml" >&2
	"$work/bin/msgate" serve -config "$mdir/msgate.toml" >"$mdir/msgate.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	if wait_port "$port" "$pid"; then
		log "$key: msgate serve on 127.0.0.1:$port ($backend state)"
		add_server "$key" "$name" "$port"
	else
		log "$key did not start: $(tail -n 5 "$mdir/msgate.log")"
		failures=$((failures + 1))
	fi
}

secret=$(head -c 32 /dev/urandom | base64)
msgate_admin_port=$(free_port)
start_msgate msgate "msgate serve, embedded state, stamping" embedded "$msgate_admin_port"
if [ "${BENCH_MEMORY:-1}" = 1 ]; then
	start_msgate msgate-memory "msgate serve, memory state (not durable)" memory "$(free_port)"
fi
# msgate on the redis backend, on rspamd's Redis (another database) when
# rspamd runs, else on a Redis of its own: shared state against rspamd's
# on the same server.
if [ "${BENCH_REDIS:-1}" = 1 ]; then
	if [ -z "${redis_port:-}" ] && ensure_packages redis-server; then
		mkdir -p "$work/redis"
		redis_port=$(free_port)
		redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly no \
			--daemonize no --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
		pids+=("$!")
		wait_port "$redis_port" "$!" 10 || { log "redis did not start"; failures=$((failures + 1)); }
	fi
	if [ -n "${redis_port:-}" ]; then
		start_msgate msgate-redis "msgate serve, redis state (shared)" redis "$(free_port)" "$redis_port"
	fi
fi

log "running: $reps repetitions of ${scenarios[*]} against ${server_keys[*]}, $messages messages each"
for rep in $(seq "$reps"); do
	for scenario in "${scenarios[@]}"; do
		for i in "${!server_keys[@]}"; do
			run_one "$i" "$scenario" "$rep"
		done
	done
done

if [ -n "$rspamd_pid" ] && [ -n "${redis_port:-}" ]; then
	buckets=$(redis-cli -p "$redis_port" dbsize 2>/dev/null || echo "?")
	echo "rspamd ratelimit buckets in Redis after the runs: $buckets" | tee -a "$out/environment.txt" >&2
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/environment.txt"
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
	stop "${pids[$i]}"
done
pids=()

log "results"
shopt -s nullglob
runs=("$out"/runs/*.json)
if [ ${#runs[@]} -gt 0 ]; then
	"$load" table -o "$out/summary.json" -subject msgate -refs null-full,null-envelope,rspamd,msgate-memory "${runs[@]}" | tee "$out/table.md"
	if printf '%s\n' "${runs[@]}" | grep -q -- '-msgate-redis-'; then
		"$load" table -o "$out/summary-redis.json" -subject msgate-redis -refs rspamd,msgate "${runs[@]}" | tee "$out/table-redis.md"
	fi
fi
if [ -s "$out/syncs.txt" ]; then
	# One fdatasync per message at 1 session (when it has a Microsoft
	# recipient): the share over 1 ms is a floor under the share of
	# messages over 1 ms that no change to msgate's own code can lower.
	awk '$1 == "1x1" {
			n = $6 - $3; over05 = n - ($7 - $4); over1 = n - ($8 - $5)
			if (n > 0) printf "msgate 1x1 run %s: %d log fdatasyncs, %.1f%% over 0.5 ms, %.1f%% over 1 ms\n", $2, n, 100 * over05 / n, 100 * over1 / n
		}' "$out/syncs.txt" | tee "$out/syncs.md"
fi

if [ "${BENCH_PROFILE:-0}" = 1 ]; then
	log "profiling msgate's daemon: go test -bench BenchmarkServe/embedded -cpuprofile"
	go test ./cmd/msgate -run '^$' -bench 'BenchmarkServe/embedded/rcpts=1$' -benchtime "${messages}x" -count 1 \
		-cpuprofile "$out/serve-cpu.pprof" -memprofile "$out/serve-mem.pprof" -o "$out/msgate.test" | tee "$out/serve-bench.txt"
	go tool pprof -top -nodecount 40 "$out/msgate.test" "$out/serve-cpu.pprof" >"$out/serve-cpu-top.txt" 2>/dev/null
	go tool pprof -top -cum -nodecount 60 "$out/msgate.test" "$out/serve-cpu.pprof" >"$out/serve-cpu-cum.txt" 2>/dev/null
	go tool pprof -top -sample_index=alloc_space -nodecount 30 "$out/msgate.test" "$out/serve-mem.pprof" >"$out/serve-alloc-top.txt" 2>/dev/null
	head -n 30 "$out/serve-cpu-top.txt"
fi

log "everything is in $out"
if [ "$failures" -gt 0 ]; then
	log "$failures step(s) failed"
	exit 1
fi
