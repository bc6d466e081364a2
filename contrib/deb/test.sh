#!/usr/bin/env bash
# Tests the Debian package: bash contrib/deb/test.sh [DEB]   (as root)
#
# Without DEB it builds one with contrib/deb/build.sh. Then it checks the
# man page (groff -ww, man -l), the alert rules (promtool check rules and
# test rules, promtool from Debian's prometheus package, unpacked into a
# cache folder, never installed), and installs the package in a throwaway
# copy of this machine: an overlay over / in a mount and network namespace
# of its own, so that /etc/msgate, /var/lib/msgate, /run/msgate, the msgate
# user, the dpkg database and port 8895 of this machine, which the other
# tests use, are never touched. In there it installs, reinstalls, runs the
# daemon as the unit would, removes and purges the package, checking
# files, owners, modes, the conffile, the user and the unit's symlinks at
# each step, and at the end that the purge left nothing behind but the
# msgate user and group (kept, as Debian keeps system users) and dpkg's
# own records.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# preclean makes the overlay a machine that never had msgate, but for
# state that msgate serve left running as root (its default path then),
# which the first installation must give to the msgate user.
preclean() {
	set -e
	if dpkg-query -W msgate >/dev/null 2>&1; then
		dpkg -P msgate >/dev/null
	fi
	if getent passwd msgate >/dev/null; then
		userdel msgate
	fi
	if getent group msgate >/dev/null; then
		groupdel msgate
	fi
	rm -rf /etc/msgate /var/lib/msgate
	install -d -m 0750 /var/lib/msgate
	install -m 0600 /dev/null /var/lib/msgate/state.db
}

# inner runs inside the overlay, chrooted, with the package at $1 and its
# version at $2. It prints "FAIL: ..." for every check that fails and
# exits 1 if one did.
inner() {
	set -u
	deb=$1 version=$2
	failures=0
	fail() {
		echo "FAIL: $*"
		failures=$((failures + 1))
	}
	ok() { echo "ok: $*"; }
	# check DESCRIPTION COMMAND...: ok when the command succeeds.
	check() {
		local what=$1
		shift
		if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
	}
	# expect_stat PATH OWNER:GROUP MODE
	expect_stat() {
		local got
		if ! got=$(stat -c '%U:%G %a' "$1" 2>/dev/null); then
			fail "$1 is missing"
		elif [ "$got" != "$2 $3" ]; then
			fail "$1 is $got, want $2 $3"
		else
			ok "$1 $got"
		fi
	}
	expect_gone() {
		if [ -e "$1" ] || [ -L "$1" ]; then fail "$1 is still there"; else ok "$1 gone"; fi
	}
	status() { dpkg-query -W -f='${Status}' msgate 2>/dev/null || true; }
	unit_links() {
		find /etc/systemd/system -name msgate.service 2>/dev/null | sort
		find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
			-name 'msgate.service*' 2>/dev/null | sort
	}

	echo "==> dpkg -i (first installation)"
	if ! dpkg -i "$deb"; then
		fail "dpkg -i failed"
		return 1
	fi
	check "installed ($(status))" [ "$(status)" = "install ok installed" ]
	check "version $version" [ "$(dpkg-query -W -f='${Version}' msgate)" = "$version" ]

	if entry=$(getent passwd msgate); then
		IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
		check "msgate is a system user (uid $uid)" [ "$uid" -lt 1000 ]
		check "msgate's home is /var/lib/msgate ($home)" [ "$home" = /var/lib/msgate ]
		check "msgate's shell is nologin ($shell)" [ "$shell" = /usr/sbin/nologin ]
		check "msgate's primary group is msgate" [ "$(getent group msgate | cut -d: -f3)" = "$gid" ]
	else
		fail "no user msgate"
	fi

	expect_stat /usr/sbin/msgate root:root 755
	expect_stat /usr/share/man/man8/msgate.8.gz root:root 644
	expect_stat /usr/lib/systemd/system/msgate.service root:root 644
	expect_stat /etc/msgate root:root 755
	expect_stat /etc/msgate/msgate.toml root:msgate 640
	expect_stat /var/lib/msgate msgate:msgate 750
	expect_stat /var/lib/msgate/state.db msgate:msgate 600
	conffiles=$(dpkg-query -W -f='${Conffiles}' msgate)
	if grep -q '^ /etc/msgate/msgate.toml [0-9a-f]\{32\}$' <<<"$conffiles"; then
		ok "conffile: $conffiles"
	else
		fail "/etc/msgate/msgate.toml is not a conffile: '$conffiles'"
	fi
	check "statoverride root msgate 640 on the conffile" \
		[ "$(dpkg-statoverride --list /etc/msgate/msgate.toml)" = "root msgate 640 /etc/msgate/msgate.toml" ]
	check "msgate version says 'msgate $version' ($(/usr/sbin/msgate version))" \
		[ "$(/usr/sbin/msgate version)" = "msgate $version" ]
	if out=$(/usr/sbin/msgate check -config /etc/msgate/msgate.toml 2>&1); then
		ok "msgate check: $out"
	else
		fail "msgate check -config /etc/msgate/msgate.toml: $out"
	fi
	# The daemon's user reads the config: the default path, no -config.
	if out=$(setpriv --reuid=msgate --regid=msgate --init-groups /usr/sbin/msgate check 2>&1); then
		ok "msgate check as user msgate: $out"
	else
		fail "msgate check as user msgate: $out"
	fi
	check "man 8 msgate shows the page" grep -q 'msgate serve' <(MANPAGER=cat MANWIDTH=80 man 8 msgate 2>&1)
	if command -v deb-systemd-helper >/dev/null; then
		# deb-systemd-helper links /lib/..., the same file on merged /usr.
		check "unit enabled: multi-user.target.wants/msgate.service" \
			[ "$(readlink -f /etc/systemd/system/multi-user.target.wants/msgate.service)" = /usr/lib/systemd/system/msgate.service ]
	fi
	check "the unit starts /usr/sbin/msgate" \
		grep -qx 'ExecStart=/usr/sbin/msgate serve -config /etc/msgate/msgate.toml' /usr/lib/systemd/system/msgate.service
	check "the packaged master.cf pipes to /usr/sbin/msgate" \
		grep -q 'argv=/usr/sbin/msgate fbl' /usr/share/doc/msgate/examples/postfix/master.cf

	echo "==> msgate serve as user msgate, as the unit runs it"
	# What RuntimeDirectory= and StateDirectory= would give it.
	install -d -o msgate -g msgate -m 0750 /run/msgate
	ip link set lo up
	setpriv --reuid=msgate --regid=msgate --init-groups /usr/sbin/msgate serve -config /etc/msgate/msgate.toml 2>/tmp/serve.log &
	pid=$!
	up=
	for _ in $(seq 100); do
		if /usr/sbin/msgate status >/tmp/status.out 2>&1; then
			up=1
			break
		fi
		sleep 0.1
	done
	if [ -n "$up" ]; then
		ok "msgate status answers: $(head -1 /tmp/status.out)"
		expect_stat /run/msgate/admin.sock msgate:msgate 660
		if out=$(/usr/sbin/msgate try -auth alice -from alice@example.org -rcpt friend@outlook.com 2>&1); then
			ok "msgate try: $(tr '\n' ' ' <<<"$out")"
		else
			fail "msgate try: $out"
		fi
	else
		fail "msgate serve did not answer msgate status: $(cat /tmp/status.out /tmp/serve.log)"
	fi
	kill -TERM "$pid" 2>/dev/null
	if wait "$pid"; then ok "msgate serve exited 0 on SIGTERM"; else fail "msgate serve exited $? on SIGTERM: $(cat /tmp/serve.log)"; fi
	expect_stat /var/lib/msgate/state.db msgate:msgate 600

	# The maintainer scripts' systemd branch, on a machine that looks
	# booted with systemd; policy-rc.d forbids starting, as apt does in
	# images, and systemctl fails (no systemd runs here): neither may fail
	# the installation or the removal.
	# A machine may have a policy-rc.d of its own (container images do):
	# it is put back as it was afterwards.
	mkdir -p /run/systemd/system
	local had_policy=
	if [ -e /usr/sbin/policy-rc.d ]; then
		cp -p /usr/sbin/policy-rc.d /tmp/policy-rc.d.machine
		had_policy=1
	fi
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	echo "==> dpkg -i again (the upgrade path), as if booted with systemd, policy-rc.d saying no"
	dpkg -i "$deb" || fail "second dpkg -i failed"
	check "one msgate user" [ "$(getent passwd msgate | wc -l)" = 1 ]
	expect_stat /etc/msgate/msgate.toml root:msgate 640
	check "state kept on reinstall" [ -e /var/lib/msgate/state.db ]

	echo "==> dpkg -r, as if booted with systemd"
	dpkg -r msgate || fail "dpkg -r failed"
	rm -r /run/systemd
	if [ -n "$had_policy" ]; then
		cp -p /tmp/policy-rc.d.machine /usr/sbin/policy-rc.d
	else
		rm /usr/sbin/policy-rc.d
	fi
	check "status config-files ($(status))" [ "$(status)" = "deinstall ok config-files" ]
	for f in /usr/sbin/msgate /usr/share/man/man8/msgate.8.gz /usr/lib/systemd/system/msgate.service /usr/share/doc/msgate; do
		expect_gone "$f"
	done
	check "conffile kept on remove" [ -f /etc/msgate/msgate.toml ]
	check "state kept on remove" [ -e /var/lib/msgate/state.db ]

	echo "==> dpkg -i over the kept config, dpkg -r, dpkg -P"
	dpkg -i "$deb" || fail "dpkg -i after dpkg -r failed"
	expect_stat /etc/msgate/msgate.toml root:msgate 640
	dpkg -r msgate || fail "dpkg -r failed"
	dpkg -P msgate || fail "dpkg -P failed"
	check "no package record after purge ($(status))" [ -z "$(status)" ]
	for f in /etc/msgate /var/lib/msgate /run/msgate /usr/sbin/msgate /usr/share/doc/msgate; do
		expect_gone "$f"
	done
	check "no statoverride after purge" [ -z "$(dpkg-statoverride --list /etc/msgate/msgate.toml)" ]
	check "no unit symlinks or helper state after purge ($(unit_links | tr '\n' ' '))" [ -z "$(unit_links)" ]
	check "user msgate kept after purge (by design)" getent passwd msgate

	echo "==> dpkg -i on the kept user, without a state directory, dpkg -P"
	dpkg -i "$deb" || fail "dpkg -i after dpkg -P failed"
	expect_stat /var/lib/msgate msgate:msgate 750
	expect_stat /etc/msgate/msgate.toml root:msgate 640
	dpkg -P msgate || fail "dpkg -P failed"
	expect_gone /etc/msgate
	expect_gone /var/lib/msgate

	[ "$failures" -eq 0 ]
}

# sandbox runs in the new namespaces: it makes the overlay, runs inner in
# it, and looks at what the overlay's upper layer kept.
sandbox() {
	local work=$1 deb=$2 version=$3
	mount -t tmpfs -o mode=0700 msgate-deb-test "$work"
	mkdir "$work/upper" "$work/work" "$work/root"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$work/root"
	local r=$work/root
	mount -t proc proc "$r/proc"
	mount --rbind /dev "$r/dev"
	mount -t tmpfs tmpfs "$r/run"
	mount -t tmpfs tmpfs "$r/tmp"
	cp "$deb" "$r/tmp/msgate.deb"
	local rc=0
	{
		declare -f preclean
		echo preclean
	} | chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -s
	{
		declare -f inner
		printf 'inner /tmp/msgate.deb %q\n' "$version"
	} | chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 /bin/bash -s || rc=1

	echo "==> what the installation and the purge left in the overlay"
	# Allowed: the msgate user and group (kept) with the lock file of their
	# databases, dpkg's and debconf's records, man-db's index (its
	# trigger), the whiteouts of what preclean and the purge removed, and
	# copies of directories this machine already has, and copies of its
	# files put back as they were (same content and mode: the machine's own
	# policy-rc.d). Anything else was left behind.
	local left
	left=$(find "$work/upper" -mindepth 1 ! -type d ! \( -type c -regex '.*/\(etc/msgate\|var/lib/msgate\)' \) \
		-printf "%P\n" | grep -Ev \
		'^(etc/(passwd|group|shadow|gshadow|subuid|subgid)-?|etc/\.pwd\.lock|var/lib/dpkg/.*|var/log/dpkg\.log|var/cache/debconf/.*|var/cache/man/.*)$' |
		while read -r f; do
			if [ -f "$work/upper/$f" ] && [ -f "/$f" ] && cmp -s "$work/upper/$f" "/$f" &&
				[ "$(stat -c %a "$work/upper/$f")" = "$(stat -c %a "/$f")" ]; then
				continue
			fi
			echo "$f"
		done || true)
	local dirs
	dirs=$(find "$work/upper" -mindepth 1 -type d -printf "%P\n" | while read -r d; do
		[ -d "/$d" ] || echo "$d"
	done)
	if [ -n "$left$dirs" ]; then
		echo "FAIL: left behind:"
		printf '%s\n' "$left" "$dirs" | sed '/^$/d; s/^/  /'
		rc=1
	else
		echo "ok: nothing left but the user, the group and dpkg's records"
	fi
	return "$rc"
}

case "${1:-}" in
--sandbox)
	shift
	sandbox "$@"
	exit
	;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "contrib/deb/test.sh: must run as root (dpkg, namespaces)" >&2
	exit 2
fi

# man-db for man -l, groff-base for groff, iproute2 for ip, adduser for the
# package's postinst; apt starts nothing here (policy-rc.d, as .ci/test).
packages=(man-db groff-base iproute2 adduser)
missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "==> installing: ${missing[*]}"
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
		trap 'rm -f "$policy"' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
	if [ -n "$made_policy" ]; then
		rm -f "$policy"
		trap - EXIT
	fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "==> man page: groff -ww -man -Tutf8, man -l"
warnings=$(groff -ww -z -man -Tutf8 "$repo/contrib/man/msgate.8" 2>&1)
if [ -n "$warnings" ]; then
	echo "$warnings"
	echo "FAIL: groff warns about contrib/man/msgate.8" >&2
	exit 1
fi
MANPAGER=cat MANWIDTH=80 man -l "$repo/contrib/man/msgate.8" 2>&1 | grep -q '^SIGNALS' ||
	{ echo "FAIL: man -l contrib/man/msgate.8" >&2; exit 1; }

echo "==> promtool check rules contrib/prometheus/msgate.rules.yml"
cache=${MSGATE_PROMTOOL_CACHE:-/var/cache/msgate-test/promtool}
if [ ! -x "$cache/promtool" ]; then
	rm -rf "$cache"
	mkdir -p "$cache/debs" "$cache/root"
	download() { (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root prometheus); }
	if ! download; then
		apt-get update -q
		download
	fi
	dpkg-deb -x "$cache"/debs/prometheus_*.deb "$cache/root"
	install -m 0755 "$cache/root/usr/bin/promtool" "$cache/promtool"
	rm -rf "$cache/debs" "$cache/root"
fi
"$cache/promtool" check rules "$repo/contrib/prometheus/msgate.rules.yml"
echo "==> promtool test rules contrib/prometheus/msgate.rules.test.yml"
(cd "$repo/contrib/prometheus" && "$cache/promtool" test rules msgate.rules.test.yml)

deb=${1:-}
if [ -z "$deb" ]; then
	echo "==> bash contrib/deb/build.sh"
	deb=$(bash "$here/build.sh" "$tmp/out")
fi
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
version=$(dpkg-deb -f "$deb" Version)

echo "==> $deb in a throwaway copy of this machine"
mkdir "$tmp/sandbox"
unshare --mount --net --propagation private bash "$0" --sandbox "$tmp/sandbox" "$deb" "$version"
echo "==> contrib/deb/test.sh: the package installs, runs, removes and purges cleanly"
