#!/usr/bin/env bash
# What an admin feels: Postfix's own throughput with msgate in smtpd_milters
# beside the same Postfix without it, measured in one run.
#
#   bash cmd/msgate-load/postfix-bench.sh                  # 2,000 messages a run, 3 repetitions
#   PFBENCH_QUICK=1 bash cmd/msgate-load/postfix-bench.sh  # CI: 200 messages, 1 repetition
#
# One private Postfix on loopback (the system's, reconfigured; as root)
# with one smtpd listener per server under test, identical but for
# smtpd_milters:
#   postfix          no milter: the baseline
#   null             go-milter's null milter, envelope stages only (what
#                    msgate-load's references run): what any milter costs
#                    Postfix, msgate's floor
#   msgate           msgate serve: embedded durable state, stamping on
#   msgate-unix      the same on a unix socket instead of loopback TCP
#   msgate-nostamp   the same without [feedback] secret (no header added)
#   msgate-memory    msgate on the memory backend (not durable), stamping on
#   msgate-redis     msgate on the redis backend, a redis-server of its own on
#                    loopback (not in the default list: PFBENCH_SERVERS)
# Every msgate runs two rate rules and the Microsoft cap, far above the
# load, and logs at info. Postfix relays every message (one recipient, at
# outlook.com: a Microsoft recipient, counted, committed and stamped) to
# smtp-sink on loopback. Postfix's smtp-source drives each listener in
# turn, a new SMTP connection per message as mail clients make (hence a
# new milter connection per message). Each repetition runs every session
# count against every listener back to back, so that a burst of other work
# on the machine hits them alike; after each run the script waits until
# Postfix delivered all of it, then checks that every message reached the
# sink, that through msgate with stamping each carried X-Msgate-Ref, and
# that Postfix logged no refusal. Around each run it reads the machine's
# busy CPU time (/proc/stat) and the milter process's.
#
# The tables give medians over the repetitions: msg/s (smtp-source's wall
# time) with each server's ratio to Postfix alone and, for msgate, to
# Postfix with the null milter; then the CPU time per message, the milter
# process's share and the rest (Postfix, smtp-source, smtp-sink, kernel).
#
# Environment:
#   PFBENCH_QUICK=1        200 messages, 1 repetition
#   PFBENCH_MESSAGES=N     messages per run (default 2000)
#   PFBENCH_REPS=N         repetitions (default 3)
#   PFBENCH_SESSIONS="S"   concurrent smtp-source sessions (default "16 1")
#   PFBENCH_SERVERS="K"    the listeners (default "postfix null msgate
#                          msgate-nostamp msgate-memory")
#   PFBENCH_RCPT_DOMAIN=D  outlook.com (default) or example.com: mail that
#                          is not Microsoft's, which msgate lets go at DATA
#   PFBENCH_SIZE=N         message size in bytes (smtp-source -l; default 2048)
#   PFBENCH_LOG_LEVEL=L    msgate's log level (default info)
#   PFBENCH_OUT=DIR        results (default /var/tmp/msgate-pfbench-DATE)
#
# Installs postfix from Debian when missing. It stops the system Postfix
# for the run and leaves it stopped, its main.cf and master.cf restored.
# Every process it starts is stopped by its pid when it ends, also on
# failure or interrupt. Exit status: 0 when every run completed and checked
# out, 1 otherwise, 2 for bad settings.
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=benchlib.sh
. cmd/msgate-load/benchlib.sh

quick=${PFBENCH_QUICK:-0}
messages=${PFBENCH_MESSAGES:-2000}
reps=${PFBENCH_REPS:-3}
if [ "$quick" = 1 ]; then
	messages=${PFBENCH_MESSAGES:-200}
	reps=${PFBENCH_REPS:-1}
fi
size=${PFBENCH_SIZE:-2048}
rcpt_domain=${PFBENCH_RCPT_DOMAIN:-outlook.com}
case $rcpt_domain in
outlook.com) microsoft=1 ;;
example.com) microsoft=0 ;;
*) echo "postfix-bench: PFBENCH_RCPT_DOMAIN is outlook.com (a Microsoft recipient) or example.com (not)" >&2; exit 2 ;;
esac
read -r -a sessions_list <<<"${PFBENCH_SESSIONS:-16 1}"
read -r -a servers <<<"${PFBENCH_SERVERS:-postfix null msgate msgate-nostamp msgate-memory}"
for n in "$messages" "$reps" "$size" "${sessions_list[@]}"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "postfix-bench: $n is not a positive number" >&2; exit 2; }
done
for s in "${servers[@]}"; do
	case $s in
	postfix | null | msgate | msgate-unix | msgate-nostamp | msgate-memory | msgate-redis) ;;
	*) echo "postfix-bench: PFBENCH_SERVERS: unknown server $s (postfix null msgate msgate-unix msgate-nostamp msgate-memory msgate-redis)" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" -ne 0 ]; then
	echo "postfix-bench: must run as root: it reconfigures and starts the system Postfix" >&2
	exit 2
fi
out=${PFBENCH_OUT:-/var/tmp/msgate-pfbench-$(date -u +%Y%m%dT%H%M%SZ)}
warmup=$((messages / 10 > 20 ? messages / 10 : 20))

work=$(mktemp -d /var/tmp/msgate-pfbench-work.XXXXXX)
chmod 755 "$work"
mkdir -p "$out/runs" "$out/logs" "$work/bin"
pids=()
failures=0
conf_saved=""
postfix_started=0

cleanup() {
	local status=$? i f
	set +e
	restore_policy
	if [ "$postfix_started" = 1 ]; then
		postfix stop >/dev/null 2>&1
		postsuper -d ALL >/dev/null 2>&1
	fi
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop "${pids[$i]}"
	done
	if [ -n "$conf_saved" ]; then
		cp -p "$conf_saved/main.cf" "$conf_saved/master.cf" /etc/postfix/
		rm -rf "$conf_saved"
	fi
	for f in "$work"/*.log "$work"/*/*.log; do
		[ -f "$f" ] && gzip -c "$f" >"$out/logs/$(basename "$(dirname "$f")")-$(basename "$f").gz"
	done
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


if ! command -v postconf >/dev/null; then
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi
ensure_packages postfix || exit 1

log "environment"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpus: $(nproc); $(uname -sr)"
	go version
	echo "postfix: $(postconf -h mail_version)"
	echo "msgate: $(git rev-parse --short HEAD 2>/dev/null || echo "?")$(git diff --quiet HEAD 2>/dev/null || echo " with uncommitted changes")"
	echo "messages per run: $messages of $size bytes after $warmup warm-up; repetitions: $reps"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/environment.txt" >&2

log "building msgate and msgate-load"
go build -o "$work/bin/msgate" ./cmd/msgate
go build -o "$work/bin/msgate-load" ./cmd/msgate-load

# A DNS server on loopback, so that no MX lookup leaves the machine.
dns_port=$(free_port)
"$work/bin/msgate-load" dns -listen "127.0.0.1:$dns_port" >"$work/dns.log" 2>&1 &
pids+=("$!")

secret=$(head -c 32 /dev/urandom | base64)
declare -A milter_of=([postfix]="")
declare -A smtp_port_of milter_pid_of

# start_msgate KEY BACKEND STAMP [unix]: msgate serve for one listener,
# on loopback TCP or (unix) on a unix socket.
start_msgate() {
	local key=$1 backend=$2 stamp=$3 transport=${4:-inet} mdir port pid listen
	mdir=$work/$key
	mkdir -p "$mdir/state"
	port=$(free_port)
	listen=inet:127.0.0.1:$port
	if [ "$transport" = unix ]; then
		# Postfix's smtpd and cleanup run as postfix and need to connect.
		listen=unix:$mdir/milter.sock
		chgrp postfix "$mdir"
	fi
	{
		cat <<EOF
[milter]
listen = "$listen"
socket_mode = "0660"

[admin]
listen = "inet:127.0.0.1:$(free_port)"

[log]
level = "${PFBENCH_LOG_LEVEL:-info}"
format = "json"

[state]
backend = "$backend"
path = "$mdir/state/state.db"
redis_url = "redis://127.0.0.1:${redis_port:-6379}/0"

[microsoft]
resolver = "127.0.0.1:$dns_port"

$(bench_rules)
EOF
		if [ "$stamp" = 1 ]; then
			printf '\n[feedback]\nsecret = "%s"\n' "$secret"
		fi
	} >"$mdir/msgate.toml"
	if [ "$backend" = embedded ] && [ "$(stat -f -c %T "$mdir")" = tmpfs ]; then
		log "warning: $mdir is on tmpfs: msgate's durable writes cost nothing there"
	fi
	"$work/bin/msgate" check -config "$mdir/msgate.toml" >&2
	"$work/bin/msgate" serve -config "$mdir/msgate.toml" >"$mdir/msgate.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	if [ "$transport" = unix ]; then
		for _ in $(seq 300); do
			[ -S "$mdir/milter.sock" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		[ -S "$mdir/milter.sock" ] || { log "$key did not start: $(tail -n 5 "$mdir/msgate.log")"; exit 1; }
		chgrp postfix "$mdir/milter.sock"
	else
		wait_port "$port" "$pid" || { log "$key did not start: $(tail -n 5 "$mdir/msgate.log")"; exit 1; }
	fi
	milter_of[$key]=$listen
	milter_pid_of[$key]=$pid
	log "$key: msgate serve on $listen ($backend state, stamping $([ "$stamp" = 1 ] && echo on || echo off))"
}

for s in "${servers[@]}"; do
	case $s in
	null)
		port=$(free_port)
		"$work/bin/msgate-load" null -listen "inet:127.0.0.1:$port" -mode envelope >"$work/null.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		wait_port "$port" "$pid" || { log "null milter did not start: $(cat "$work/null.log")"; exit 1; }
		milter_of[null]="inet:127.0.0.1:$port"
		milter_pid_of[null]=$pid
		log "null: go-milter's null milter (envelope stages only) on 127.0.0.1:$port"
		;;
	msgate) start_msgate msgate embedded 1 ;;
	msgate-unix) start_msgate msgate-unix embedded 1 unix ;;
	msgate-nostamp) start_msgate msgate-nostamp embedded 0 ;;
	msgate-memory) start_msgate msgate-memory memory 1 ;;
	msgate-redis)
		ensure_packages redis-server || { log "redis-server cannot be installed"; exit 1; }
		mkdir -p "$work/redis"
		redis_port=$(free_port)
		redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly no \
			--daemonize no --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
		pids+=("$!")
		wait_port "$redis_port" "$!" 10 || { log "redis did not start"; exit 1; }
		start_msgate msgate-redis redis 1
		;;
	esac
done

log "configuring Postfix on loopback"
if postfix status >/dev/null 2>&1; then
	postfix stop >/dev/null
fi
conf_saved=$(mktemp -d)
cp -p /etc/postfix/main.cf "$conf_saved/main.cf" 2>/dev/null || : >"$conf_saved/main.cf"
cp -p /etc/postfix/master.cf "$conf_saved/master.cf" 2>/dev/null || : >"$conf_saved/master.cf"
sink_port=$(free_port)
sink_dir=$work/sink
mkdir -p "$sink_dir"
: >"$sink_dir/dump" # truncated before each run
chown postfix "$sink_dir" "$sink_dir/dump"
: >"$work/postfix.log"
chown postfix "$work/postfix.log"
# Debian's defaults but for what keeps it on loopback and routes
# outlook.com to the sink; the queue is the system's (/var/spool/postfix).
cat >/etc/postfix/main.cf <<EOF
# Written by msgate's postfix-bench.sh for one run; restored after it.
compatibility_level = 3.6
myhostname = mx.bench.local
mydomain = bench.local
myorigin = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination = \$myhostname, localhost
mynetworks = 127.0.0.0/8
relayhost =
transport_maps = inline:{ outlook.com=smtp:[127.0.0.1]:$sink_port, example.com=smtp:[127.0.0.1]:$sink_port }
default_transport = error:5.1.2 not routed by the benchmark
smtp_dns_support_level = disabled
alias_maps = inline:{ postmaster=root }
alias_database =
biff = no
append_dot_mydomain = no
maillog_file = $work/postfix.log
maillog_file_prefixes = $work
smtpd_milters =
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
smtp_destination_concurrency_limit = 50
EOF
{
	# Debian's master.cf without chroot, the pipe transports and the
	# public smtpd; one smtpd per server under test.
	cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	for s in "${servers[@]}"; do
		smtp_port_of[$s]=$(free_port)
		printf '127.0.0.1:%s inet n - n - - smtpd\n  -o syslog_name=postfix/%s\n  -o smtpd_milters=%s\n' \
			"${smtp_port_of[$s]}" "$s" "${milter_of[$s]}"
	done
} >/etc/postfix/master.cf
postfix check
postsuper -d ALL >/dev/null 2>&1 || true

smtp-sink -u postfix -R "$sink_dir" -D /dump -S 'X-Bench-Sink: 1\n' -h sink.bench.local \
	"127.0.0.1:$sink_port" 1024 >"$work/sink.log" 2>&1 &
pids+=("$!")
wait_port "$sink_port" 0 || { log "smtp-sink did not start: $(cat "$work/sink.log")"; exit 1; }
postfix start >"$work/postfix-start.log" 2>&1 || { log "postfix start failed: $(cat "$work/postfix-start.log")"; exit 1; }
postfix_started=1
for s in "${servers[@]}"; do
	wait_port "${smtp_port_of[$s]}" 0 || { log "Postfix smtpd for $s did not listen on ${smtp_port_of[$s]}"; exit 1; }
	log "$s: Postfix smtpd on 127.0.0.1:${smtp_port_of[$s]}${milter_of[$s]:+ with smtpd_milters=${milter_of[$s]}}"
done

# wait_delivered N: waits (up to 5 minutes) until the sink holds N messages
# and Postfix's queue is empty; sets got.
wait_delivered() {
	local want=$1
	for _ in $(seq 3000); do
		got=$(grep -c '^X-Bench-Sink: 1' "$sink_dir/dump" 2>/dev/null) || got=0
		if [ "$got" -ge "$want" ] && [ -z "$(find /var/spool/postfix/{incoming,active,deferred,maildrop} -type f 2>/dev/null | head -n 1)" ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# busy_ticks prints the CPU time (clock ticks, all CPUs) the machine spent
# busy so far; pid_ticks PID the time that one process spent.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
pid_ticks() {
	if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
		awk '{ print $14 + $15 }' "/proc/$1/stat"
	else
		echo 0
	fi
}
hz=$(getconf CLK_TCK)

# run_one SERVER SESSIONS COUNT TAG: one smtp-source run, checked; sets
# rate (msg/s), cpu and milter_cpu (ms of CPU per message: the machine's,
# and the milter process's).
run_one() {
	local server=$1 sessions=$2 count=$3 tag=$4 port start end status=0 stamped refused
	local lines_before busy0 busy1 mpid=${milter_pid_of[$server]:-} m0 m1
	port=${smtp_port_of[$server]}
	: >"$sink_dir/dump"
	lines_before=$(wc -l <"$work/postfix.log")
	busy0=$(busy_ticks)
	m0=$(pid_ticks "$mpid")
	start=$(date +%s.%N)
	smtp-source -s "$sessions" -m "$count" -l "$size" -f "sender@example.org" -t "rcpt-$tag@$rcpt_domain" \
		-M client.bench.local "127.0.0.1:$port" >"$work/source.out" 2>&1 || status=$?
	end=$(date +%s.%N)
	busy1=$(busy_ticks)
	m1=$(pid_ticks "$mpid")
	if [ "$status" -ne 0 ] || [ -s "$work/source.out" ]; then
		log "$server $tag: smtp-source exit $status: $(head -n 3 "$work/source.out")"
		failures=$((failures + 1))
	fi
	if ! wait_delivered "$count"; then
		log "$server $tag: $got of $count messages reached the sink within 5 minutes"
		failures=$((failures + 1))
	fi
	stamped=$(grep -c '^X-Msgate-Ref: v1\.' "$sink_dir/dump") || stamped=0
	refused=$(tail -n +$((lines_before + 1)) "$work/postfix.log" | grep -c 'milter-reject\|milter-hold\|reject:') || refused=0
	if [ "$refused" -ne 0 ]; then
		log "$server $tag: Postfix logged $refused refusals"
		failures=$((failures + 1))
	fi
	local want_stamped=0
	case $microsoft-$server in 1-msgate | 1-msgate-unix | 1-msgate-memory | 1-msgate-redis) want_stamped=$count ;; esac
	if [ "$stamped" -ne "$want_stamped" ]; then
		log "$server $tag: $stamped of $got messages stamped, want $want_stamped"
		failures=$((failures + 1))
	fi
	read -r rate cpu milter_cpu < <(awk -v n="$count" -v s="$start" -v e="$end" -v hz="$hz" \
		-v b="$((busy1 - busy0))" -v m="$((m1 - m0))" \
		'BEGIN { printf "%.1f %.3f %.3f\n", n / (e - s), 1000 * b / hz / n, 1000 * m / hz / n }')
	echo "$server $sessions $count $start $end $got $stamped $refused" >>"$out/runs.txt"
}

log "warm-up: $warmup messages through each listener"
for s in "${servers[@]}"; do
	run_one "$s" 4 "$warmup" "warmup-$s"
done
: >"$out/runs.txt"

log "running: $reps repetitions of ${sessions_list[*]} sessions against ${servers[*]}, $messages messages each"
for rep in $(seq "$reps"); do
	for n in "${sessions_list[@]}"; do
		for s in "${servers[@]}"; do
			run_one "$s" "$n" "$messages" "$s-$n-$rep"
			log "$(printf '%-15s %2d sessions run %d: %7s msg/s, CPU %s ms/msg (milter %s)' "$s" "$n" "$rep" "$rate" "$cpu" "$milter_cpu")"
			echo "$s $n $rep $rate $cpu $milter_cpu" >>"$out/rates.txt"
		done
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/environment.txt"

log "results"
# Medians over the repetitions per server and session count; each server's
# ratio of medians to Postfix alone (and, for msgate, to Postfix with the
# null milter) with the range of the per-repetition ratios; then the CPU
# time per message: the machine's in all, the milter process's, and the
# rest (Postfix, smtp-source, smtp-sink, the kernel).
awk -v order="${servers[*]}" -v sess="${sessions_list[*]}" '
	function median(list,   n, i, j, t, a) {
		n = split(list, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	# ratio prints the ratio of s to ref at n sessions: medians, and the
	# range over the repetitions.
	function ratio(s, ref, n,   lo, hi, r, x, b) {
		b = median(rates[ref " " n])
		if (s == ref || b == 0 || !((ref " " n) in rates)) return " |"
		lo = ""; hi = ""
		for (r in reps) {
			if (!((ref " " n " " r) in rate) || !((s " " n " " r) in rate)) continue
			x = rate[s " " n " " r] / rate[ref " " n " " r]
			if (lo == "" || x < lo) lo = x
			if (hi == "" || x > hi) hi = x
		}
		return sprintf(" %.2fx (%.2f-%.2f) |", median(rates[s " " n]) / b, lo, hi)
	}
	{
		k = $1 " " $2
		rates[k] = rates[k] " " $4; cpu[k] = cpu[k] " " $5; mcpu[k] = mcpu[k] " " $6; rest[k] = rest[k] " " ($5 - $6)
		rate[k " " $3] = $4; reps[$3] = 1
	}
	END {
		ns = split(order, srv, " "); nn = split(sess, ss, " ")
		printf "| server |"
		for (j = 1; j <= nn; j++) printf " %s session%s: msg/s | vs Postfix alone | vs null milter |", ss[j], ss[j] == 1 ? "" : "s"
		printf "\n|---|"; for (j = 1; j <= nn; j++) printf "---|---|---|"; print ""
		for (i = 1; i <= ns; i++) {
			printf "| %s |", srv[i]
			for (j = 1; j <= nn; j++) {
				k = srv[i] " " ss[j]
				printf " %.0f |%s", median(rates[k]), ratio(srv[i], "postfix", ss[j])
				printf "%s", srv[i] ~ /^msgate/ ? ratio(srv[i], "null", ss[j]) : " |"
			}
			print ""
		}
		printf "\n| server |"
		for (j = 1; j <= nn; j++) printf " %s session%s: CPU ms/msg | of it the milter | the rest |", ss[j], ss[j] == 1 ? "" : "s"
		printf "\n|---|"; for (j = 1; j <= nn; j++) printf "---|---|---|"; print ""
		for (i = 1; i <= ns; i++) {
			printf "| %s |", srv[i]
			for (j = 1; j <= nn; j++) {
				k = srv[i] " " ss[j]
				printf " %.2f | %.2f | %.2f |", median(cpu[k]), median(mcpu[k]), median(rest[k])
			}
			print ""
		}
	}' "$out/rates.txt" | tee "$out/table.md"

log "everything is in $out"
if [ "$failures" -gt 0 ]; then
	log "$failures check(s) failed"
	exit 1
fi
