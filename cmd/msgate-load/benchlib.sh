# Helpers shared by bench.sh and postfix-bench.sh (sourced, not run).

log() { printf '==> %s\n' "$*" >&2; }

# stop ends one process started here: TERM, then KILL after 15s.
stop() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid ignored SIGTERM; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on, below
# the ephemeral ports (32768 and up), so that no outgoing connection (or
# its TIME_WAIT) holds it when a server binds it.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# The workload's recipient domains, as msgate-load and msgate-load dns
# take them: Microsoft consumer domains and one Microsoft 365 tenant
# (found by its MX), and domains that are not Microsoft's.
ms_domains=outlook.com,hotmail.com,live.com,msn.com,hotmail.co.uk,outlook.fr,contoso.example
m365_domains=contoso.example
other_domains=example.com,example.net,example.org,mail.example,corp.example

# bench_config LISTEN ADMIN-PORT BACKEND STATE-PATH REDIS-URL DNS-PORT SECRET
# prints a benchmark msgate's config: its milter socket, its admin API on
# loopback, info logs as JSON, its state (REDIS-URL may be empty), MX
# lookups through msgate-load dns, bench_rules and stamping with SECRET.
bench_config() {
	cat <<EOF
[milter]
listen = "$1"

[admin]
listen = "inet:127.0.0.1:$2"

[log]
level = "info"
format = "json"

[state]
backend = "$3"
path = "$4"
$([ -n "$5" ] && printf 'redis_url = "%s"\nredis_prefix = "msgate-bench"\n' "$5")

[microsoft]
resolver = "127.0.0.1:$6"

$(bench_rules)

[feedback]
secret = "$7"
EOF
}

# bench_rules prints the rules every benchmark's msgate runs: two rate
# rules and the Microsoft cap, far above any load, so that every message is
# counted and none is refused.
bench_rules() {
	cat <<'EOF'
[[rate]]
name = "hourly"
window = "1h"
limit = 1000000000

[[rate]]
name = "daily"
window = "1d"
limit = 1000000000

[mitigation]
enabled = true
daily_cap = 1000000000
EOF
}

# wait_port waits until 127.0.0.1:PORT accepts connections while PID lives
# (PID 0: no process to watch), at most SECONDS (default 30).
wait_port() {
	local port=$1 pid=$2 seconds=${3:-30}
	for _ in $(seq $((seconds * 10))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		[ "$pid" = 0 ] || kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# restore_policy puts back /usr/sbin/policy-rc.d as ensure_packages found
# it.
policy_saved=""
policy_created=0
restore_policy() {
	if [ -n "$policy_saved" ]; then
		cp -p "$policy_saved" /usr/sbin/policy-rc.d && rm -f "$policy_saved"
		policy_saved=""
	elif [ "$policy_created" = 1 ]; then
		rm -f /usr/sbin/policy-rc.d
	fi
	policy_created=0
}

# ensure_packages installs the Debian packages given when missing, keeping
# apt from starting their services; apt's output goes to $out/logs/apt.txt.
ensure_packages() {
	local missing=() p ok=0
	for p in "$@"; do
		if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		log "cannot install ${missing[*]}: not root on a Debian machine"
		return 1
	fi
	log "installing ${missing[*]}"
	if [ -e /usr/sbin/policy-rc.d ]; then
		policy_saved=$(mktemp)
		cp -p /usr/sbin/policy-rc.d "$policy_saved"
	else
		policy_created=1
	fi
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	# Without a fresh package list on a new machine, the first try fails.
	if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >"$out/logs/apt.txt" 2>&1 ||
		{ apt-get update -q >>"$out/logs/apt.txt" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >>"$out/logs/apt.txt" 2>&1; }; then
		ok=1
	fi
	restore_policy
	[ "$ok" = 1 ] || { log "apt-get failed; see $out/logs/apt.txt"; return 1; }
}
